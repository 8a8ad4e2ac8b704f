"""What a newcomer hit: input and situations that ended in a traceback, a misleading
line or a wrong exit code, each now one line `Error: ...` (exit 2; 130 for a
second Ctrl-C) that loses nothing already written.

- a run too big for the machine's memory is refused from its options before
  anything is allocated or created, and a MemoryError that still escapes is one line;
- a run folder in use by another nbnets process is refused (RUN/.lock, flock);
- a second Ctrl-C exits 130 saying nothing more is saved (not click's "Aborted!", 1);
- a file that is not an .npz archive is called that (not "cannot read it without pickle"),
  and `nbnets sample FILE` names FILE, not FILE.npz;
- inf and nan are refused by every float option as not finite;
- files are created with the user's umask, not 0600;
- click's deprecated get_text_stream is gone, and pytest fails on a
  DeprecationWarning raised from the project's own modules.

The memory tests never allocate: the runs they ask for are terabytes, refused
from their options; the available memory is fixed at 23 GiB for a stable message.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from numbanets import checkpoint
from runner.cli import main

ROOT = Path(__file__).resolve().parents[1]
TEXT = "def f(x):\n    return x + 1\n\n" * 120
CHARLM_TINY = ["--hidden", "8", "--layers", "1", "--seq-len", "8", "--batch-size", "2", "--eval-every", "1",
               "--sample-length", "0", "--quiet", "--device", "cpu"]
CNN_TINY = ["--arch", "fc10", "--batch-size", "64", "--no-plot", "--quiet", "--device", "cpu"]
GIB = 2 ** 30


def _run(*args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


def _one_line(result, code=2):
    """The one output line of a refused command (exit `code`, no traceback, nothing else printed)."""
    assert result.exit_code == code, (result.output, result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "code.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture
def charlm_run(tmp_path, corpus):
    result = _run("train-charlm", "--corpus", corpus, *CHARLM_TINY, "--steps", 2, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "out" / "train-charlm").iterdir()
    return run


@pytest.fixture
def cnn_run(tmp_path):
    result = _run("train-cnn", *CNN_TINY, "--epochs", 1, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "out" / "train-cnn").iterdir()
    return run


# --------------------------------------------------------------------------- 1. out of memory

def _available(monkeypatch, size):
    """Fix the memory the check sees (without the check, the command runs into numpy's allocation)."""
    try:
        from runner.common import footprint
    except ImportError:
        return
    monkeypatch.setattr(footprint, "available_bytes", lambda: size)


@pytest.fixture
def available_23_gib(monkeypatch):
    _available(monkeypatch, 23 * GIB)


@pytest.mark.parametrize("command, args, names", [
    ("grad-decay", ["--hidden", "1000000", "--cells", "rnn-tanh", "--steps", "7", "--no-plot"], "--hidden 1000000"),
    ("train-charlm", ["--hidden", "1000000", "--cell", "rnn", "--layers", "1", "--steps", "1", "--quiet",
                      "--device", "cpu"], "--hidden 1000000"),
    ("train-cnn", ["--arch", "fc10000000000", "--epochs", "1", "--quiet", "--no-plot", "--device", "cpu"],
     "--arch fc10000000000"),
])
def test_a_run_too_big_for_memory_is_refused_before_its_folder(tmp_path, corpus, available_23_gib,
                                                               command, args, names):
    extra = ["--corpus", corpus] if command == "train-charlm" else []
    line = _one_line(_run(command, *args, *extra, "--out", tmp_path / "out"))
    assert re.fullmatch(r"Error: .*needs about [\d,.]+ GiB; 23 GiB available", line), line
    assert line.startswith(f"Error: {names}"), line
    assert not (tmp_path / "out").exists()


def test_a_resume_too_big_for_memory_is_refused_and_keeps_the_run(charlm_run, monkeypatch):
    before = _snapshot(charlm_run)
    _available(monkeypatch, 10 * 2 ** 10)  # the tiny run needs more than 10 KiB
    line = _one_line(_run("train-charlm", "--resume", charlm_run, "--steps", 4))
    assert re.fullmatch(r"Error: --hidden 8 --layers 1 needs about [\d,.]+ KiB; 10 KiB available", line), line
    assert _snapshot(charlm_run) == before


def test_a_memory_error_that_escapes_is_one_line(tmp_path, monkeypatch):
    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate 74.5 GiB for an array with shape (100000, 100000) "
                          "and data type float64")

    monkeypatch.setattr("runner.graddecay.command.collect", exhausted)
    line = _one_line(_run("grad-decay", "--hidden", "4", "--steps", "2", "--no-plot", "--out", tmp_path / "out"))
    assert line.startswith("Error: out of memory") and "Unable to allocate 74.5 GiB" in line, line
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- 4. one process per run folder

