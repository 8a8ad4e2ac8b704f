"""nbnets sweep on real Dask: a LocalCluster of worker processes, a scheduler and workers started as
separate processes on 127.0.0.1, a worker killed with SIGKILL mid-run, Ctrl-C and --resume, bad input.

"Equal to the command alone" means: the same tables, row for row, from `nbnets COMMAND` run in its own
process with one kernel thread (what each worker of these sweeps runs with), timing columns aside.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from runner.cli import main
from runner.common.lists import parse_seeds

ONE_THREAD = {name: "1" for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                     "OPENBLAS_NUM_THREADS")}
TIMING = {"images_per_s", "chars_per_s", "elapsed_s"}
TINY_CNN = ["--set", "arch=conv4x3x3:p=same-relu-pool2-fc10", "--set", "plot=false"]
TINY_DECAY = ["--set", "steps=5", "--set", "hidden=8", "--set", "plot=false"]


def nbnets(args, cwd, env=None, timeout=600, **kwargs):
    return subprocess.run(["nbnets", *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def sweep_dir(cwd: Path) -> Path:
    (found,) = (cwd / "results" / "sweep").iterdir()
    return found


def table(sweep: Path) -> pd.DataFrame:
    return pd.read_csv(sweep / "sweep.csv")


def alone(command: str, args: list[str], cwd: Path) -> Path:
    """The run folder of `nbnets COMMAND ARGS` in its own process, one kernel thread."""
    out = cwd / "alone" / f"{len(list((cwd / 'alone').glob('*'))) if (cwd / 'alone').exists() else 0}"
    done = nbnets([command, *args, "--out", str(out)], cwd, env=ONE_THREAD)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = (out / command).iterdir()
    return run


def assert_same_tables(run: Path, reference: Path, names: list[str]):
    for name in names:
        got, want = pd.read_csv(run / name), pd.read_csv(reference / name)
        keep = [c for c in want.columns if c not in TIMING]
        assert list(got.columns) == list(want.columns), name
        pd.testing.assert_frame_equal(got[keep], want[keep], check_exact=True, obj=f"{run.name}/{name}")


def assert_same_checkpoint(run: Path, reference: Path):
    with np.load(run / "checkpoint.npz") as got, np.load(reference / "checkpoint.npz") as want:
        assert sorted(got.files) == sorted(want.files)
        for key in (k for k in want.files if k != "__numbanets_meta__"):  # the meta holds the elapsed time
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


# --------------------------------------------------------------------------- a local cluster

@pytest.mark.slow
def test_local_cluster_grid_equals_the_runs_alone(tmp_path):
    done = nbnets(["sweep", "grad-decay", "--grid", "cells=rnn-tanh,lstm", "--grid", "scale=0.5,2",
                   "--workers", "2", *TINY_DECAY], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "local cluster of 2 workers x 1 thread" in done.stdout
    sweep = sweep_dir(tmp_path)
    rows = table(sweep)
    assert list(rows.columns[:6]) == ["run", "cells", "scale", "seed", "status", "resumed_at"]
    assert rows[["cells", "scale"]].values.tolist() == [["rnn-tanh", 0.5], ["rnn-tanh", 2], ["lstm", 0.5], ["lstm", 2]]
    assert (rows["status"] == "done").all() and (rows["seed"] == 0).all()
    assert rows["worker"].str.startswith("tcp://127.0.0.1:").all() and rows["worker"].nunique() == 2
    assert {"decay_factor", "effective_rate", "lambda1"} <= set(rows.columns)
    for row in rows.itertuples():
        run = sweep / "runs" / row.run
        reference = alone("grad-decay", ["--cells", row.cells, "--scale", str(row.scale), "--steps", "5",
                                         "--hidden", "8", "--no-plot"], tmp_path)
        assert_same_tables(run, reference, ["grad_decay.csv", "summary.csv"])
        summary = pd.read_csv(run / "summary.csv")
        assert row.decay_factor == pytest.approx(summary["decay_factor"].iloc[0], rel=1e-8)
    settings = json.loads((sweep / "sweep.json").read_text())
    assert settings["grid"] == {"cells": ["rnn-tanh", "lstm"], "scale": ["0.5", "2"]}
    assert settings["where"]["cluster"] == "local" and settings["status"] == "finished"
    assert {"dask", "distributed", "numbanets"} <= set(settings["versions"])

    done = nbnets(["sweep", "train-cnn", "--grid", "lr=1e-3,4e-3", "--set", "epochs=1", "--set", "batch-size=64",
                   *TINY_CNN, "--workers", "2", "--out", "cnn"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    (sweep,) = (tmp_path / "cnn" / "sweep").iterdir()
    rows = table(sweep)
    assert rows["lr"].tolist() == [1e-3, 4e-3] and (rows["status"] == "done").all()
    for row in rows.itertuples():
        reference = alone("train-cnn", ["--lr", str(row.lr), "--epochs", "1", "--batch-size", "64", "--arch",
                                        "conv4x3x3:p=same-relu-pool2-fc10", "--no-plot", "--quiet"], tmp_path)
        run = sweep / "runs" / row.run
        assert_same_tables(run, reference, ["metrics.csv", "confusion.csv"])
        assert_same_checkpoint(run, reference)
        assert row.final_test_acc == pd.read_csv(reference / "metrics.csv")["test_acc"].iloc[-1]


# --------------------------------------------------------------------------- an existing cluster

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """`dask scheduler` and `dask worker --nworkers 2` as separate processes on 127.0.0.1; yields the address."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    procs = [subprocess.Popen(["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT)]
    from distributed import Client

    client = Client(address, timeout="30s")
    procs.append(subprocess.Popen(["dask", "worker", address, "--nworkers", "2", "--nthreads", "1",
                                   "--no-dashboard", "--local-directory", str(tmp_path / "dask-workers")],
                                  stdout=open(logs / "workers.log", "w"), stderr=subprocess.STDOUT))
    client.wait_for_workers(2, timeout=60)
    try:
        yield address, client
    finally:
        client.close()
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.slow
def test_a_sweep_on_a_started_scheduler(tmp_path, cluster):
    address, _ = cluster
    done = nbnets(["sweep", "grad-decay", "--grid", "init=normal,orthogonal", "--seeds", "3,5",
                   "--scheduler", address, "--threads-per-worker", "1", *TINY_DECAY], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"scheduler {address} (2 workers; kernel threads per run: 1)" in done.stdout
    rows = table(sweep_dir(tmp_path))
    assert rows["seed"].tolist() == [3, 5, 3, 5] and (rows["status"] == "done").all()
    run = sweep_dir(tmp_path) / "runs" / rows["run"].iloc[1]
    reference = alone("grad-decay", ["--init", "normal", "--seed", "5", "--steps", "5", "--hidden", "8",
                                     "--no-plot"], tmp_path)
    assert_same_tables(run, reference, ["grad_decay.csv", "summary.csv"])
    assert pd.read_csv(run / "summary.csv")["seed"].tolist() == [5, 5, 5, 5]


@pytest.mark.slow
def test_a_killed_worker_loses_nothing_and_the_run_resumes_from_its_checkpoint(tmp_path, cluster):
    """SIGKILL the worker process that runs a train-cnn run once it has sent back its epoch-1
    checkpoint; the nanny starts a new worker, Dask gives it the task, it resumes at epoch >= 1."""
    address, client = cluster
    args = ["--set", "epochs=5", "--set", "batch-size=8", *TINY_CNN]
    sweep = subprocess.Popen(["nbnets", "sweep", "train-cnn", "--grid", "lr=1e-3,2e-3", "--scheduler", address,
                              "--threads-per-worker", "1", "--checkpoint-every", "0", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        killed = None
        while killed is None and time.monotonic() < deadline and sweep.poll() is None:
            time.sleep(0.1)
            folders = list((tmp_path / "results" / "sweep").glob("*")) if (tmp_path / "results").exists() else []
            if not folders:
                continue
            name = "000-lr1e-3-seed0"
            saved = client.get_metadata(["nbnets-sweep", folders[0].name, name], None)
            if not saved or _epoch(saved) < 1:
                continue
            holders = [w for w, keys in client.processing().items() if any(name in str(k) for k in keys)]
            if holders:
                pid = client.run(os.getpid, workers=holders)[holders[0]]
                os.kill(pid, signal.SIGKILL)
                killed = (holders[0], _epoch(saved))
        output, _ = sweep.communicate(timeout=300)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert killed is not None, "the run finished before its worker could be killed:\n" + output
    assert sweep.returncode == 0, output
    folder = sweep_dir(tmp_path)
    rows = table(folder).set_index("run")
    assert (rows["status"] == "done").all()
    assert rows.loc["000-lr1e-3-seed0", "resumed_at"] >= killed[1]
    assert rows.loc["000-lr1e-3-seed0", "worker"] != killed[0]
    assert "resuming 000-lr1e-3-seed0" in (folder / "runs" / "000-lr1e-3-seed0" / "output.txt").read_text()
    reference = alone("train-cnn", ["--lr", "1e-3", "--epochs", "5", "--batch-size", "8", "--arch",
                                    "conv4x3x3:p=same-relu-pool2-fc10", "--no-plot", "--quiet"], tmp_path)
    run = folder / "runs" / "000-lr1e-3-seed0"
    assert_same_tables(run, reference, ["metrics.csv", "confusion.csv"])
    assert_same_checkpoint(run, reference)


def _epoch(saved: bytes) -> int:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(saved)) as archive:
        return json.loads(archive.read("checkpoint.json"))["epoch"]


# --------------------------------------------------------------------------- faults and bad input

@pytest.mark.slow
def test_a_failing_point_is_recorded_and_the_others_finish(tmp_path):
    done = nbnets(["sweep", "train-cnn", "--grid", "arch=conv2x3x3-fc10,conv2x3x3-bogus", "--set", "epochs=0",
                   "--set", "plot=false", "--workers", "1"], tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "bogus" in done.stdout and "Traceback" not in done.stdout + done.stderr
    folder = sweep_dir(tmp_path)
    rows = table(folder)
    assert rows["status"].tolist() == ["done", "failed"]
    failures = pd.read_csv(folder / "failures.csv")
    assert failures["run"].tolist() == [rows["run"].iloc[1]] and "bad --arch token 'bogus'" in failures["error"][0]
    assert (folder / "runs" / rows["run"].iloc[0] / "metrics.csv").is_file()


@pytest.mark.slow
def test_ctrl_c_keeps_finished_runs_and_resume_runs_the_rest(tmp_path):
    args = ["--grid", "lr=1e-3,2e-3,3e-3,4e-3", "--set", "epochs=3", "--set", "batch-size=8", *TINY_CNN]
    sweep = subprocess.Popen(["nbnets", "sweep", "train-cnn", *args, "--workers", "2", "--checkpoint-every", "0"],
                             cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    csv = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and sweep.poll() is None:
        time.sleep(0.1)
        found = list((tmp_path / "results" / "sweep").glob("*/sweep.csv")) if (tmp_path / "results").exists() else []
        if found and len(pd.read_csv(found[0])) >= 1:
            csv = found[0]
            break
    assert csv is not None, "no run finished"
    sweep.send_signal(signal.SIGINT)
    started = time.monotonic()
    output, _ = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, output
    assert time.monotonic() - started < 60
    folder = csv.parent
    assert f"nbnets sweep --resume {folder.relative_to(tmp_path)}" in output
    first = table(folder)
    assert 1 <= len(first) < 4 and (first["status"] == "done").all()
    kept = {name: (folder / "runs" / name / "metrics.csv").stat().st_mtime_ns for name in first["run"]}

    done = nbnets(["sweep", "--resume", str(folder), "--workers", "2"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{4 - len(first)} still to run" in done.stdout
    rows = table(folder)
    assert len(rows) == 4 and (rows["status"] == "done").all()
    assert rows["lr"].tolist() == [1e-3, 2e-3, 3e-3, 4e-3]
    assert {n: (folder / "runs" / n / "metrics.csv").stat().st_mtime_ns for n in first["run"]} == kept
    last = rows.iloc[-1]
    reference = alone("train-cnn", ["--lr", "4e-3", "--epochs", "3", "--batch-size", "8", "--arch",
                                    "conv4x3x3:p=same-relu-pool2-fc10", "--no-plot", "--quiet"], tmp_path)
    assert_same_tables(folder / "runs" / last["run"], reference, ["metrics.csv", "confusion.csv"])


def _invoke(args, cwd):
    return CliRunner().invoke(main, ["sweep", *args, "--out", str(cwd / "results")])


@pytest.mark.parametrize("args, words", [
    (["grad-decay", "--grid", "hiden=8,16"], ["--grid hiden", "no option 'hiden'", "did you mean hidden?"]),
    (["train-cnn", "--grid", "lr=1e-3,abc"], ["--grid lr=abc", "not a valid float"]),
    (["train-cnn", "--set", "optimizer=adamw"], ["--set optimizer=adamw", "'adam'", "'sgd'"]),
    (["train-cnn", "--set", "epochs=-1"], ["--set epochs=-1", "x>=0"]),
    (["train-cnn", "--set", "out=elsewhere"], ["--out cannot be set in a sweep"]),
    (["train-charlm", "--grid", "threads=1,2"], ["--threads cannot be set", "--threads-per-worker"]),
    (["train-cnn", "--grid", "device=cpu,cuda"], ["same kind of device"]),
    (["train-cnn", "--grid", "seed=1,2"], ["--seeds"]),
    (["train-cnn", "--seeds", "3-1"], ["--seeds 3-1"]),
    (["shapes"], ["runs train-charlm, train-cnn, grad-decay"]),
    ([], ["give the COMMAND"]),
    (["train-charlm", "--set", "corpus=no-such-file.txt"], ["no-such-file.txt", "No such file"]),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, words):
    result = _invoke(args, tmp_path)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("Error: ")
    for word in words:
        assert word in result.output
    assert not (tmp_path / "results").exists()


def test_an_unreachable_scheduler_is_one_line_within_the_timeout(tmp_path):
    port = _free_port()
    started = time.monotonic()
    result = _invoke(["grad-decay", "--scheduler", f"tcp://127.0.0.1:{port}", "--connect-timeout", "2"], tmp_path)
    assert time.monotonic() - started < 15
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert f"--scheduler tcp://127.0.0.1:{port}: cannot reach it within 2 s" in result.output
    assert not (tmp_path / "results").exists()


def test_seeds_grammar():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,3,7") == [0, 3, 7]
    assert parse_seeds("0-2,9") == [0, 1, 2, 9]
    for bad in ("", "a", "3-1", "1,1", "-2"):
        with pytest.raises(ValueError):
            parse_seeds(bad)
