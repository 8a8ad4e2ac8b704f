"""`nbnets bench`: the peers compute numbanets' numbers, and the command end to end on tiny shapes.

1. Every case's plain numpy peer (and torch peer, when torch is installed) gives
   numbanets' outputs on the same inputs: a speedup is never over a wrong result.
   For training steps: the same loss, gradients after clipping and updated weights
   after one step from numbanets' initial weights.
2. The agreement check fails when a peer is wrong (a perturbed output, a wrong
   optimizer setting), and the command then stops with exit code 1, untimed.
3. `nbnets bench --tiny --repeat 1` writes every column, a row per case and
   implementation, the sgemm ceiling and the first-step rows, with sensible values.
4. Bad input is one line `Error: ...` and exit code 2 (--device cuda without a GPU,
   an unknown --case, too many --threads).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys

import numba
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from numbanets.device import cuda_status
from conftest import required_peers
from runner.bench import case as bench_case
from runner.bench import cases as bench_cases
from runner.bench import command as bench
from runner.bench import measure as bench_measure
from runner.bench import peers as bench_peers
from runner.cli import main
from runner.cli.tools import _BENCH_CASES

CASES = bench_cases.build_cases(tiny=True)
IDS = [f"{c.name}:{c.shape.replace(' ', '_')}" for c in CASES]
HAS_TORCH = importlib.util.find_spec("torch") is not None


def invoke(*args):
    return CliRunner().invoke(main, ["bench", *map(str, args)], catch_exceptions=False)


def assert_input_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def _errors(case, impls, ctx=None):
    errors = bench_measure.agreement(case, impls, ctx)
    errors.pop("runners")
    return errors


# --------------------------------------------------------------------------- the peers agree

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_numpy_peer_computes_numbanets_numbers(case):
    err, key = _errors(case, ("numpy",))["numpy"]
    assert err <= bench_measure.TOL, f"{case.name}: numpy differs in {key}: {err:.3g}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_torch_peer_computes_numbanets_numbers(case, torch):
    err, key = _errors(case, ("torch",), bench_case.Ctx("cpu", torch))["torch"]
    assert err <= bench_measure.TOL, f"{case.name}: torch differs in {key}: {err:.3g}"


def test_training_outputs_cover_loss_every_gradient_and_every_weight():
    case = next(c for c in CASES if c.name == "charlm-char-rnn")
    inputs = case.make(np.random.default_rng(0))
    runner = case.impls["numbanets"](inputs, bench_case.Ctx())
    out = runner.outputs(runner.run())
    names = list(inputs["state"])
    assert set(out) == {"loss"} | {f"grad.{n}" for n in names} | {f"param.{n}" for n in names}
    assert math.isfinite(out["loss"]) and out["loss"] > 0
    moved = [n for n in names if not np.array_equal(out[f"param.{n}"], inputs["state"][n])]
    assert moved == names  # one step changed every weight array


def test_numpy_peers_against_float64_definitions(rng):
    """The peers on their own: conv by its definition (sum over the window), pooling by max over windows."""
    x = rng.standard_normal((2, 3, 5, 6))
    w = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(4)
    y = bench_peers.conv2d(x, w, b, (1, 1), ((1, 1), (0, 1)))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 1)))
    want = np.zeros((2, 4, 5, 6))
    for i in range(5):
        for j in range(6):
            want[:, :, i, j] = np.einsum("nckl,fckl->nf", xp[:, :, i:i + 3, j:j + 2], w) + b
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    p, idx = bench_peers.max_pool2x2(x[:, :, :4, :])
    np.testing.assert_array_equal(p, x[:, :, :4, :].reshape(2, 3, 2, 2, 3, 2).max(axis=(3, 5)))
    np.testing.assert_array_equal(np.take_along_axis(x[:, :, :4, :].reshape(2, 3, -1), idx.reshape(2, 3, -1), 2),
                                  p.reshape(2, 3, -1))


# --------------------------------------------------------------------------- the check can fail

def _with_numpy(case, factory):
    return dataclasses.replace(case, impls={**case.impls, "numpy": factory})


def test_a_perturbed_peer_is_a_mismatch():
    case = next(c for c in CASES if c.name == "conv2d-fwd")

    def wrong(inputs, ctx):
        r = case.impls["numpy"](inputs, ctx)
        return bench_case.Runner(lambda: tuple(y * np.float32(1.01) for y in r.run()), r.outputs)

    bad = _with_numpy(case, wrong)
    errors = bench_measure.agreement(bad, ("numpy",))
    # every element 1 % off: the largest one, measured against itself plus the floor, gives the error
    assert errors["numpy"][0] == pytest.approx(0.01 / (1 + bench_measure.ABS_FLOOR), rel=1e-3)
    assert errors["numpy"][1] == "y"
    with pytest.raises(bench_measure.PeerMismatch, match="numpy disagrees with numbanets in 'y'"):
        bench_measure.check(bad, errors)


def test_a_wrong_optimizer_setting_is_a_mismatch():
    """RMSprop with alpha 0.99 instead of 0.95: same loss and gradients, different weights after the step."""
    case = next(c for c in CASES if c.name == "charlm-char-rnn")

    def wrong(inputs, ctx):
        m = bench_peers.CharLM(inputs["state"], dict(kind="rmsprop", lr=2e-3, alpha=0.99), bench_cases.CLIP,
                               "lstm", 2, bench_cases.TINY_CHARLM[case.name]["vocab"])
        return bench_case.Runner(lambda: m.step(inputs["x"], inputs["y"]), m.outputs)

    err, key = _errors(_with_numpy(case, wrong), ("numpy",))["numpy"]
    assert err > 0.1 and key.startswith("param."), (err, key)


def test_compare_masks_only_rounding_noise_gradients():
    initial = {"w": np.zeros(4)}
    ref = {"grad.w": np.array([1.0, -1.0, 1e-9, 0.5]), "param.w": np.array([-0.1, 0.1, -0.1, -0.1])}
    flipped = {**ref, "param.w": np.array([-0.1, 0.1, 0.1, -0.1])}  # the update of a noise-sized gradient
    assert bench_measure.compare(ref, flipped, initial) == (0.0, "")
    wrong = {**ref, "param.w": np.array([-0.1, 0.1, -0.1, 0.1])}    # the update of a real gradient
    # the error 0.2 against that update's size, 0.1, plus the floor (ABS_FLOOR of the largest update, 0.1)
    expected = 0.2 / (0.1 + bench_measure.ABS_FLOOR * 0.1)
    assert bench_measure.compare(ref, wrong, initial) == (pytest.approx(expected), "param.w")
    assert bench_measure.compare(ref, {"grad.w": ref["grad.w"]}, initial)[0] == math.inf  # a missing output


def test_one_small_element_wrong_by_one_percent_is_a_mismatch():
    # the check is per element: an output's largest value does not hide an error in a small one. The former
    # check (max |peer - numbanets| / max |numbanets| <= 1e-3) passed this peer: its error there is 1e-4.
    case = next(c for c in CASES if c.name == "conv2d-fwd")
    inputs = case.make(np.random.default_rng(0))
    y = case.impls["numbanets"](inputs, bench_case.Ctx()).run()[0]
    magnitude = np.abs(y.astype(np.float64))
    small = int(np.argmin(np.abs(magnitude - 0.01 * magnitude.max())))  # an element about 1 % of the largest
    assert 0.005 < magnitude.flat[small] / magnitude.max() < 0.02

    def one_wrong(inputs, ctx):
        r = case.impls["numpy"](inputs, ctx)

        def run():
            out = tuple(a.copy() for a in r.run())
            out[0].flat[small] *= np.float32(1.01)
            return out
        return bench_case.Runner(run, r.outputs)

    bad = _with_numpy(case, one_wrong)
    errors = bench_measure.agreement(bad, ("numpy",), inputs=inputs)
    runners = errors.pop("runners")
    ours, theirs = (runners[i].outputs(runners[i].run())["y"].astype(np.float64) for i in ("numbanets", "numpy"))
    assert np.max(np.abs(theirs - ours)) / np.max(np.abs(ours)) < 1e-3  # what the former check saw
    with pytest.raises(bench_measure.PeerMismatch, match="numpy disagrees with numbanets in 'y'"):
        bench_measure.check(bad, errors)
    s = magnitude.flat[small] / magnitude.max()
    assert errors["numpy"][1] == "y"
    assert errors["numpy"][0] == pytest.approx(0.01 * s / (s + bench_measure.ABS_FLOOR), rel=1e-2)  # about 10 TOL


def test_a_disagreeing_peer_stops_the_command_untimed(tmp_path, monkeypatch):
    case = next(c for c in CASES if c.name == "rnn-fwd-bwd")

    def wrong(inputs, ctx):
        r = case.impls["numpy"](inputs, ctx)
        return bench_case.Runner(lambda: (-r.run()[0],) + r.run()[1:], r.outputs)

    monkeypatch.setattr(bench_cases, "build_cases", lambda tiny=False: [_with_numpy(case, wrong)])
    result = invoke("--tiny", "--repeat", 1, "--case", "rnn-fwd-bwd", "--no-torch", "--out", tmp_path)
    assert result.exit_code == 1, result.output
    assert "numpy disagrees with numbanets in 'hs'" in result.output and "Traceback" not in result.output
    frame = pd.read_csv(next(tmp_path.glob("bench/*/bench.csv")))
    assert list(frame["case"]) == [f"sgemm-{bench.TINY_SGEMM_N}"]  # the ceiling only: nothing was timed


# --------------------------------------------------------------------------- the command end to end

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = invoke("--tiny", "--repeat", 1, "--warmup", 0, "--out", out)
    assert result.exit_code == 0, result.output
    [run_dir] = list((out / "bench").iterdir())
    return result.output, run_dir, pd.read_csv(run_dir / "bench.csv")


def test_tiny_bench_writes_every_column_and_row(tiny_run):
    from runner.analyse.read import BENCH_COLUMNS

    output, run_dir, frame = tiny_run
    assert list(frame.columns) == bench.COLUMNS == BENCH_COLUMNS
    if not HAS_TORCH and "torch" in required_peers():  # in CI the torch rows cannot silently vanish
        pytest.fail("torch is not installed, and CI=true / NUMBANETS_REQUIRE requires it", pytrace=False)
    impls = ["numbanets", "numpy"] + (["torch"] if HAS_TORCH else [])
    rows = list(zip(frame["case"], frame["shape"], frame["impl"]))
    assert len(rows) == len(set(rows))
    assert {(c.name, c.shape, i) for c in CASES for i in impls} <= set(rows)
    assert set(frame.loc[frame["case"] == f"sgemm-{bench.TINY_SGEMM_N}", "impl"]) == {"numpy"}
    for name in bench.FIRST_STEP:
        assert list(frame.loc[frame["case"] == name, "impl"]) == ["numbanets"]
    assert len(frame) == 1 + len(CASES) * len(impls) + 2
    config = json.loads((run_dir / "config.json").read_text())
    assert (frame["device"] == "cpu").all() and (frame["threads"] == config["threads"]).all()
    for case in frame["case"].unique():
        assert case in output  # the printed table
    assert f"wrote {run_dir / 'bench.csv'}" in output
    assert config["command"] == "bench" and config["options"]["tiny"] is True
    assert config["ceiling_gflops"]["cpu"] > 0 and len(config["agreement"]) == len(CASES)


def test_tiny_bench_values(tiny_run):
    _, _, f = tiny_run
    assert (f["median_ms"] > 0).all() and np.isfinite(f[["median_ms", "min_ms", "max_ms"]]).all().all()
    assert (f["min_ms"] <= f["median_ms"]).all() and (f["median_ms"] <= f["max_ms"]).all()
    flops = ~f["case"].str.startswith(("max_pool2d", "first-step"))
    assert (f.loc[flops, "gflops"] > 0).all() and (f.loc[flops, "fraction_of_peak"] > 0).all()
    assert f.loc[~flops, ["gflops", "fraction_of_peak"]].isna().all().all()
    sgemm = f[f["case"].str.startswith("sgemm")].iloc[0]
    assert 0 < sgemm["fraction_of_peak"] <= 1 + 1e-9
    train = f["case"].isin([c.name for c in CASES if c.train])
    assert (f.loc[train, "peak_rss_mb"] >= 0).all() and f.loc[~train, "peak_rss_mb"].isna().all()
    nb = f["impl"] == "numbanets"
    timed = nb & ~f["case"].str.startswith(("sgemm", "first-step"))
    assert (f.loc[timed, "speedup_vs_numpy"] > 0).all()
    if HAS_TORCH:
        assert (f.loc[timed, "speedup_vs_torch"] > 0).all()
        row = f[timed].iloc[0]
        peer = f[(f["case"] == row["case"]) & (f["shape"] == row["shape"]) & (f["impl"] == "torch")].iloc[0]
        assert row["speedup_vs_torch"] == pytest.approx(peer["median_ms"] / row["median_ms"], rel=1e-4)
    assert f.loc[~timed, ["speedup_vs_torch", "speedup_vs_numpy"]].isna().all().all()
    cold, warm = (f.loc[f["case"] == n, "median_ms"].iloc[0] for n in bench.FIRST_STEP)
    assert cold > warm > 0  # the cold process compiles what the warm one loads


def test_case_selection_suite_and_no_torch(tmp_path):
    result = invoke("--tiny", "--repeat", 1, "--suite", "kernels", "--case", "rnn,max_pool2d-bwd", "--no-torch",
                    "--threads", 1, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    f = pd.read_csv(next(tmp_path.glob("bench/*/bench.csv")))
    assert set(f["case"]) == {f"sgemm-{bench.TINY_SGEMM_N}", "rnn-fwd-bwd", "max_pool2d-bwd"}
    assert set(f["impl"]) == {"numbanets", "numpy"} and (f["threads"] == 1).all()
    assert f["speedup_vs_torch"].isna().all()
    assert "skipped (--no-torch)" in result.output


def test_help_lists_every_case():
    assert _BENCH_CASES.split(", ") == bench.case_names()
    result = CliRunner().invoke(main, ["bench", "--help"])
    assert result.exit_code == 0 and "--repeat" in result.output and "--case" in result.output


# --------------------------------------------------------------------------- bad input

def test_device_cuda_without_a_gpu_is_a_one_line_error(tmp_path):
    usable, reason = cuda_status()
    if usable:
        pytest.skip(f"CUDA is usable here: {reason}")
    result = invoke("--device", "cuda", "--tiny", "--out", tmp_path)
    assert_input_error(result, "--device cuda")
    assert not (tmp_path / "bench").exists()


def test_unknown_case_and_too_many_threads_are_one_line_errors(tmp_path):
    assert_input_error(invoke("--case", "conv3d", "--out", tmp_path), "conv3d", "charlm-large")
    assert_input_error(invoke("--suite", "kernels", "--case", "charlm", "--out", tmp_path),
                       "no case of --suite kernels")
    too_many = numba.config.NUMBA_NUM_THREADS + 1
    assert_input_error(invoke("--tiny", "--threads", too_many, "--out", tmp_path), f"--threads {too_many}")


# --------------------------------------------------------------------------- under the CUDA simulator

@pytest.mark.cuda
@pytest.mark.skipif(not cuda_status()[0], reason="no CUDA device or simulator")
def test_tiny_bench_on_cuda(tmp_path):
    """The CUDA path (device arrays, CUDA-event timing, no memory column); run with NUMBA_ENABLE_CUDASIM=1."""
    result = invoke("--device", "cuda", "--tiny", "--repeat", 1, "--warmup", 0, "--no-torch",
                    "--case", "max_pool2d-fwd,rnn,charlm-mini", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    f = pd.read_csv(next(tmp_path.glob("bench/*/bench.csv")))
    nb = f[f["impl"] == "numbanets"]
    assert set(nb["device"]) == {"cuda"} and (nb["median_ms"] > 0).all()
    assert set(f.loc[f["impl"] == "numpy", "device"]) == {"cpu"}
    assert f.loc[f["case"] != f"sgemm-{bench.TINY_SGEMM_N}", "peak_rss_mb"].isna().all()


def test_threads_limits_the_blas_behind_numbas_dot_in_a_fresh_process():
    # threadpoolctl limits only the libraries already loaded: Threads must load numbanets' BLAS first
    import subprocess

    code = ("from runner.common.threads import Threads\n"
            "with Threads(1):\n"
            "    from numbanets.kernels.cpu import blas\n"
            "    print(blas.threads())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "1"


_HEAP_OR_MAP = (
    "import sys\n"
    "import numpy as np\n"
    "from runner.common.allocator import fix_allocator\n"
    "if sys.argv[1] == 'fixed':\n"
    "    print(fix_allocator())\n"
    "a = np.empty(20 << 20, np.uint8)\n"
    "addr = a.ctypes.data\n"
    "for line in open('/proc/self/maps'):\n"
    "    lo, hi = (int(v, 16) for v in line.split()[0].split('-'))\n"
    "    if lo <= addr < hi:\n"
    "        print('heap' if '[heap]' in line else 'mapped')\n"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and /proc/self/maps")
def test_fixed_allocator_serves_a_20_mib_block_from_the_heap():
    # glibc's default: a fresh process maps a 20 MiB block of its own; with the thresholds fixed at 32 MiB
    # it comes from the heap, where freed blocks are reused
    import subprocess

    got = {}
    for mode in ("default", "fixed"):
        out = subprocess.run([sys.executable, "-c", _HEAP_OR_MAP, mode], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        got[mode] = out.stdout.split()
    assert got["default"] == ["mapped"]
    assert got["fixed"][-1] == "heap" and "fixed at 32 MiB" in " ".join(got["fixed"])


def test_the_run_records_its_allocator(tiny_run):
    output, run_dir, _ = tiny_run
    config = json.loads((run_dir / "config.json").read_text())
    assert config["options"]["allocator"] == "fixed"
    assert config["allocator"] in config["notes"] and config["allocator"] in output
    if sys.platform.startswith("linux"):
        assert "mmap threshold fixed at 32 MiB" in config["allocator"]
