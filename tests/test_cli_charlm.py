"""`nbnets train-charlm` and `nbnets sample` through click's CliRunner, tiny settings.

Checks the files of a run folder and their columns and values (not only exit
codes), and that every bad input gets a one-line `Error: ...` with exit code 2
and loses nothing already written.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from runner.charlm import checkpoint as charlm_checkpoint
from runner.charlm import train as charlm
from runner.cli import main

TEXT = "def f(x):\n    return x + 1\n\n" * 120  # a small, very repetitive corpus: 3,480 characters
TINY = ["--hidden", "16", "--layers", "1", "--seq-len", "10", "--batch-size", "4", "--lr", "0.01",
        "--eval-every", "10", "--sample-every", "20", "--sample-length", "30", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_input_error(result, *fragments):
    """Exit code 2, one line `Error: ...` naming every fragment, no traceback."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("charlm")


@pytest.fixture(scope="module")
def corpus(workdir):
    path = workdir / "code.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run_dir(workdir, corpus):
    result = invoke("train-charlm", "--corpus", corpus, *TINY, "--steps", 60, "--out", workdir / "out")
    assert result.exit_code == 0, result.output
    (folder,) = (workdir / "out" / "train-charlm").iterdir()
    return folder, result.output


def test_run_folder_files_and_columns(run_dir):
    folder, output = run_dir
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "metrics.csv", "samples.txt", "checkpoint.npz", "checkpoint.json",
            "best.npz"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    metrics = pd.read_csv(folder / "metrics.csv")
    assert list(metrics.columns) == ["step", "epoch", "train_loss", "val_loss", "train_bpc", "val_bpc",
                                     "grad_norm", "clipped", "lr", "chars_per_s", "elapsed_s"]
    assert list(metrics.step) == list(range(1, 61))
    evaluated = metrics.dropna(subset=["val_loss"])
    assert list(evaluated.step) == [10, 20, 30, 40, 50, 60]
    np.testing.assert_allclose(metrics.train_bpc, metrics.train_loss / np.log(2), rtol=1e-6)
    assert set(metrics.clipped) <= {0, 1} and (metrics.grad_norm > 0).all()
    assert metrics.elapsed_s.is_monotonic_increasing and (metrics.chars_per_s > 0).all()
    config = json.loads((folder / "config.json").read_text())
    assert config["command"] == "train-charlm" and config["device"] == "cpu"
    assert config["options"]["hidden"] == 16 and config["options"]["optimizer"] == "rmsprop"
    assert config["corpus"]["chars"] == len(TEXT) and len(config["corpus"]["sha256"]) == 64
    assert {"numbanets", "numba", "numpy"} <= set(config["versions"])
    samples = (folder / "samples.txt").read_text()
    assert samples.count("=== step ") == 3  # steps 20, 40, 60
    assert "unigram entropy" in output and "best val loss" in output


def test_loss_goes_down_on_a_repetitive_corpus(run_dir):
    folder, _ = run_dir
    m = pd.read_csv(folder / "metrics.csv")
    entropy = json.loads((folder / "config.json").read_text())["corpus"]["unigram_entropy_nats"]
    assert m.train_loss.iloc[-5:].mean() < 0.5 * m.train_loss.iloc[:5].mean()
    assert m.val_loss.dropna().iloc[-1] < 0.6 * entropy  # well below what no context allows


def test_sample_from_run_folder_and_checkpoint(run_dir):
    folder, _ = run_dir
    a = invoke("sample", folder, "--prime", "def ", "--length", 40, "--seed", 1)
    b = invoke("sample", folder / "checkpoint.npz", "--prime", "def ", "--length", 40, "--seed", 1)
    assert a.exit_code == 0 and b.exit_code == 0
    assert a.output.startswith("def ") and len(a.output) == 4 + 40 + 1  # prime, sample, newline
    again = invoke("sample", folder, "--prime", "def ", "--length", 40, "--seed", 1)
    assert again.output == a.output
    greedy = [invoke("sample", folder, "--length", 30, "--temperature", 0, "--seed", s).output for s in (1, 2)]
    assert greedy[0] == greedy[1]
    assert invoke("sample", folder, "--length", 30, "--top-k", 1, "--seed", 5).output == greedy[0]


# --------------------------------------------------------------------------- bad input

