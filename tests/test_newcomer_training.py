"""What a newcomer hit with `nbnets train-charlm` and `nbnets train-cnn` (the issue of that name).

Each test runs the commands through click's CliRunner with tiny settings and
checks the exit code, the one line a refusal prints, and that nothing already
written in the run folder is lost or changed by it:

- a run folder holds a checkpoint from its first second (a NaN at step 2 keeps step 0's);
- --resume works from another working directory, with the corpus or data file
  moved, recognised by its SHA-256;
- --resume to a length below the run's refuses, config.json untouched;
- the options --resume may change are one list, in the error and the manuals;
- a one-symbol corpus has entropy 0, not -0;
- config.json records the options as used (steps, init scale, threads);
- train-cnn's summary gives one time per line;
- every evaluation prints a line.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from runner.charlm import options as charlm_options
from runner.cli import main
from runner.cnn import options as cnn_options

ROOT = Path(__file__).resolve().parents[1]
TEXT = "def f(x):\n    return x + 1\n\n" * 40  # 1,120 characters: 66 windows of 2 x 8 per epoch
CHARLM = ["--hidden", "8", "--layers", "1", "--seq-len", "8", "--batch-size", "2", "--sample-length", "0",
          "--quiet"]
CNN = ["--arch", "conv2x3x3-fc10", "--no-plot", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def refused(result, *fragments) -> str:
    """Exit code 2 and a last line `Error: ...` naming every fragment, no traceback; returns that line."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    line = [s for s in result.output.splitlines() if s.strip()][-1]
    assert line.startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in line, line
    return line


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def only_run(out: Path, command: str) -> Path:
    (folder,) = (out / command).iterdir()
    return folder


def charlm_run(tmp_path, *args, corpus=None, out="out") -> Path:
    if corpus is None:
        corpus = tmp_path / "small.txt"
        corpus.write_text(TEXT, encoding="utf-8")
    ok(invoke("train-charlm", "--corpus", corpus, *CHARLM, *args, "--out", tmp_path / out))
    return only_run(tmp_path / out, "train-charlm")


# --------------------------------------------------------------------------- 2: a checkpoint that is there


def test_charlm_nan_at_step_2_keeps_the_step_0_checkpoint_it_names(tmp_path):
    corpus = tmp_path / "small.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "out"
    result = invoke("train-charlm", "--corpus", corpus, *CHARLM, "--steps", 30, "--eval-every", 10,
                    "--lr", "1e9", "--optimizer", "sgd", "--clip", 0, "--cell", "rnn", "--activation", "relu",
                    "--out", out)
    refused(result, "at step 2", "the last good checkpoint (step 0) is kept in")
    folder = only_run(out, "train-charlm")
    meta = json.loads((folder / "checkpoint.json").read_text())
    assert meta["step"] == 0 and (folder / "checkpoint.npz").is_file()
    assert list(pd.read_csv(folder / "metrics.csv").step) == [1]  # the good step before the NaN
    # the folder is a valid run: it samples and it resumes
    assert ok(invoke("sample", folder, "--length", 5)).strip()
    ok(invoke("train-charlm", "--resume", folder, "--steps", 1, "--quiet"))
    assert list(pd.read_csv(folder / "metrics.csv").step) == [1]
    assert json.loads((folder / "checkpoint.json").read_text())["step"] == 1


def test_cnn_nan_in_epoch_1_keeps_the_epoch_0_checkpoint_it_names(tmp_path):
    out = tmp_path / "out"
    result = invoke("train-cnn", *CNN, "--epochs", 2, "--lr", "1e9", "--optimizer", "sgd", "--out", out)
    refused(result, "the last good checkpoint (epoch 0) is kept in")
    folder = only_run(out, "train-cnn")
    meta = json.loads((folder / "checkpoint.json").read_text())
    assert meta["epoch"] == 0 and meta["step"] == 0
    assert list(pd.read_csv(folder / "metrics.csv").epoch) == [0]
    ok(invoke("export-json", folder))  # a valid run folder
    before = snapshot(folder)
    refused(invoke("train-cnn", "--resume", folder, "--epochs", 2, "--quiet"), "(epoch 0) is kept in")
    assert snapshot(folder)["checkpoint.npz"] == before["checkpoint.npz"]


# --------------------------------------------------------------------------- 3: resume from elsewhere


