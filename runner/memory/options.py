"""nbnets memory's options, checked once: the grid (cells x distances x seeds) and the training settings."""

from __future__ import annotations

from dataclasses import dataclass

from numbanets.gradstats import CELLS, cell_kind
from runner.common.lists import parse_ints, parse_seeds
from runner.memory.tasks import TASKS, make_task
from runner.memory.train import RunSpec

COMMAND = "memory"
DEFAULT_CELLS = "rnn-tanh,rnn-relu,lstm"
DEFAULT_DISTANCES = "5,10,20,40,80"


@dataclass
class Options:
    task: str = "recall"
    cells: str = DEFAULT_CELLS
    distances: str = DEFAULT_DISTANCES
    seeds: str = "0-2"
    # one run's settings: RunSpec's defaults (runner.memory.train), the one place they are set
    hidden: int = RunSpec.hidden
    batch_size: int = RunSpec.batch_size
    lr: float = RunSpec.lr
    clip: float = RunSpec.clip
    max_steps: int = RunSpec.max_steps
    eval_every: int = RunSpec.eval_every
    solved: float = RunSpec.solved
    test_size: int = RunSpec.test_size
    symbols: int = RunSpec.symbols
    fillers: int = RunSpec.fillers
    forget: bool = RunSpec.forget
    forget_bias: float = RunSpec.forget_bias
    search: bool = False
    min_distance: int = 2
    max_distance: int = 1024
    resolution: int = 2
    show: int = 0
    out: str = "results"
    plot: bool = True
    quiet: bool = False


@dataclass
class Plan:
    cells: list
    distances: list
    seeds: list

    def specs(self, o: Options) -> list[RunSpec]:
        return [run_spec(o, cell, d, seed) for cell in self.cells for d in self.distances for seed in self.seeds]


def run_spec(o: Options, cell: str, distance: int, seed: int) -> RunSpec:
    return RunSpec(cell=cell, task=o.task, distance=distance, seed=seed, hidden=o.hidden, batch_size=o.batch_size,
                   lr=o.lr, clip=o.clip, max_steps=o.max_steps, eval_every=o.eval_every, solved=o.solved,
                   test_size=o.test_size, symbols=o.symbols, fillers=o.fillers, forget=o.forget,
                   forget_bias=o.forget_bias)


def validate(o: Options) -> Plan:
    """The grid of `o`; ValueError (one line, naming the option) for anything out of range."""
    if o.task not in TASKS:
        raise ValueError(f"unknown --task {o.task!r}; choose from {', '.join(TASKS)}")
    cells = list(dict.fromkeys(c.strip().lower() for c in o.cells.split(",") if c.strip()))
    if not cells:
        raise ValueError("--cells names no cell")
    for cell in cells:
        if cell not in CELLS:
            raise ValueError(f"--cells: unknown cell {cell!r}; choose from {', '.join(CELLS)}")
        cell_kind(cell)
    distances = sorted(parse_ints(o.distances, "--distances", low=1))
    seeds = parse_seeds(o.seeds)
    if not 0 < o.solved <= 1:
        raise ValueError(f"--solved must lie in (0, 1], got {o.solved:g}")
    if o.symbols < 2:
        raise ValueError(f"--symbols must be >= 2 (K = 1 leaves nothing to remember), got {o.symbols}")
    for name in ("hidden", "batch_size", "max_steps", "eval_every", "test_size", "fillers"):
        if getattr(o, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(o, name)}")
    if not (o.lr > 0 and o.clip > 0):
        raise ValueError(f"--lr and --clip must be > 0, got {o.lr:g} and {o.clip:g}")
    if o.search and not (1 <= o.min_distance <= o.max_distance and o.resolution >= 1):
        raise ValueError(f"--search needs 1 <= --min-distance <= --max-distance and --resolution >= 1, got "
                         f"{o.min_distance}, {o.max_distance}, {o.resolution}")
    smallest = o.min_distance if o.search else distances[0]
    make_task(o.task, smallest, o.symbols, o.fillers, o.forget)  # the task's own limits (adding: >= 2, ...)
    return Plan(cells, distances, seeds)