HOLDER = textwrap.dedent("""
    import fcntl, os, sys
    fd = os.open(os.path.join(sys.argv[1], ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\\n".encode())
    print("locked", flush=True)
    sys.stdin.read()
""")


@pytest.mark.parametrize("command, fixture, more", [
    ("train-charlm", "charlm_run", ["--steps", "4"]),
    ("train-cnn", "cnn_run", ["--epochs", "2"]),
])
def test_a_run_folder_in_use_is_refused(request, command, fixture, more):
    run = request.getfixturevalue(fixture)
    before = _snapshot(run)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = _one_line(_run(command, "--resume", run, *more))
        assert line == f"Error: {run} is in use by another nbnets process (pid {holder.pid})", line
        assert {k: v for k, v in _snapshot(run).items() if k.name != ".lock"} == \
               {k: v for k, v in before.items() if k.name != ".lock"}
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    result = _run(command, "--resume", run, *more)  # the holder has exited: its lock went with it
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- 6. Ctrl-C twice

SLOW_CHARLM = textwrap.dedent("""
    import sys, time
    from runner.charlm import train
    step = train.Trainer.train_step

    def slow(self):
        print("stepping", flush=True)
        time.sleep(1.5)  # every step takes this long: the Ctrl-Cs arrive inside one
        return step(self)

    train.Trainer.train_step = slow
    from runner.cli import main
    main(sys.argv[1:], prog_name="nbnets")
""")


