"""`nbnets bench`'s intervals and machine description, on synthetic timings (nothing here asserts on a clock).

1. The arithmetic: per-block ratios, their median, the seeded percentile
   bootstrap (reproducible, NaN below MIN_RATIOS), what counts as wide, the
   block size.
2. The rounds (runner.bench.intervals.measure) with a fake runner and a fake
   clock: the order of the blocks, the first pass and its time limit, the
   re-measure of a wide case up to the cap, the flag when it stays wide, none
   below MIN_RATIOS rounds, torch as the headline peer.
3. The machine: /proc/cpuinfo parsed for vendor, model and the flags that
   matter; the bench's columns, options and console marks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from runner.bench import command as bench
from runner.bench import intervals as iv
from runner.bench.case import Case, Ctx, Runner
from runner.common import system

# --------------------------------------------------------------------------- the arithmetic


def test_speedup_is_the_median_of_per_block_ratios():
    nb = [[1.0, 1.2, 1.1], [2.0, 2.0, 2.0], [1.0, 5.0, 1.0]]        # block medians 1.1, 2.0, 1.0
    peer = [[3.3, 3.3, 9.0], [3.0, 3.0, 3.0], [4.0, 4.0, 4.0]]     # block medians 3.3, 3.0, 4.0
    got = iv.speedup(peer, nb)
    assert got.median == pytest.approx(3.0) and got.n == 3           # ratios 3.0, 1.5, 4.0
    assert math.isnan(got.low) and math.isnan(got.high) and got.wide  # fewer than MIN_RATIOS: no interval


def test_load_that_hits_a_whole_round_cancels_in_the_ratios():
    load = [1.0, 3.0, 1.0, 2.5, 1.0, 4.0, 1.0]                       # a busy machine in some rounds
    nb = [[1.0 * f] * 3 for f in load]
    peer = [[1.5 * f] * 3 for f in load]
    got = iv.speedup(peer, nb)
    assert got.median == pytest.approx(1.5) and got.low == pytest.approx(1.5) and got.high == pytest.approx(1.5)
    assert not got.wide
    pooled = np.median([t for b in peer for t in b]) / np.median([t for b in nb for t in b])
    assert pooled == pytest.approx(1.5)  # the same here, but only the ratios are free of the load's mix:
    mixed = iv.speedup(peer[:4], nb[1:5])                              # blocks paired across rounds
    assert mixed.median != pytest.approx(1.5)


def test_bootstrap_is_seeded_and_brackets_the_median():
    values = np.random.default_rng(3).lognormal(0.0, 0.2, size=40)
    a = iv.bootstrap_median(values)
    assert a == iv.bootstrap_median(values)                            # reproducible
    assert a[0] == pytest.approx(float(np.median(values)))
    assert a[1] < a[0] < a[2] and a[1] >= values.min() and a[2] <= values.max()
    other = iv.bootstrap_median(values, seed=1)
    assert other[0] == a[0] and other[1:] != a[1:]                     # the seed moves only the ends
    wider = iv.bootstrap_median(values, level=0.99)
    assert wider[1] <= a[1] and wider[2] >= a[2]


def test_bootstrap_interval_shrinks_with_more_ratios():
    rng = np.random.default_rng(0)
    few, many = (iv.bootstrap_median(rng.normal(1.0, 0.1, size=n)) for n in (10, 400))
    assert (many[2] - many[1]) < (few[2] - few[1]) / 2


def test_bootstrap_without_enough_values():
    assert all(math.isnan(v) for v in iv.bootstrap_median([]))
    med, low, high = iv.bootstrap_median([1.0] * (iv.MIN_RATIOS - 1))
    assert med == 1.0 and math.isnan(low) and math.isnan(high)
    assert iv.bootstrap_median([2.0] * iv.MIN_RATIOS) == (2.0, 2.0, 2.0)


@pytest.mark.parametrize(("low", "high", "wide"), [(0.91, 1.09, False), (0.90, 1.10, False), (0.89, 1.05, True),
                                                   (0.95, 1.11, True), (math.nan, math.nan, True)])
def test_wide_means_more_than_ten_percent_either_side(low, high, wide):
    assert iv.Interval(1.0, low, high, 20).wide is wide
    assert iv.Interval(2.0, 2 * low, 2 * high, 20).wide is wide       # relative to the median


@pytest.mark.parametrize(("call_ms", "runs"), [(0.01, iv.MAX_BLOCK_RUNS), (20.0, 2), (49.0, 1), (400.0, 1),
                                               (0.0, iv.MAX_BLOCK_RUNS), (math.nan, iv.MAX_BLOCK_RUNS)])
def test_block_runs(call_ms, runs):
    assert iv.block_runs(call_ms) == runs


# --------------------------------------------------------------------------- the rounds, with a fake runner

class FakeMachine:
    """Blocks of synthetic timings: impl's base ms times a log-normal noise of `noise[impl]`; the fake clock
    advances by every block's total, so the time limits act on simulated seconds."""

    def __init__(self, base: dict, noise: dict, seed: int = 0, narrows_after: int | None = None):
        self.base, self.noise, self.rng = base, noise, np.random.default_rng(seed)
        self.now, self.calls, self.narrows_after = 0.0, [], narrows_after

    def clock(self) -> float:
        return self.now

    def run_block(self, impl: str) -> list[float]:
        self.calls.append(impl)
        rounds = self.calls.count("numbanets")
        noise = self.noise[impl] if self.narrows_after is None or rounds <= self.narrows_after else 0.001
        times = list(self.base[impl] * self.rng.lognormal(0.0, noise, size=3))
        self.now += sum(times) / 1e3
        return times


