"""The roofline of scripts/gpu_check.py (scripts/roofline.py): peaks, FLOP and byte counts, by hand.

No GPU needed: the peaks from device attributes are computed from numbers given
here, and the cases' counts are checked on the tiny shapes against the counting
formulas of roofline.py's docstring, worked out by hand.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import gpu_check  # scripts/gpu_check.py
import roofline  # scripts/roofline.py


def test_peaks_from_device_attributes():
    # an H200 as numba reports it: 132 SMs, 1.98 GHz SM clock (CLOCK_RATE in kHz),
    # 3.201 GHz memory clock, 6144-bit bus; compute capability 9.0 -> 128 FP32 lanes per SM
    p = roofline.peaks_from_attributes("H200", (9, 0), 132, 1_980_000, 3_201_000, 6144)
    assert p.flops == pytest.approx(132 * 128 * 2 * 1.98e9)          # 66.9 TFLOP/s
    assert p.bandwidth == pytest.approx(2 * 3.201e9 * 6144 / 8)       # 4.92 TB/s
    # an A100 (cc 8.0): 64 FP32 lanes per SM, 108 SMs at 1.41 GHz = 19.5 TFLOP/s
    a100 = roofline.peaks_from_attributes("A100", (8, 0), 108, 1_410_000, 1_215_000, 5120)
    assert a100.flops == pytest.approx(19.49e12, rel=1e-3)
    assert a100.bandwidth == pytest.approx(1.555e12, rel=1e-3)


def test_roof_time_and_bound():
    h200 = roofline.MODELS["h200"]  # 67e12 FLOP/s, 4.8e12 B/s
    r = roofline.roof(67e9, 4.8e9, h200)          # 1 ms either way
    assert (r.compute_ms, r.memory_ms, r.ms) == pytest.approx((1.0, 1.0, 1.0))
    r = roofline.roof(6.7e9, 9.6e9, h200)         # 0.1 ms compute, 2 ms memory
    assert r.ms == pytest.approx(2.0) and r.bound == "memory"
    r = roofline.roof(134e9, 0.48e9, h200)        # 2 ms compute, 0.1 ms memory
    assert r.ms == pytest.approx(2.0) and r.bound == "compute"
    assert h200.ridge == pytest.approx(67 / 4.8)
    assert roofline.fraction(1.0, 4.0) == 0.25
    assert math.isnan(roofline.fraction(1.0, 0.0)) and math.isnan(roofline.fraction(1.0, math.nan))


def test_resolve():
    assert roofline.resolve("h200") is roofline.MODELS["h200"]
    if roofline.device_peaks() is None:  # no GPU here: auto falls back to the H200's published figures
        assert roofline.resolve("auto") is roofline.MODELS["h200"]
    with pytest.raises(ValueError):
        roofline.resolve("h900")


def test_case_counts_by_hand():
    cases = {c.name: c for c in gpu_check.build_cases(tiny=True)}
    # linear tiny: x 5x7, w 6x7: 2*5*7*6 = 420 GEMM FLOPs + 30 bias adds; bytes 4*(35 + 42 + 6 + 30) = 452
    lin = cases["linear_fwd"]
    assert (lin.flops, lin.ew_flops, lin.nbytes) == (420.0, 30.0, 452.0)
    # backward: reads dy 30, x 35, w 42; writes dx 35, dw 42, db 6 -> 4 * 190 = 760 bytes; 4*5*7*6 = 840 FLOPs
    lb = cases["linear_bwd"]
    assert (lb.flops, lb.nbytes) == (840.0, 760.0)
    # Adam on 3x4 = 12 parameters: reads p, g, m, v, writes p, m, v = 7 arrays x 48 bytes; 14 FLOPs each
    adam = cases["adam_update"]
    assert (adam.nbytes, adam.total_flops) == (336.0, 168.0)
    # LSTM tiny T 3, N 2, D 4, H 5: GEMMs 2*3*2*(4+5)*4*5 = 2160; elementwise 20*3*2*5 = 600;
    # bytes: x 24 + h0, c0 20 + w_ih, w_hh, b 4*5*(4+5+1) = 200 + hs, cs 60 + gates 120 = 424 floats
    lstm = cases["lstm_fwd"]
    assert (lstm.flops, lstm.ew_flops, lstm.nbytes) == (2160.0, 600.0, 1696.0)
    # max pooling 2x3x6x6 -> 2x3x3x3: read 216 floats, write 54 floats and 54 int64; 3 compares per output
    pool = cases["max_pool2d_fwd"]
    assert (pool.nbytes, pool.total_flops) == (4 * 216 + 12 * 54, 162.0)
    assert all(c.nbytes > 0 for c in cases.values()), [c.name for c in cases.values() if not c.nbytes]


def test_predict_only_prints_every_case(capsys):
    assert gpu_check.main(["--device-model", "h200", "--predict-only", "--tiny"]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA H200 SXM (published): 67.0 TFLOP/s FP32, 4.80 TB/s" in out
    for case in gpu_check.build_cases(tiny=True):
        assert f"| `{case.name}` | {case.shape} |" in out
    # the linear_fwd row: 450 FLOPs / 452 bytes = 1.0 FLOP/byte, memory-bound below the ridge (14 FLOP/byte)
    row = next(line for line in out.splitlines() if line.startswith("| `linear_fwd`"))
    assert "| 1.0 |" in row and row.endswith("| memory |")