def _slow_charlm(tmp_path, corpus):
    """A train-charlm subprocess whose steps take 1.5 s, once its second step has begun (the kernels are
    loaded and step 1 is checkpointed); its stdout lines so far."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_CHARLM, "train-charlm", "--corpus", str(corpus), *CHARLM_TINY,
         "--steps", "1000", "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    lines, started = [], threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if sum(x.startswith("stepping") for x in lines) >= 2:
                started.set()

    threading.Thread(target=read, daemon=True).start()
    if not started.wait(120):
        proc.kill()
        pytest.fail("train-charlm did not start: " + "".join(lines) + proc.stderr.read())
    return proc, lines


def test_a_second_ctrl_c_exits_130_saying_nothing_more_is_saved(tmp_path, corpus):
    proc, _ = _slow_charlm(tmp_path, corpus)
    try:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    err = [line for line in proc.stderr.read().splitlines() if line.strip()]
    assert code == 130, err
    assert "Aborted!" not in err and not any("Traceback" in line for line in err), err
    assert len(err) == 1 and "nothing more is saved" in err[0], err
    (run,) = (tmp_path / "out" / "train-charlm").iterdir()
    json.loads((run / "config.json").read_text())
    _, meta = checkpoint.load(run / "checkpoint.npz")
    assert meta["step"] >= 1
    assert not list(run.glob(".*.tmp")) and not (run / ".lock").exists()


def test_a_resume_of_a_run_in_progress_is_refused(tmp_path, corpus):
    proc, _ = _slow_charlm(tmp_path, corpus)
    try:
        (run,) = (tmp_path / "out" / "train-charlm").iterdir()
        config = (run / "config.json").read_bytes()
        line = _one_line(_run("train-charlm", "--resume", run, "--steps", "3"))
        assert line == f"Error: {run} is in use by another nbnets process (pid {proc.pid})", line
        assert (run / "config.json").read_bytes() == config
    finally:
        proc.kill()
        proc.wait(timeout=30)


# --------------------------------------------------------------------------- 7, 8. files that are not checkpoints

def test_a_file_that_is_not_an_npz_archive_is_called_that(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("a shopping list\n")
    noise = tmp_path / "checkpoint.npz"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    kept = {notes: notes.read_bytes(), noise: noise.read_bytes()}
    results = [
        _run("train-cnn", "--data", notes, "--out", tmp_path / "out", "--quiet"),
        _run("export-json", noise),
        _run("sample", noise),
    ]
    for result in results:
        line = _one_line(result)
        assert line.endswith("not an .npz archive"), line
        assert "pickle" not in line
    assert not (tmp_path / "out").exists()
    assert {p: p.read_bytes() for p in kept} == kept
    with pytest.raises(checkpoint.CheckpointError, match=r"checkpoint\.npz is not a numbanets checkpoint: "
                                                         r"not an \.npz archive$"):
        checkpoint.load(noise)


def test_sample_names_the_path_it_was_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("small.txt").write_text("abc\n")
    line = _one_line(_run("sample", "small.txt"))
    assert line == "Error: small.txt is not a numbanets checkpoint: not an .npz archive", line
    assert Path("small.txt").read_text() == "abc\n"
    with pytest.raises(checkpoint.CheckpointError, match=r"^notes is not a numbanets checkpoint: "
                                                         r"neither notes nor notes\.npz exists$"):
        checkpoint.load("notes")


# --------------------------------------------------------------------------- 9. finite floats

@pytest.mark.parametrize("args, option", [
    (["train-charlm", "--lr", "inf"], "--lr"),
    (["train-charlm", "--lr", "nan"], "--lr"),
    (["train-charlm", "--forget-bias", "inf"], "--forget-bias"),
    (["train-charlm", "--epochs", "inf"], "--epochs"),
    (["train-charlm", "--max-time", "inf"], "--max-time"),
    (["train-charlm", "--temperature", "nan"], "--temperature"),
    (["train-cnn", "--lr", "inf"], "--lr"),
    (["train-cnn", "--weight-decay", "inf"], "--weight-decay"),
    (["train-cnn", "--momentum", "nan"], "--momentum"),
    (["grad-decay", "--scale", "inf"], "--scale"),
    (["grad-decay", "--h0", "-inf"], "--h0"),
    (["memory", "--lr", "inf"], "--lr"),
    (["memory", "--solved", "nan"], "--solved"),
    (["sample", "run", "--temperature", "inf"], "--temperature"),
    (["bench", "--max-seconds", "inf"], "--max-seconds"),
])
def test_inf_and_nan_are_not_finite(tmp_path, args, option):
    line = _one_line(_run(*args, "--out", tmp_path / "out") if args[0] not in ("sample", "bench")
                     else _run(*args))
    assert f"'{option}'" in line and "must be a finite number" in line, line
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- 16. the user's umask

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_files_are_created_with_the_users_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        result = _run("grad-decay", "--hidden", "3", "--steps", "2", "--cells", "rnn-tanh", "--no-plot",
                      "--out", tmp_path / "out")
        npz = checkpoint.save(tmp_path / "ckpt.npz", {"w": np.zeros(3)}, {"kind": "test"})
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "out" / "grad-decay").iterdir()
    files = [run / "config.json", run / "grad_decay.csv", run / "summary.csv", npz, npz.with_suffix(".json")]
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(mode) for p in files}


# --------------------------------------------------------------------------- 17. deprecation warnings

def test_a_usage_error_raises_no_deprecation_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        line = _one_line(_run("grad-decay", "--steps", "0"))
    assert line.startswith("Error: Invalid value for '--steps'"), line


def test_pytest_fails_on_deprecation_warnings_of_the_project_only(tmp_path):
    (tmp_path / "test_planted.py").write_text(textwrap.dedent("""
        import warnings

        def test_runner():
            warnings.warn_explicit("old", DeprecationWarning, "runner/x.py", 1, module="runner.common.x")

        def test_numbanets():
            warnings.warn_explicit("old", DeprecationWarning, "numbanets/x.py", 1, module="numbanets.x")

        def test_third_party():
            warnings.warn_explicit("old", DeprecationWarning, "click/x.py", 1, module="click.x")
    """))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
                           str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "2 failed, 1 passed" in done.stdout, done.stdout[-3000:]
    assert "FAILED test_planted.py::test_runner" in done.stdout
    assert "FAILED test_planted.py::test_numbanets" in done.stdout