def test_missing_empty_short_and_undecodable_corpus(workdir):
    out = workdir / "bad-out"
    assert_input_error(invoke("train-charlm", "--corpus", workdir / "nope.txt", "--out", out), "does not exist")
    empty = workdir / "empty.txt"
    empty.write_text("")
    assert_input_error(invoke("train-charlm", "--corpus", empty, "--out", out), "is empty")
    short = workdir / "short.txt"
    short.write_text("abc" * 20)
    assert_input_error(invoke("train-charlm", "--corpus", short, *TINY, "--out", out),
                       "too short for one batch", "--seq-len 10")
    latin = workdir / "latin.txt"
    latin.write_bytes(("caf\xe9 au lait. " * 300).encode("latin-1"))
    assert_input_error(invoke("train-charlm", "--corpus", latin, "--out", out),
                       "not valid utf-8", "offset 3", "--encoding")
    assert not out.exists()  # no half-made run folder for bad input
    ok = invoke("train-charlm", "--corpus", latin, "--encoding", "latin-1", *TINY, "--steps", 2, "--out", out)
    assert ok.exit_code == 0, ok.output


def test_unwritable_out(workdir, corpus):
    blocker = workdir / "a-file"
    blocker.write_text("not a folder")
    assert_input_error(invoke("train-charlm", "--corpus", corpus, *TINY, "--steps", 2, "--out", blocker / "sub"),
                       "cannot write to --out")


def test_prime_outside_vocabulary(run_dir):
    folder, _ = run_dir
    assert_input_error(invoke("sample", folder, "--prime", "déf€"), "not in the model's vocabulary", "'é'", "'€'")


def test_corrupt_and_foreign_checkpoints(workdir, run_dir):
    folder, _ = run_dir
    truncated = workdir / "truncated.npz"
    truncated.write_bytes((folder / "checkpoint.npz").read_bytes()[:500])
    assert_input_error(invoke("sample", truncated), "not a numbanets checkpoint")
    foreign = workdir / "foreign.npz"
    np.savez(foreign, w=np.ones(3))
    assert_input_error(invoke("sample", foreign), "not a numbanets checkpoint")
    text = workdir / "notes.txt"
    text.write_text("hello")
    assert_input_error(invoke("sample", text), "not a numbanets checkpoint")
    assert_input_error(invoke("sample", workdir / "missing-run"), "does not exist")
    # a run folder whose checkpoint is damaged cannot be resumed, and stays as it was
    import shutil

    copy = workdir / "damaged-run"
    shutil.copytree(folder, copy)
    (copy / "checkpoint.npz").write_bytes(b"garbage")
    before = (copy / "metrics.csv").read_bytes()
    assert_input_error(invoke("train-charlm", "--resume", copy, "--steps", 80), "not a numbanets checkpoint")
    assert (copy / "metrics.csv").read_bytes() == before


def test_resume_with_a_changed_setting_is_refused(run_dir):
    folder, _ = run_dir
    assert_input_error(invoke("train-charlm", "--resume", folder, "--steps", 70, "--hidden", 32),
                       "--hidden 32 (the run has 16)")


def test_nan_loss_stops_with_step_and_norm_and_keeps_the_checkpoint(workdir, corpus, monkeypatch):
    original = charlm.Trainer.train_step

    def poisoned(self):
        if self.step == 13:
            self.model.head.params["w"][:] = np.inf
        return original(self)

    monkeypatch.setattr(charlm.Trainer, "train_step", poisoned)
    out = workdir / "nan-out"
    result = invoke("train-charlm", "--corpus", corpus, *TINY, "--steps", 30, "--out", out)
    assert_input_error(result, "at step 14", "gradient norm", "last good checkpoint (step 10)")
    (folder,) = (out / "train-charlm").iterdir()
    arrays, meta = charlm_checkpoint.load(folder / "checkpoint.npz")
    assert meta["step"] == 10 and np.isfinite(arrays["param/head.w"]).all()
    assert pd.read_csv(folder / "metrics.csv").step.max() == 13


def test_bad_option_values_are_usage_errors():
    result = invoke("train-charlm", "--clip", "-1")
    assert result.exit_code == 2 and "Invalid value for '--clip'" in result.output
    result = invoke("sample", ".", "--temperature", "-0.5")
    assert result.exit_code == 2 and "Invalid value for '--temperature'" in result.output


def test_resume_through_the_cli_appends_to_the_same_folder(workdir, corpus):
    out = workdir / "resume-out"
    first = invoke("train-charlm", "--corpus", corpus, *TINY, "--steps", 20, "--out", out)
    assert first.exit_code == 0, first.output
    (folder,) = (out / "train-charlm").iterdir()
    again = invoke("train-charlm", "--resume", folder, "--steps", 30, "--quiet")
    assert again.exit_code == 0, again.output
    assert "resumed at step 20" in again.output
    assert list((out / "train-charlm").iterdir()) == [folder]  # no new run folder
    assert list(pd.read_csv(folder / "metrics.csv").step) == list(range(1, 31))
    config = json.loads((folder / "config.json").read_text())
    assert config["resumed"][0]["at_step"] == 20 and config["resumed"][0]["steps"] == 30
