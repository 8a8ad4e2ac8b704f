"""nbnets memory --search: the largest distance each cell learns, by doubling then bisection.

For every cell: test `min_distance`, then double it while a majority of the
seeds solve the task; once a majority fails (or `max_distance` is passed),
bisect between the last distance that succeeded and the first that failed until
they are at most `resolution` apart. The answer is the last success (0 when
even `min_distance` fails): the "maximum dependency length" of Kent & Murray
(2024).

All cells advance together, one round at a time: every round's runs (the
distances still open x the seeds) go to `run_many` at once, so a cluster runs
them side by side. `run_many(specs) -> [solved, ...]` is the only contact with
training, which is what lets the tests drive the search with a fake trainer of
known threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CellSearch:
    cell: str
    min_distance: int
    max_distance: int
    resolution: int
    best: int = 0                    # the largest distance a majority solved so far
    failed: int | None = None        # the smallest distance a majority failed
    tested: dict = field(default_factory=dict)   # distance -> [solved per seed]

    def next_distance(self) -> int | None:
        """The distance to test next, or None when the search is over."""
        if self.failed is None:
            if self.best == 0:
                return self.min_distance
            doubled = self.best * 2
            return doubled if doubled <= self.max_distance else None
        if self.best == 0 or self.failed - self.best <= self.resolution:
            return None
        return (self.best + self.failed) // 2

    def record(self, distance: int, solved: list[bool]) -> None:
        self.tested[distance] = list(solved)
        if sum(solved) * 2 > len(solved):     # a strict majority
            self.best = max(self.best, distance)
        else:
            self.failed = distance if self.failed is None else min(self.failed, distance)

    def per_seed(self, seeds: list[int]) -> dict:
        """seed -> the largest tested distance that seed solved (0: none)."""
        return {seed: max([d for d, s in self.tested.items() if s[i]], default=0) for i, seed in enumerate(seeds)}


def search(cells, seeds, run_many, min_distance: int, max_distance: int, resolution: int, on_round=None):
    """{cell: CellSearch} once every cell's search is over. `run_many(list of (cell, distance, seed))` returns
    whether each run solved its task, in order."""
    if min_distance < 1 or resolution < 1 or max_distance < min_distance:
        raise ValueError(f"--search needs 1 <= --min-distance <= --max-distance and --resolution >= 1, got "
                         f"{min_distance}, {max_distance}, {resolution}")
    states = {cell: CellSearch(cell, min_distance, max_distance, resolution) for cell in cells}
    while True:
        todo = {cell: s.next_distance() for cell, s in states.items()}
        todo = {cell: d for cell, d in todo.items() if d is not None}
        if not todo:
            return states
        specs = [(cell, d, seed) for cell, d in todo.items() for seed in seeds]
        solved = run_many(specs)
        for i, (cell, d) in enumerate(todo.items()):
            states[cell].record(d, solved[i * len(seeds):(i + 1) * len(seeds)])
        if on_round:
            on_round(todo, states)
