"""How `nbnets bench` turns timings into a speed-up it can trust: alternating blocks, per-block ratios, a bootstrap.

One case's implementations are timed in rounds inside one process: a round is
one short block of back-to-back runs of each implementation in turn
(numbanets, torch, numpy, numbanets, torch, numpy, ...). A change of machine
load (another process, a frequency step) lasts longer than a round, so it hits
the blocks of one round alike, and the per-round ratio

    ratio[r] = median(peer's block r) / median(numbanets' block r)

cancels it where a ratio of whole-run medians would not. The case's speed-up
is the median of its ratios, with a percentile bootstrap 95 % interval of that
median (BOOTSTRAP resamples of the ratios with replacement, a seeded generator:
the same timings give the same interval). An interval reaching more than
WIDE (10 %) either side of the median is "wide": measure() then adds rounds
until it is not or the case has been timed for cap_seconds, and the row is
flagged wide if it still is. Fewer than MIN_RATIOS ratios give no interval
(NaN) and count as wide; they are not re-measured (the user asked for fewer
rounds than an interval needs).

    block_runs(call_ms)                runs per block: about BLOCK_MS of the slowest implementation
    speedup(peer_blocks, nb_blocks)    Interval of the per-block ratios
    measure(run_block, impls, ...)     the rounds, the first pass and the re-measure; a Measured

Nothing here reads a clock except through the `clock` argument, so the
arithmetic and the re-measure logic are tested with synthetic timings
(tests/test_bench_intervals.py).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

WIDE = 0.10          # an interval reaching further than this fraction of the median either side is wide
MIN_RATIOS = 5       # fewer ratios than this give no interval
BOOTSTRAP = 2000     # resamples
LEVEL = 0.95         # the interval's coverage
SEED = 0             # the bootstrap's generator seed
BLOCK_MS = 50.0      # a block lasts about this long ...
MAX_BLOCK_RUNS = 10  # ... with at most this many runs (and at least one)


@dataclass(frozen=True)
class Interval:
    median: float    # the median of the per-block ratios (NaN without ratios)
    low: float       # the bootstrap interval's ends (NaN with fewer than MIN_RATIOS ratios)
    high: float
    n: int           # how many ratios

    @property
    def wide(self) -> bool:
        """No interval, or one reaching further than WIDE of the median on either side."""
        if math.isnan(self.low) or math.isnan(self.high) or not self.median > 0:
            return True
        return self.low < self.median * (1 - WIDE) or self.high > self.median * (1 + WIDE)


def block_runs(call_ms: float) -> int:
    """Runs per block for implementations whose slowest single call takes call_ms: about BLOCK_MS in all,
    between 1 and MAX_BLOCK_RUNS."""
    if not call_ms > 0:
        return MAX_BLOCK_RUNS
    return int(min(MAX_BLOCK_RUNS, max(1, BLOCK_MS // call_ms)))


def bootstrap_median(values, resamples: int = BOOTSTRAP, level: float = LEVEL,
                     seed: int = SEED) -> tuple[float, float, float]:
    """(median, low, high): the median of `values` and its percentile bootstrap interval at `level`;
    low and high NaN with fewer than MIN_RATIOS values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    med = float(np.median(v))
    if v.size < MIN_RATIOS:
        return med, math.nan, math.nan
    rng = np.random.default_rng(seed)
    medians = np.median(v[rng.integers(0, v.size, size=(resamples, v.size))], axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return med, float(low), float(high)


def speedup(peer_blocks: list[list[float]], nb_blocks: list[list[float]], seed: int = SEED) -> Interval:
    """The Interval of ratio[r] = median(peer_blocks[r]) / median(nb_blocks[r]) over the rounds both have."""
    ratios = [statistics.median(p) / statistics.median(n) for p, n in zip(peer_blocks, nb_blocks) if p and n]
    med, low, high = bootstrap_median(ratios, seed=seed)
    return Interval(med, low, high, len(ratios))


@dataclass
class Measured:
    blocks: dict                 # impl -> [block: [ms, ...], ...], one block per round
    intervals: dict              # peer -> Interval against numbanets
    first_rounds: int            # rounds of the first pass
    added_rounds: int = 0        # rounds the re-measure added
    headline: str | None = None  # the peer whose interval decides "wide"
    seconds: float = 0.0         # time spent in the rounds
    notes: list = field(default_factory=list)

    @property
    def wide(self) -> bool:
        return self.headline is not None and self.intervals[self.headline].wide

    def times(self, impl: str) -> list[float]:
        """Every timed run of impl, all blocks together."""
        return [t for block in self.blocks[impl] for t in block]


def measure(run_block: Callable[[str], list[float]], impls: tuple[str, ...], rounds: int, pass_seconds: float,
            cap_seconds: float, clock: Callable[[], float] = time.perf_counter, seed: int = SEED) -> Measured:
    """Time impls (numbanets first, then its peers) in alternating rounds; run_block(impl) runs one block
    and returns its times (ms).

    First pass: `rounds` rounds, stopping early once pass_seconds have passed and min(MIN_RATIOS, rounds)
    rounds are done. Then, while the headline peer's interval (torch's when it runs, else the first peer's)
    is wide and cap_seconds have not passed since the first round began, one more round at a time. The
    re-measure runs only when the first pass asked for at least MIN_RATIOS rounds.
    """
    if not impls or impls[0] != "numbanets":
        raise ValueError(f"the implementations must start with numbanets, got {impls!r}")
    peers = impls[1:]
    headline = "torch" if "torch" in peers else (peers[0] if peers else None)
    blocks = {impl: [] for impl in impls}
    start = clock()

    def one_round():
        for impl in impls:
            blocks[impl].append(list(run_block(impl)))

    def summary():
        return {p: speedup(blocks[p], blocks["numbanets"], seed) for p in peers}

    done = 0
    while done < rounds:
        one_round()
        done += 1
        if done >= min(MIN_RATIOS, rounds) and clock() - start > pass_seconds:
            break
    result = Measured(blocks, summary(), done, headline=headline)
    if rounds >= MIN_RATIOS:
        while result.wide and clock() - start < cap_seconds:
            one_round()
            result.added_rounds += 1
            result.intervals = summary()
    result.seconds = clock() - start
    return result