def test_rounds_alternate_numbanets_then_its_peers():
    m = FakeMachine({"numbanets": 10.0, "torch": 20.0, "numpy": 50.0}, {"numbanets": 0.01, "torch": 0.01,
                                                                          "numpy": 0.01})
    got = iv.measure(m.run_block, ("numbanets", "torch", "numpy"), 6, 100.0, 100.0, clock=m.clock)
    assert m.calls == ["numbanets", "torch", "numpy"] * 6
    assert got.first_rounds == 6 and got.added_rounds == 0 and not got.wide and got.headline == "torch"
    assert got.intervals["torch"].median == pytest.approx(2.0, rel=0.05)
    assert got.intervals["numpy"].median == pytest.approx(5.0, rel=0.05)
    assert len(got.times("torch")) == 18 and got.seconds == pytest.approx(m.now)


def test_first_pass_stops_at_its_time_limit_after_min_rounds():
    m = FakeMachine({"numbanets": 100.0, "numpy": 100.0}, {"numbanets": 0.01, "numpy": 0.01})
    got = iv.measure(m.run_block, ("numbanets", "numpy"), 50, 0.5, 0.0, clock=m.clock)  # 0.6 s a round
    assert got.first_rounds == iv.MIN_RATIOS and got.added_rounds == 0
    got = iv.measure(m.run_block, ("numbanets", "numpy"), 50, 4.0, 0.0, clock=m.clock)
    assert got.first_rounds == 7  # past 4.0 s after the 7th round


def test_a_wide_case_is_remeasured_until_it_narrows():
    m = FakeMachine({"numbanets": 10.0, "torch": 10.0}, {"numbanets": 0.5, "torch": 0.5}, narrows_after=8)
    got = iv.measure(m.run_block, ("numbanets", "torch"), 8, 1e6, 1e6, clock=m.clock)
    first = iv.speedup(got.blocks["torch"][:8], got.blocks["numbanets"][:8])
    assert first.wide                                  # the first pass alone was too noisy
    assert got.added_rounds > 0 and not got.wide       # quiet rounds narrowed it, long before the cap
    assert got.first_rounds == 8 and len(got.blocks["torch"]) == 8 + got.added_rounds


def test_a_case_still_wide_at_the_cap_is_flagged():
    m = FakeMachine({"numbanets": 10.0, "torch": 10.0}, {"numbanets": 1.5, "torch": 1.5})
    got = iv.measure(m.run_block, ("numbanets", "torch"), 5, 0.0, 0.5, clock=m.clock)
    assert got.added_rounds > 0 and got.wide and got.seconds >= 0.5
    assert got.seconds < 0.5 + 0.5  # stops within a round of the cap (a round is well under 0.5 s here)


def test_no_remeasure_below_min_ratios_or_with_a_zero_cap():
    m = FakeMachine({"numbanets": 10.0, "numpy": 10.0}, {"numbanets": 1.5, "numpy": 1.5})
    few = iv.measure(m.run_block, ("numbanets", "numpy"), iv.MIN_RATIOS - 1, 0.0, 1e6, clock=m.clock)
    assert few.added_rounds == 0 and few.wide and math.isnan(few.intervals["numpy"].low)
    capped = iv.measure(m.run_block, ("numbanets", "numpy"), 10, 0.0, 0.0, clock=m.clock)
    assert capped.added_rounds == 0 and capped.wide


def test_torch_decides_wide_and_numpy_does_without_torch():
    noise = {"numbanets": 0.001, "torch": 0.001, "numpy": 2.0}
    m = FakeMachine({"numbanets": 10.0, "torch": 10.0, "numpy": 10.0}, noise)
    got = iv.measure(m.run_block, ("numbanets", "torch", "numpy"), 10, 1e6, 1e6, clock=m.clock)
    assert got.intervals["numpy"].wide and not got.wide and got.added_rounds == 0
    m = FakeMachine({"numbanets": 10.0, "numpy": 10.0}, {"numbanets": 0.001, "numpy": 2.0})
    got = iv.measure(m.run_block, ("numbanets", "numpy"), 10, 1e6, 20.0, clock=m.clock)
    assert got.headline == "numpy" and got.wide and got.added_rounds > 0


