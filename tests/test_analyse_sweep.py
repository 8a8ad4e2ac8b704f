"""`nbnets analyse` on sweep folders, and runner.analyse.headline on real tiny runs.

The sweep folders are written here with pandas, with known numbers, in the layout
`nbnets sweep` writes (sweep.json, sweep.csv, failures.csv, runs/<run>/); every mean,
standard deviation and 95 % interval analyse prints is checked against a hand
computation. headline() is checked on run folders made by tiny real runs of
train-cnn, train-charlm and grad-decay, against what `analyse --format csv` prints.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from runner.analyse.headline import headline
from runner.analyse.read import CNN_COLUMNS
from runner.cli import main

T_975_2 = 4.302652729911275    # Student t, 97.5 % quantile, 2 degrees of freedom (tables: 4.303)
T_975_1 = 12.706204736174707   # 1 degree of freedom (tables: 12.71)
ARCHS = ["digits", "conv8x3x3:p=same-relu-pool2-fc10"]
LRS = ["1e-3", "2e-3"]
BOOK = ["seed", "status", "resumed_at", "wall_s", "worker"]
# (arch, lr) -> [(status, final_test_acc, final_test_loss)], one per seed; failed rows carry a number on purpose
POINTS = {
    (ARCHS[0], "1e-3"): [("done", 0.90, 0.5), ("done", 0.92, 0.4), ("done", 0.94, 0.3), ("failed", 0.0, 9.0)],
    (ARCHS[0], "2e-3"): [("done", 0.95, 0.2), ("done", 0.97, 0.1)],
    (ARCHS[1], "1e-3"): [("failed", math.nan, math.nan), ("failed", math.nan, math.nan)],
    (ARCHS[1], "2e-3"): [("done", 0.80, 0.7)],
}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(*args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def fake_cnn_run(folder: Path, acc: float, lr: str = "1e-3") -> Path:
    """A train-cnn run folder (config.json, metrics.csv) that analyse reads as a run."""
    folder.mkdir(parents=True)
    rows = [dict(epoch=e, step=10 * e, train_loss=1.0 / (e + 1), train_acc=acc, test_loss=1.0 / (e + 2),
                 test_acc=acc, images_per_s=100.0, elapsed_s=float(e)) for e in range(3)]
    pd.DataFrame(rows, columns=CNN_COLUMNS).to_csv(folder / "metrics.csv", index=False)
    (folder / "config.json").write_text(json.dumps({"command": "train-cnn", "options": {"lr": float(lr)}}))
    return folder


def write_sweep(folder: Path, points=POINTS, grid=None, fixed=None, runs=True) -> Path:
    """A sweep folder with the given points; runs/ holds a run folder per done row (when `runs`)."""
    grid = grid or {"arch": ARCHS, "lr": LRS}
    fixed = {"epochs": "6"} if fixed is None else fixed
    folder.mkdir(parents=True)
    rows, failures = [], []
    for point, seeds in points.items():
        for seed, (status, acc, loss) in enumerate(seeds):
            name = f"{len(rows):03d}-seed{seed}"
            values = dict(zip(grid, point))
            rows.append({"run": name, **values, "seed": seed, "status": status, "resumed_at": None, "wall_s": 1.5,
                         "worker": "tcp://127.0.0.1:1", "final_test_acc": acc, "final_test_loss": loss})
            if status == "failed":
                failures.append({"run": name, "error": "RuntimeError: boom"})
            elif runs:
                fake_cnn_run(folder / "runs" / name, acc, values.get("lr", fixed.get("lr", "1e-3")))
    pd.DataFrame(rows).to_csv(folder / "sweep.csv", index=False)
    pd.DataFrame(failures, columns=["run", "error"]).to_csv(folder / "failures.csv", index=False)
    (folder / "sweep.json").write_text(json.dumps({
        "command": "sweep", "experiment": "train-cnn", "created_utc": "2026-01-01T00:00:00", "grid": grid,
        "fixed": fixed, "seeds": [0, 1, 2], "runs": len(rows)}))
    return folder


def sweep_table(*args) -> pd.DataFrame:
    result = ok("analyse", *args, "--format", "csv")
    frame = pd.read_csv(io.StringIO(result.stdout), keep_default_na=True)
    return frame[frame["section"] == "sweep"].reset_index(drop=True)


def test_means_std_and_ci95_by_hand_failed_rows_excluded(tmp_path):
    sweep = write_sweep(tmp_path / "sweep-a")
    table = sweep_table(sweep)
    assert list(table.columns[:5]) == ["section", "arch", "lr", "runs", "failed"]
    assert [(a, f"{lr:.0e}".replace("e-0", "e-")) for a, lr in zip(table["arch"], table["lr"])] == list(POINTS)
    assert list(table["runs"]) == [3, 2, 0, 1] and list(table["failed"]) == [1, 0, 2, 0]
    first = table.loc[0]
    # 0.90, 0.92, 0.94: mean 0.92, std 0.02, ci95 = t(0.975, 2) * 0.02 / sqrt(3); the failed 0.0 is left out
    assert first["final_test_acc_mean"] == pytest.approx(0.92, rel=1e-12)
    assert first["final_test_acc_std"] == pytest.approx(0.02, rel=1e-9)
    assert first["final_test_acc_ci95"] == pytest.approx(T_975_2 * 0.02 / math.sqrt(3), rel=1e-9)
    assert first["final_test_loss_mean"] == pytest.approx(0.4, rel=1e-12)
    assert first["final_test_loss_ci95"] == pytest.approx(T_975_2 * 0.1 / math.sqrt(3), rel=1e-9)
    second = table.loc[1]  # 0.95, 0.97: std 0.02 / sqrt(2) * 2 = 0.01414..., t with 1 degree of freedom
    assert second["final_test_acc_mean"] == pytest.approx(0.96, rel=1e-12)
    assert second["final_test_acc_std"] == pytest.approx(math.sqrt(2) * 0.01, rel=1e-9)
    assert second["final_test_acc_ci95"] == pytest.approx(T_975_1 * 0.01, rel=1e-9)
    assert np.isnan(table.loc[2, "final_test_acc_mean"]) and np.isnan(table.loc[2, "final_test_acc_ci95"])
    one = table.loc[3]  # one run: a mean, no spread
    assert one["final_test_acc_mean"] == pytest.approx(0.80) and np.isnan(one["final_test_acc_std"])
    assert np.isnan(one["final_test_acc_ci95"])
    text = ok("analyse", sweep).stdout
    assert f"sweep train-cnn: {sweep}" in text
    assert "0.92 ± 0.04968" in text and "0.96 ± 0.1271" in text and "wall_s" not in text


def test_two_sweeps_side_by_side(tmp_path):
    a = write_sweep(tmp_path / "a")
    only_lr = {("3e-3",): [("done", 0.5, 1.0), ("done", 0.7, 0.8)]}
    b = write_sweep(tmp_path / "b", points=only_lr, grid={"lr": ["3e-3"]}, fixed={"arch": "digits"})
    table = sweep_table(a, b)
    assert list(table.columns[:6]) == ["section", "sweep", "arch", "lr", "runs", "failed"]
    assert list(table["sweep"]) == ["a"] * 4 + ["b"]
    last = table.iloc[-1]
    assert (last["arch"], last["lr"], last["runs"]) == ("digits", 3e-3, 2)  # arch: b's fixed value
    assert last["final_test_acc_mean"] == pytest.approx(0.6)
    assert last["final_test_acc_ci95"] == pytest.approx(T_975_1 * math.sqrt(0.02) / math.sqrt(2), rel=1e-9)
    assert "2 sweeps side by side (a, b)" in ok("analyse", a, b).stdout
    assert len(sweep_table(a, a / "sweep.json")) == 4  # one sweep reached twice counts once


def test_walking_finds_the_sweep_once_and_not_its_runs(tmp_path):
    results = tmp_path / "results"
    sweep = write_sweep(results / "sweep" / "20260101-000000-aaaaaa")
    fake_cnn_run(results / "train-cnn" / "20260101-000000-bbbbbb", 0.5)
    result = ok("analyse", results, "--format", "csv")
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert list(frame["section"]) == ["train-cnn"] + ["sweep"] * 4
    run = sorted((sweep / "runs").iterdir())[0]
    direct = pd.read_csv(io.StringIO(ok("analyse", run, "--format", "csv").stdout))
    assert list(direct["section"]) == ["train-cnn"] and list(direct["run"]) == [run.name]
    walked_runs = pd.read_csv(io.StringIO(ok("analyse", sweep / "runs", "--format", "csv").stdout))
    assert len(walked_runs) == 6 and set(walked_runs["section"]) == {"train-cnn"}


def test_a_broken_sweep_is_skipped_when_walking(tmp_path):
    write_sweep(tmp_path / "good")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "sweep.json").write_text("{not json")
    result = ok("analyse", tmp_path)
    assert "skipped: cannot read" in result.stderr and "sweep train-cnn:" in result.stdout


@pytest.fixture
def sweeps(tmp_path):
    write_sweep(tmp_path / "good")
    fake_cnn_run(tmp_path / "plain", 0.5)
    (tmp_path / "unreadable").mkdir()
    (tmp_path / "unreadable" / "sweep.json").write_text("{not json")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "sweep.json").write_text(json.dumps({"command": "train-cnn"}))
    write_sweep(tmp_path / "no-csv")
    (tmp_path / "no-csv" / "sweep.csv").unlink()
    return tmp_path


@pytest.mark.parametrize("args, needle", [
    (["good", "--metric", "nope", "--plot", "p"], "--metric nope: not a metric of the train-cnn sweep; available: "
                                                  "final_test_acc, final_test_loss"),
    (["good", "--x", "nope", "--plot", "p"], "--x nope: not a grid key of the train-cnn sweep; available: arch, lr"),
    (["good", "--hue", "epochs", "--plot", "p"], "--hue epochs: not a grid key"),
    (["good", "--x", "lr", "--hue", "lr", "--plot", "p"], "--x and --hue are both lr"),
    (["good", "--metric", "final_test_acc"], "--metric chooses the sweep figure; give --plot DIR too"),
    (["plain", "--x", "lr", "--plot", "p"], "--x: for sweep folders (with sweep.json), and none was found"),
    (["good", "--group-by", "lr"], "--group-by lr: groups runs"),
    (["unreadable"], "cannot read"),
    (["foreign"], "is not from nbnets sweep"),
    (["no-csv"], "is a sweep without its sweep.csv"),
])
def test_bad_sweep_input_is_one_line_exit_2(sweeps, args, needle):
    result = invoke("analyse", *[str(sweeps / a) if i == 0 or a == "p" else a for i, a in enumerate(args)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], result.output
    assert not (sweeps / "p").exists()


def test_the_sweep_figure_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    sweep = write_sweep(tmp_path / "s")
    plots = tmp_path / "plots"
    result = ok("analyse", sweep, "--plot", plots)
    ok("analyse", sweep, write_sweep(tmp_path / "t"), "--plot", plots, "--metric", "final_test_loss", "--x", "lr")
    names = ["sweep_final_test_acc_vs_arch.png", "sweep_final_test_loss_vs_lr.png"]
    assert sorted(p.name for p in plots.iterdir()) == names
    for name in names:
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    assert f"wrote {plots / names[0]}" in result.stdout


# --------------------------------------------------------------------------- headline() on real tiny runs

@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("headline")
    rng = np.random.default_rng(0)
    np.savez(root / "images.npz", x=rng.normal(size=(40, 1, 8, 8)).astype(np.float32), y=np.arange(40) % 4)
    (root / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog. " * 40)
    ok("train-cnn", "--data", root / "images.npz", "--arch", "conv4x3x3-relu-pool2-fc4", "--epochs", "1",
       "--batch-size", "8", "--no-plot", "--quiet", "--out", root / "cnn")
    ok("train-charlm", "--corpus", root / "corpus.txt", "--steps", "3", "--hidden", "8", "--layers", "1",
       "--seq-len", "8", "--batch-size", "2", "--sample-length", "0", "--quiet", "--out", root / "lm")
    ok("grad-decay", "--steps", "3", "--hidden", "4", "--cells", "lstm", "--no-plot", "--out", root / "gd1")
    ok("grad-decay", "--steps", "3", "--hidden", "4", "--cells", "rnn-tanh,lstm", "--seeds", "2", "--no-plot",
       "--out", root / "gd2")
    return {name: next((root / name).glob("*/*/config.json")).parent for name in ("cnn", "lm", "gd1", "gd2")}


def analysed_row(run: Path) -> pd.Series:
    frame = pd.read_csv(io.StringIO(ok("analyse", run, "--format", "csv").stdout))
    return frame.iloc[0]


@pytest.mark.parametrize("name, keys", [
    ("cnn", ["final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc", "best_test_loss",
             "best_test_acc", "best_acc_epoch", "images_per_s", "elapsed_s"]),
    ("lm", ["final_train_loss", "final_val_loss", "best_val_loss", "best_step", "chars_per_s", "elapsed_s"]),
    ("gd1", ["rho", "lambda1", "lambda1_gamma", "effective_rate", "decay_factor", "steps_to_1e-3"]),
])
def test_headline_is_what_analyse_prints(real_runs, name, keys):
    numbers = headline(real_runs[name])
    assert list(numbers) == keys and all(isinstance(v, float) for v in numbers.values())
    row = analysed_row(real_runs[name])
    for key, value in numbers.items():
        assert value == pytest.approx(row[key], rel=1e-12, nan_ok=True), key
    if name == "gd1":
        assert math.isnan(numbers["rho"]) and numbers["decay_factor"] > 0  # an LSTM has no rho


def test_headline_of_a_grad_decay_run_with_several_rows(real_runs):
    numbers = headline(real_runs["gd2"])
    summary = pd.read_csv(real_runs["gd2"] / "summary.csv")
    assert len(summary) == 4 and len(numbers) == 6 * 4
    for cell, seed, factor in summary[["cell", "seed", "decay_factor"]].itertuples(index=False):
        assert numbers[f"decay_factor.{cell}.{seed}"] == pytest.approx(factor, rel=1e-12)
    assert list(numbers)[:4] == ["rho.rnn-tanh.0", "rho.lstm.0", "rho.rnn-tanh.1", "rho.lstm.1"]


def test_headline_rejects_what_is_not_such_a_run(tmp_path, real_runs):
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "config.json").write_text(json.dumps({"command": "bench"}))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"command": "train-cnn", "options": {}}))
    (tmp_path / "empty").mkdir()
    for folder, needle in [(tmp_path / "missing", "no such folder"), (tmp_path / "empty", "is not a run folder"),
                           (bench, "is a 'bench' run; headline numbers are for train-charlm"), (broken, "without its metrics.csv"),
                           (real_runs["cnn"].parent, "is not a run folder")]:
        with pytest.raises(ValueError, match=".") as info:
            headline(folder)
        assert needle in str(info.value) and "\n" not in str(info.value), folder