def test_charlm_resume_from_another_folder_and_with_a_moved_corpus(tmp_path, monkeypatch):
    base, other = tmp_path / "base", tmp_path / "other"
    base.mkdir()
    other.mkdir()
    (base / "small.txt").write_text(TEXT, encoding="utf-8")
    monkeypatch.chdir(base)
    ok(invoke("train-charlm", "--corpus", "small.txt", *CHARLM, "--steps", 10, "--eval-every", 10, "--out", "out"))
    folder = only_run(base / "out", "train-charlm")
    config = json.loads((folder / "config.json").read_text())
    assert config["options"]["corpus"] == str(base / "small.txt")
    assert len(config["corpus"]["sha256"]) == 64

    monkeypatch.chdir(other)
    relative = Path("..") / "base" / "out" / "train-charlm" / folder.name
    ok(invoke("train-charlm", "--resume", relative, "--steps", 20, "--quiet"))
    ok(invoke("train-charlm", "--resume", relative, "--steps", 30, "--corpus", base / "small.txt", "--quiet"))
    assert pd.read_csv(folder / "metrics.csv").step.max() == 30

    # the corpus moves: the error says to pass --corpus, and a copy with the same SHA-256 is taken
    shutil.copy(base / "small.txt", other / "copy.txt")
    (base / "small.txt").unlink()
    before = snapshot(folder)
    refused(invoke("train-charlm", "--resume", relative, "--steps", 40, "--quiet"), "pass --corpus")
    (other / "changed.txt").write_text(TEXT.replace("x", "y"), encoding="utf-8")
    refused(invoke("train-charlm", "--resume", relative, "--steps", 40, "--corpus", "changed.txt", "--quiet"),
            "sha256")
    assert snapshot(folder) == before
    ok(invoke("train-charlm", "--resume", relative, "--steps", 40, "--corpus", "copy.txt", "--quiet"))
    assert list(pd.read_csv(folder / "metrics.csv").step) == list(range(1, 41))
    config = json.loads((folder / "config.json").read_text())
    assert config["options"]["corpus"] == str(other / "copy.txt")  # where the next resume finds it
    ok(invoke("train-charlm", "--resume", relative, "--steps", 50, "--quiet"))


def test_cnn_resume_from_another_folder_and_with_moved_data(tmp_path, monkeypatch):
    base, other = tmp_path / "base", tmp_path / "other"
    base.mkdir()
    other.mkdir()
    x = (np.random.default_rng(0).random((24, 6, 6)) * 255).astype(np.uint8)
    np.savez(base / "tiny.npz", x=x, y=np.arange(24) % 3)
    args = ["--arch", "conv2x3x3-relu-fc3", "--batch-size", 8, "--no-plot", "--quiet"]
    monkeypatch.chdir(base)
    ok(invoke("train-cnn", "--data", "tiny.npz", *args, "--epochs", 1, "--out", "out"))
    folder = only_run(base / "out", "train-cnn")
    config = json.loads((folder / "config.json").read_text())
    assert config["options"]["data"] == str(base / "tiny.npz")

    monkeypatch.chdir(other)
    relative = Path("..") / "base" / "out" / "train-cnn" / folder.name
    ok(invoke("train-cnn", "--resume", relative, "--epochs", 2, "--quiet"))
    ok(invoke("train-cnn", "--resume", relative, "--epochs", 3, "--data", base / "tiny.npz", "--quiet"))
    shutil.copy(base / "tiny.npz", other / "copy.npz")
    (base / "tiny.npz").unlink()
    before = snapshot(folder)
    refused(invoke("train-cnn", "--resume", relative, "--epochs", 4, "--quiet"), "pass --data")
    assert snapshot(folder) == before
    ok(invoke("train-cnn", "--resume", relative, "--epochs", 4, "--data", "copy.npz", "--quiet"))
    assert list(pd.read_csv(folder / "metrics.csv").epoch) == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------- 10: a length below the run's


def test_charlm_resume_below_the_runs_step_is_refused_and_changes_nothing(tmp_path):
    folder = charlm_run(tmp_path, "--steps", 20, "--eval-every", 10)
    before = snapshot(folder)
    result = invoke("train-charlm", "--resume", folder, "--steps", 10, "--quiet")
    refused(result, "already at step 20")
    assert "21..10" not in result.output
    assert snapshot(folder) == before
    # the same length: nothing to do, and nothing written
    assert "nothing to do" in ok(invoke("train-charlm", "--resume", folder, "--steps", 20, "--quiet"))
    assert snapshot(folder) == before