def test_same_timings_same_interval_and_numbanets_first():
    runs = [iv.measure(FakeMachine({"numbanets": 1.0, "numpy": 2.0}, {"numbanets": 0.1, "numpy": 0.1}).run_block,
                       ("numbanets", "numpy"), 12, 1e6, 0.0, clock=lambda: 0.0) for _ in range(2)]
    assert runs[0].intervals == runs[1].intervals
    with pytest.raises(ValueError, match="start with numbanets"):
        iv.measure(lambda impl: [1.0], ("numpy", "numbanets"), 5, 1.0, 1.0)


# --------------------------------------------------------------------------- the machine and the command

AMD = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx fma avx2 bmi2

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx fma avx2 bmi2
"""
ARM = "processor\t: 0\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\n"


def test_cpu_description_from_cpuinfo():
    assert system.cpu_description(AMD) == {"cpu_vendor": "AuthenticAMD", "cpu_model": "AMD EPYC 7B13",
                                           "cpu_flags": "avx2 fma"}
    intel = AMD.replace("AuthenticAMD", "GenuineIntel").replace("bmi2", "bmi2 avx512f")
    assert system.cpu_description(intel)["cpu_flags"] == "avx2 fma avx512f"
    arm = system.cpu_description(ARM)
    assert arm["cpu_flags"] == "" and arm["cpu_vendor"] and arm["cpu_model"]


def test_machine_names_the_blas_and_its_code_path():
    from numbanets.kernels.cpu import blas

    m = system.machine()
    assert m["blas"].startswith(f"{blas.NAME}: ")
    assert ("MKL" in m["blas"]) == (blas.NAME == "mkl")
    assert m["cpu_vendor"] and m["cpu_model"] and int(m["cpu_count"]) >= 1


def test_cap_seconds_defaults_and_validation():
    assert bench.validate({})["cap_seconds"] == bench.CAP_SECONDS
    assert bench.validate({"tiny": True})["cap_seconds"] == 0.0
    assert bench.validate({"tiny": True, "cap_seconds": 5})["cap_seconds"] == 5
    with pytest.raises(ValueError, match="--cap-seconds"):
        bench.validate({"cap_seconds": -1.0})


def _fake_case(slow_numpy: float) -> Case:
    def factory(scale):
        def make_runner(inputs, ctx):
            x = inputs["x"]
            return Runner(lambda: x * np.float32(1.0) + np.float32(0.0) * scale, lambda y: {"y": y})
        return make_runner
    return Case("fake", "kernels", "8", math.nan, lambda rng: {"x": rng.standard_normal(8, dtype=np.float32)},
                {"numbanets": factory(1.0), "numpy": factory(slow_numpy)})


def test_bench_case_fills_the_interval_columns():
    o = bench.validate({"repeat": 6, "warmup": 0, "max_seconds": 10.0, "cap_seconds": 0.0})
    rows, errors = bench.bench_case(_fake_case(2.0), Ctx(), o, 1, {})
    nb, peer = rows
    assert [r["impl"] for r in rows] == ["numbanets", "numpy"] and errors["numpy"][0] == 0.0
    assert nb["blocks"] == 6 and nb["added_blocks"] == 0 and 1 <= nb["block_runs"] <= iv.MAX_BLOCK_RUNS
    assert nb["numpy_ci_low"] <= nb["speedup_vs_numpy"] <= nb["numpy_ci_high"]
    assert math.isnan(nb["speedup_ci_low"]) and math.isnan(nb["speedup_vs_torch"])  # no torch: no torch interval
    assert nb["wide"] in (True, False) and peer["wide"] is None
    assert peer["runs"] == 6 * nb["block_runs"] and set(bench.COLUMNS) - set(nb) == set(bench.MACHINE_COLUMNS)


def test_render_marks_wide_rows():
    row = {c: math.nan for c in bench.COLUMNS}
    row.update(case="c", shape="s", impl="numbanets", device="cpu", threads=1, median_ms=1.0, min_ms=1.0,
               max_ms=1.0, speedup_vs_torch=1.2, speedup_ci_low=1.0, speedup_ci_high=1.4, wide=True, blocks=20)
    narrow = {**row, "case": "d", "speedup_ci_low": 1.15, "speedup_ci_high": 1.25, "wide": False}
    short = {**row, "case": "e", "speedup_ci_low": math.nan, "speedup_ci_high": math.nan, "blocks": 1}
    import pandas as pd

    lines = bench.render(pd.DataFrame([row, narrow, short])).splitlines()
    assert "ci95" in lines[0]
    assert "1.00-1.40~" in lines[1] and "1.15-1.25" in lines[2] and "~" not in lines[2] and "n/a~" in lines[3]


def test_settle_waits_for_a_spinning_thread_and_not_longer():
    # a thread that spins for 0.3 s, as OpenBLAS's workers do after a call: settle() returns only after it
    # stops; with nothing spinning it returns after one idle window
    import threading
    import time

    from runner.bench import measure

    assert measure.settle() < 0.2
    stop = time.perf_counter() + 0.3

    def spin():
        while time.perf_counter() < stop:
            pass

    worker = threading.Thread(target=spin)
    worker.start()
    waited = measure.settle()
    worker.join()
    assert waited >= 0.25
    assert waited < measure.SETTLE_MAX
