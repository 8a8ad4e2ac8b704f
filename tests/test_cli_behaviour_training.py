"""What train-cnn's and train-charlm's manuals and --help promise, through the command line (issue 24, item 9).

- train-cnn: Ctrl-C finishes the epoch, saves, exits 130 and prints the command that continues; that
  command gives, bit for bit, the run that was never stopped, dropout masks included (the generator's
  state is in the checkpoint);
- train-cnn: --optimizer, the per-optimizer default --lr, --momentum and --weight-decay are recorded in
  config.json and are the update that is applied (checked against a numpy replay of two full-batch steps);
- train-charlm: Ctrl-C saves at the step it reached, exits 130 and prints a "Continue with" command that
  finishes the run as if never stopped; a second Ctrl-C stops at once (exit 130, one line), keeping the
  last checkpoint, from which --resume is still exact;
- train-charlm --max-time stops with a checkpoint once the time is spent (exit 0, not 130);
- train-charlm --threads sets numba's (and the BLAS's) threads for the training steps only, and
  config.json records the count used;
- --device cuda without a usable GPU is one line, exit 2, and no run folder.

Ctrl-C is simulated with signal.raise_signal(SIGINT) from inside a training step (the command's own
handler takes it); the clock of --max-time is a fake one that a step moves by one second.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from numbanets import checkpoint
from numbanets.device import cuda_status
from runner.charlm import train as charlm_train
from runner.cli import main
from runner.cnn import train as cnn_train

ROOT = Path(__file__).resolve().parents[1]
TEXT = "def f(x):\n    return x + 1\n\n" * 120
CHARLM_TINY = ["--hidden", "8", "--layers", "1", "--seq-len", "8", "--batch-size", "2", "--eval-every", "5",
               "--sample-every", "10", "--sample-length", "12", "--quiet", "--device", "cpu"]
CNN_DROPOUT = ["--arch", "fc32-relu-dropout0.5-fc10", "--batch-size", "64", "--seed", "5", "--no-plot", "--quiet",
               "--device", "cpu"]
STEP_COLUMNS = ["step", "epoch", "train_loss", "val_loss", "train_bpc", "val_bpc", "grad_norm", "clipped", "lr"]
EPOCH_COLUMNS = ["epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _only_run(out: Path, command: str) -> Path:
    (run,) = (out / command).iterdir()
    return run


def _arrays(path: Path) -> dict:
    """The arrays of a .npz, without the meta blob (it holds the run's elapsed seconds)."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k != "__numbanets_meta__"}


def _assert_same_arrays(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert value.dtype == b[key].dtype and np.array_equal(value, b[key]), key


def _continue_command(output: str, first_line: str) -> list[str]:
    """The command printed under `first_line` ("... Continue with:"), as argv without 'nbnets'."""
    lines = output.rstrip("\n").splitlines()
    assert lines[-2] == first_line, output
    argv = shlex.split(lines[-1])
    assert lines[-1].startswith("  nbnets ") and argv[0] == "nbnets", lines[-1]
    return argv[1:]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "code.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- train-cnn: Ctrl-C, dropout RNG

def test_train_cnn_ctrl_c_finishes_the_epoch_exits_130_and_its_resume_equals_an_unstopped_run(tmp_path,
                                                                                            monkeypatch):
    straight = invoke("train-cnn", *CNN_DROPOUT, "--epochs", 3, "--out", tmp_path / "a")
    assert straight.exit_code == 0, straight.output
    full = _only_run(tmp_path / "a", "train-cnn")

    original = cnn_train.Trainer.train_epoch
    seen = []

    def ctrl_c_in_epoch_2(self, on_batch=None):
        batches = []

        def hook(loss, acc):
            batches.append(self.step)
            if self.epoch == 1 and len(batches) == 3:  # the third batch of epoch 2
                signal.raise_signal(signal.SIGINT)
            if on_batch is not None:
                on_batch(loss, acc)

        row = original(self, on_batch=hook)
        seen.append(len(batches))
        return row

    monkeypatch.setattr(cnn_train.Trainer, "train_epoch", ctrl_c_in_epoch_2)
    stopped = invoke("train-cnn", *CNN_DROPOUT, "--epochs", 3, "--out", tmp_path / "b")
    monkeypatch.setattr(cnn_train.Trainer, "train_epoch", original)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored
    run = _only_run(tmp_path / "b", "train-cnn")
    assert stopped.exit_code == 130, stopped.output
    steps = json.loads((run / "config.json").read_text())["steps_per_epoch"]
    assert seen == [steps, steps]  # epoch 2 was finished, not cut at its third batch; epoch 3 never began
    _, meta = checkpoint.load(run / "checkpoint.npz")
    assert meta["epoch"] == 2 and meta["step"] == 2 * steps
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics.epoch.tolist() == [0, 1, 2]
    assert (run / "confusion.csv").is_file() and not list(run.glob("*.tmp")) and not (run / ".lock").exists()

    argv = _continue_command(stopped.output, "interrupted after epoch 2; checkpoint saved. Continue with:")
    assert argv == ["train-cnn", "--resume", str(run), "--epochs", "3"]
    resumed = invoke(*argv, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert "resumed at epoch 2" in resumed.output
    a, b = pd.read_csv(full / "metrics.csv"), pd.read_csv(run / "metrics.csv")
    pd.testing.assert_frame_equal(a[EPOCH_COLUMNS], b[EPOCH_COLUMNS], check_exact=True)
    # weights and optimizer state bit for bit: the dropout masks of epoch 3 came from the restored generator
    _assert_same_arrays(_arrays(full / "checkpoint.npz"), _arrays(run / "checkpoint.npz"))
    _, meta_a = checkpoint.load(full / "checkpoint.npz")
    _, meta_b = checkpoint.load(run / "checkpoint.npz")
    assert meta_a["rng"] == meta_b["rng"]


# --------------------------------------------------------------------------- train-cnn: optimizer options

def _softmax_grad(w, b, x, y):
    logits = x @ w.T + b
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    p /= len(y)
    return p.T @ x, p.sum(axis=0)


def _replay(name, params, grads_of, steps, lr, momentum, wd):
    """`steps` updates of numbanets.optim's documented rules (torch.optim's), in float64."""
    state = {k: [np.zeros_like(v), np.zeros_like(v)] for k, v in params.items()}
    for t in range(1, steps + 1):
        grads = grads_of(params)
        for k, p in params.items():
            g = grads[k] + wd * p
            s = state[k]
            if name == "sgd":
                s[0] = momentum * s[0] + g
                p -= lr * s[0]
            elif name == "adagrad":
                s[0] += g * g
                p -= lr * g / (np.sqrt(s[0]) + 1e-8)
            elif name == "rmsprop":
                s[0] = 0.95 * s[0] + 0.05 * g * g
                p -= lr * g / (np.sqrt(s[0]) + 1e-8)
            else:
                s[0] = 0.9 * s[0] + 0.1 * g
                s[1] = 0.999 * s[1] + 0.001 * g * g
                p -= lr * (s[0] / (1 - 0.9 ** t)) / (np.sqrt(s[1] / (1 - 0.999 ** t)) + 1e-8)
    return params


@pytest.mark.parametrize("optimizer, extra, lr, momentum, wd", [
    ("adam", [], 2e-3, None, 0.0),                      # the defaults of --help: adam 2e-3, sgd 0.05,
    ("sgd", [], 0.05, 0.9, 0.0),                        # rmsprop 1e-3, adagrad 0.02, momentum 0.9
    ("rmsprop", [], 1e-3, None, 0.0),
    ("adagrad", [], 0.02, None, 0.0),
    ("sgd", ["--lr", "0.3", "--momentum", "0.5", "--weight-decay", "0.01"], 0.3, 0.5, 0.01),
    ("adam", ["--weight-decay", "0.5"], 2e-3, None, 0.5),
])
def test_train_cnn_optimizer_lr_momentum_and_weight_decay_are_recorded_and_applied(tmp_path, optimizer, extra, lr,
                                                                                   momentum, wd):
    from runner.cnn.model import build_model, load_data
    from runner.cnn.options import validate

    common = ["--arch", "fc10", "--batch-size", "2000", "--seed", "3", "--no-plot", "--quiet", "--device", "cpu"]
    result = invoke("train-cnn", *common, "--optimizer", optimizer, *extra, "--epochs", 2, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    run = _only_run(tmp_path, "train-cnn")
    options = json.loads((run / "config.json").read_text())["options"]
    assert options["optimizer"] == optimizer and options["lr"] == lr and options["weight_decay"] == wd
    if momentum is not None:
        assert options["momentum"] == momentum
    words = f"{optimizer} lr {lr:g}" + (f" momentum {momentum:g}" if optimizer == "sgd" else "") + \
        (f" weight decay {wd:g}" if wd else "")
    assert words in result.output, result.output

    # two full-batch steps replayed in float64 from the same initial weights
    data = load_data(validate({"arch": "fc10"}))
    model, _ = build_model("fc10", data.image_shape, 3)
    start = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    x = data.x_train.reshape(len(data.x_train), -1).astype(np.float64)

    def grads_of(p):
        gw, gb = _softmax_grad(p["1.w"], p["1.b"], x, data.y_train)
        return {"1.w": gw, "1.b": gb}

    want = _replay(optimizer, {k: v.copy() for k, v in start.items()}, grads_of, 2, lr, momentum or 0.0, wd)
    got = _arrays(run / "checkpoint.npz")
    for k in want:
        moved = np.abs(want[k] - start[k]).max()
        assert moved > 10 * 1e-5, k  # the steps move the weights well beyond the tolerance below
        np.testing.assert_allclose(got[f"param/{k}"], want[k], rtol=0, atol=1e-5, err_msg=k)


# --------------------------------------------------------------------------- train-charlm: Ctrl-C twice

def _ctrl_c_at(monkeypatch, step: int, times: int):
    original = charlm_train.Trainer.train_step

    def interrupted(self):
        row = original(self)
        if self.step == step:
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)
        return row

    monkeypatch.setattr(charlm_train.Trainer, "train_step", interrupted)
    return original


def test_train_charlm_ctrl_c_exits_130_and_the_printed_command_finishes_the_run_exactly(tmp_path, corpus,
                                                                                        monkeypatch):
    straight = invoke("train-charlm", "--corpus", corpus, *CHARLM_TINY, "--steps", 20, "--out", tmp_path / "a")
    assert straight.exit_code == 0, straight.output
    full = _only_run(tmp_path / "a", "train-charlm")

    original = _ctrl_c_at(monkeypatch, 7, 1)
    stopped = invoke("train-charlm", "--corpus", corpus, *CHARLM_TINY, "--steps", 20, "--out", tmp_path / "b")
    monkeypatch.setattr(charlm_train.Trainer, "train_step", original)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert stopped.exit_code == 130, stopped.output
    run = _only_run(tmp_path / "b", "train-charlm")
    _, meta = checkpoint.load(run / "checkpoint.npz")
    assert meta["step"] == 7  # saved at the step it reached, not at the last --eval-every (5)
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics.step.tolist() == list(range(1, 8))
    assert metrics.dropna(subset=["val_loss"]).step.tolist() == [5, 7]  # Ctrl-C evaluates too

    argv = _continue_command(stopped.output, "interrupted at step 7; checkpoint saved. Continue with:")
    assert argv == ["train-charlm", "--resume", str(run), "--steps", "20"]
    resumed = invoke(*argv, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert "resumed at step 7" in resumed.output and "Continue with" not in resumed.output
    a, b = pd.read_csv(full / "metrics.csv"), pd.read_csv(run / "metrics.csv")
    assert b.step.tolist() == list(range(1, 21))
    # every step's training numbers as in the unstopped run (step 7's extra evaluation aside)
    pd.testing.assert_frame_equal(a.drop(columns=["val_loss", "val_bpc", "chars_per_s", "elapsed_s"]),
                                  b.drop(columns=["val_loss", "val_bpc", "chars_per_s", "elapsed_s"]),
                                  check_exact=True)
    _assert_same_arrays(_arrays(full / "best.npz"), _arrays(run / "best.npz"))


def test_train_charlm_second_ctrl_c_stops_at_once_keeping_the_last_checkpoint(tmp_path, corpus, monkeypatch):
    straight = invoke("train-charlm", "--corpus", corpus, *CHARLM_TINY, "--steps", 12, "--out", tmp_path / "a")
    assert straight.exit_code == 0, straight.output
    full = _only_run(tmp_path / "a", "train-charlm")

    original = _ctrl_c_at(monkeypatch, 7, 2)
    stopped = invoke("train-charlm", "--corpus", corpus, *CHARLM_TINY, "--steps", 12, "--out", tmp_path / "b")
    monkeypatch.setattr(charlm_train.Trainer, "train_step", original)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert stopped.exit_code == 130, stopped.output
    assert stopped.stderr.strip() == ("stopped at once by a second Ctrl-C: nothing more is saved "
                                      "(the run folder keeps its last checkpoint)"), stopped.stderr
    assert "Continue with" not in stopped.output and "Traceback" not in stopped.output
    run = _only_run(tmp_path / "b", "train-charlm")
    _, meta = checkpoint.load(run / "checkpoint.npz")
    assert meta["step"] == 5  # the last checkpoint before the Ctrl-Cs; step 7 was not saved
    assert pd.read_csv(run / "metrics.csv").step.tolist() == list(range(1, 6))
    assert not list(run.glob(".*.tmp")) and not (run / ".lock").exists()

    resumed = invoke("train-charlm", "--resume", run, "--steps", 12, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert "resumed at step 5" in resumed.output
    a, b = pd.read_csv(full / "metrics.csv"), pd.read_csv(run / "metrics.csv")
    pd.testing.assert_frame_equal(a[STEP_COLUMNS], b[STEP_COLUMNS], check_exact=True)


# --------------------------------------------------------------------------- train-charlm --max-time

def test_train_charlm_max_time_stops_with_a_checkpoint_and_exit_0(tmp_path, corpus, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(charlm_train, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    original = charlm_train.Trainer.train_step

    def one_second(self):
        clock[0] += 1.0  # every step takes one second of the fake clock
        return original(self)

    monkeypatch.setattr(charlm_train.Trainer, "train_step", one_second)
    result = invoke("train-charlm", "--corpus", corpus, *CHARLM_TINY, "--steps", 50, "--max-time", 3.5,
                    "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert result.output.rstrip("\n").splitlines()[-1] == "--max-time 3.5 s reached at step 4; checkpoint saved"
    assert "Continue with" not in result.output
    run = _only_run(tmp_path, "train-charlm")
    _, meta = checkpoint.load(run / "checkpoint.npz")
    assert meta["step"] == 4
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics.step.tolist() == [1, 2, 3, 4]
    assert metrics.dropna(subset=["val_loss"]).step.tolist() == [4]  # evaluated at the stop, not only at 5
    assert json.loads((run / "config.json").read_text())["options"]["max_time"] == 3.5
    # the limit is per session: a resume without --max-time keeps the run's and trains 4 more steps
    again = invoke("train-charlm", "--resume", run, "--quiet")
    assert again.exit_code == 0, again.output
    assert "reached at step 8" in again.output
    assert pd.read_csv(run / "metrics.csv").step.tolist() == list(range(1, 9))


# --------------------------------------------------------------------------- train-charlm --threads

THREADS_SCRIPT = textwrap.dedent("""
    import json, sys
    import numba
    from click.testing import CliRunner
    from runner.charlm import train
    from runner.cli import main

    inside = []
    step = train.Trainer.train_step

    def counting(self):
        try:
            from threadpoolctl import threadpool_info
            blas = sorted({p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"})
        except ImportError:
            blas = None
        inside.append((numba.get_num_threads(), blas))
        return step(self)

    train.Trainer.train_step = counting
    report = []
    for i, extra in enumerate(json.loads(sys.argv[1])):
        inside.clear()
        out = f"{sys.argv[2]}/{i}"
        result = CliRunner().invoke(main, ["train-charlm", "--corpus", sys.argv[3], *json.loads(sys.argv[4]),
                                           "--steps", "2", "--out", out, *extra])
        assert result.exit_code == 0, result.output
        import pathlib
        (run,) = (pathlib.Path(out) / "train-charlm").iterdir()
        config = json.loads((run / "config.json").read_text())
        report.append({"inside": sorted(set(n for n, _ in inside)), "blas": [b for _, b in inside][0],
                       "after": numba.get_num_threads(), "recorded": config["options"]["threads"]})
    print(json.dumps(report))
""")


def test_train_charlm_threads_sets_numba_threads_for_the_steps_and_records_them(tmp_path, corpus):
    runs = [["--threads", "1"], [], ["--threads", "7"]]
    env = {**os.environ, "NUMBA_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", THREADS_SCRIPT, json.dumps(runs), str(tmp_path), str(corpus),
                           json.dumps(CHARLM_TINY)], check=False, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    one, default, many = json.loads(proc.stdout.strip().splitlines()[-1])
    assert one["inside"] == [1] and one["after"] == 2 and one["recorded"] == 1
    if one["blas"] is not None:  # threadpoolctl installed: the BLAS is limited too
        assert one["blas"] == [1]
    assert default["inside"] == [2] and default["recorded"] == 2  # all of numba's pool, recorded as such
    assert many["inside"] == [2] and many["recorded"] == 2  # cut to the pool (NUMBA_NUM_THREADS=2)


# --------------------------------------------------------------------------- --device cuda without a GPU

needs_no_gpu = pytest.mark.skipif(cuda_status()[0], reason="a GPU (or the CUDA simulator) is usable here")


@needs_no_gpu
@pytest.mark.parametrize("command", ["train-charlm", "train-cnn"])
def test_device_cuda_without_a_gpu_is_one_line_exit_2_and_no_run_folder(tmp_path, corpus, command):
    args = (["--corpus", corpus, *CHARLM_TINY, "--steps", 2] if command == "train-charlm"
            else ["--arch", "fc10", "--epochs", 1, "--no-plot", "--quiet"])
    args = [a for a in args if a not in ("--device", "cpu")]
    result = invoke(command, *args, "--device", "cuda", "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: --device cuda was asked for but "), result.output
    assert cuda_status()[1] in lines[0]
    assert not (tmp_path / "out").exists()