def test_cnn_resume_below_the_runs_epoch_is_refused_and_changes_nothing(tmp_path):
    out = tmp_path / "out"
    ok(invoke("train-cnn", *CNN, "--epochs", 2, "--out", out))
    folder = only_run(out, "train-cnn")
    before = snapshot(folder)
    result = invoke("train-cnn", "--resume", folder, "--epochs", 1, "--quiet")
    refused(result, "already at epoch 2")
    assert "3..1" not in result.output
    assert snapshot(folder) == before


# --------------------------------------------------------------------------- 11: one list of what may change


def _norm(text: str) -> str:
    return " ".join(text.replace("`", "").split()).lower()


@pytest.mark.parametrize("command, overrides, manual, setup, clash", [
    ("train-charlm", charlm_options.RESUME_OVERRIDES, "train-charlm.md", "charlm", ["--hidden", 16]),
    ("train-cnn", cnn_options.RESUME_OVERRIDES, "train-cnn.md", "cnn", ["--lr", 0.5]),
])
def test_the_options_resume_may_change_are_one_list_in_error_and_manual(tmp_path, command, overrides, manual,
                                                                      setup, clash):
    if setup == "charlm":
        folder = charlm_run(tmp_path, "--steps", 2, "--eval-every", 2)
    else:
        ok(invoke("train-cnn", *CNN, "--epochs", 0, "--out", tmp_path / "out"))
        folder = only_run(tmp_path / "out", "train-cnn")
    before = snapshot(folder)
    line = refused(invoke(command, "--resume", folder, *clash, "--quiet"), f"{clash[0]} {clash[1]}")
    assert snapshot(folder) == before
    rule = line[line.index("only "):]
    for name in overrides:
        assert f"--{name.replace('_', '-')}" in rule, (name, rule)
    text = (ROOT / "docs" / "commands" / manual).read_text()
    assert _norm(rule) in _norm(text), f"{manual} does not state: {rule}"


# --------------------------------------------------------------------------- 12: entropy 0, not -0


def test_one_symbol_corpus_has_unigram_entropy_0_not_minus_0(tmp_path):
    corpus = tmp_path / "one.txt"
    corpus.write_text("a" * 400, encoding="utf-8")
    out = ok(invoke("train-charlm", "--corpus", corpus, *CHARLM, "--steps", 2, "--eval-every", 2,
                    "--out", tmp_path / "out"))
    assert "-0.0" not in out, out
    assert "unigram entropy 0.0000 nats/char" in out
    config = json.loads((only_run(tmp_path / "out", "train-charlm") / "config.json").read_text())
    assert math.copysign(1.0, config["corpus"]["unigram_entropy_nats"]) == 1.0


# --------------------------------------------------------------------------- 13: options as used


def test_config_records_the_resolved_steps_init_scale_and_threads(tmp_path):
    folder = charlm_run(tmp_path, "--epochs", 0.1, "--eval-every", 5)
    options = json.loads((folder / "config.json").read_text())["options"]
    assert options["steps"] == 7 == pd.read_csv(folder / "metrics.csv").step.max()  # ceil(0.1 * 66)
    assert options["init_scale"] == 0.08
    assert isinstance(options["threads"], int) and options["threads"] >= 1
    folder = charlm_run(tmp_path, "--steps", 2, "--init", "normal", "--threads", 1, out="out2")
    options = json.loads((folder / "config.json").read_text())["options"]
    assert options["init_scale"] == pytest.approx(1 / math.sqrt(8)) and options["threads"] == 1


# --------------------------------------------------------------------------- 14: one time per summary line


def test_cnn_summary_gives_one_time_per_line(tmp_path):
    out = ok(invoke("train-cnn", *CNN, "--epochs", 1, "--out", tmp_path / "out"))
    summary = out[out.index("\nrun "):]
    for line in summary.splitlines():
        assert len(re.findall(r"\d[\d,.]* s\b", line)) <= 1, line
    assert re.search(r"(?m)^train time +\d+\.\d s in training steps this session", summary), summary


# --------------------------------------------------------------------------- 15: a line per evaluation


def test_charlm_prints_a_line_at_every_evaluation(tmp_path):
    corpus = tmp_path / "small.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    out = ok(invoke("train-charlm", "--corpus", corpus, *CHARLM, "--steps", 60, "--eval-every", 20,
                    "--out", tmp_path / "out"))
    assert re.findall(r"(?m)^step +(\d+) +train loss .* val loss \d", out) == ["20", "40", "60"], out
    metrics = pd.read_csv(only_run(tmp_path / "out", "train-charlm") / "metrics.csv")
    assert list(metrics.dropna(subset=["val_loss"]).step) == [20, 40, 60]
