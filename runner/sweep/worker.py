"""nbnets sweep, on a worker: one run of a command, in this process, sent back as its files.

A Dask worker calls `execute(task)`. The run goes through the same function as
the command alone (runner.cnn.train.train, runner.charlm.train.train,
runner.graddecay.command.run) into a temporary folder of the worker, with the
kernels' threads (numba, BLAS) set to the task's count for its length and
glibc malloc's thresholds fixed as `nbnets bench` fixes them (Dask's workers
start with MALLOC_TRIM_THRESHOLD_=65536, which makes a small train-charlm run
1.5x slower); the numba kernels stay compiled in the worker between runs. What comes back is an Outcome:
every file of the run folder as bytes (the client writes them; no shared file
system), what the command printed, the wall time and the worker's address.

Checkpoints: train-cnn and train-charlm call `on_checkpoint` after each
checkpoint; the run folder is then zipped and stored on the scheduler under the
task's `checkpoint_key` (Client.set_metadata), at most once every
`checkpoint_every` seconds (the first checkpoint always). If the worker dies, Dask gives
the task to another worker, which finds that zip and resumes the run from it
(`--resume`) instead of starting again. A sweep continued with --resume sends a
partial run folder in `start_from` the same way.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import time
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from runner.charlm import train as charlm_train
from runner.cnn import train as cnn_train
from runner.common.allocator import fix_allocator
from runner.common.runs import read_json
from runner.common.threads import Threads
from runner.graddecay import command as graddecay_command
from runner.graddecay import options as graddecay_options

OUTPUT_FILE = "output.txt"  # what the command printed; the one file a run alone does not write


def _train_cnn(params, given, resume, echo, on_checkpoint):
    return cnn_train.train(params, given=given, resume=resume, echo=echo, on_checkpoint=on_checkpoint).run_dir


def _train_charlm(params, given, resume, echo, on_checkpoint):
    return charlm_train.train(params, given=given, resume=resume, echo=echo, on_checkpoint=on_checkpoint).run_dir


def _grad_decay(params, given, resume, echo, on_checkpoint):
    return graddecay_command.run(graddecay_options.from_params(params), echo=echo)


# command -> (runs it in process and returns its run folder, whether it checkpoints (can resume))
EXPERIMENTS = {
    "train-charlm": (_train_charlm, True),
    "train-cnn": (_train_cnn, True),
    "grad-decay": (_grad_decay, False),
}
POSITION = {"train-cnn": "epoch", "train-charlm": "step"}  # where a checkpoint is, in its meta


@dataclass
class Task:
    experiment: str
    name: str
    params: dict
    given: frozenset
    threads: int | dict | None               # numba and BLAS threads of the run, or host -> threads
                                             # (None, or a host not listed: the worker's cores / its task slots)
    inputs: dict = field(default_factory=dict)   # file path as given -> bytes (--corpus, --data, --init-from)
    start_from: bytes | None = None          # a zipped partial run folder to resume (sweep --resume)
    checkpoint_key: list | None = None       # scheduler metadata key of the run's last checkpoint
    checkpoint_every: float = 0.0            # seconds between checkpoints sent to the scheduler (0: each one)


@dataclass
class Outcome:
    name: str
    status: str                  # "done" or "failed"
    error: str = ""              # one line, when failed
    files: dict = field(default_factory=dict)    # path in the run folder -> bytes
    wall_s: float = 0.0
    worker: str = ""
    resumed_at: int | None = None


def zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # .npz and .png are compressed already
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def unzip_folder(data: bytes, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(folder)


def read_files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def _place_inputs(params: dict, inputs: dict) -> dict:
    """The task's input files written where every run of this machine finds them: the temporary
    folder, under their content's hash (so a resumed run sees the same path as its first attempt)."""
    params = dict(params)
    for name, value in params.items():
        if isinstance(value, str) and value in inputs:
            data = inputs[value]
            home = Path(tempfile.gettempdir()) / "nbnets-sweep-inputs" / hashlib.sha256(data).hexdigest()[:16]
            path = home / Path(value).name
            if not path.is_file():
                home.mkdir(parents=True, exist_ok=True)
                partial = home / f".{path.name}.{time.time_ns()}"
                partial.write_bytes(data)
                partial.replace(path)
            params[name] = str(path)
    return params


def _dask(threads):
    """(this worker's client, its address, the run's threads), or (None, "", threads) outside a Dask worker."""
    try:
        from distributed import get_client, get_worker  # distributed is loaded in any worker already

        worker = get_worker()
    except (ImportError, ValueError):
        return None, "", threads if isinstance(threads, int) else None
    if isinstance(threads, int):
        return get_client(), worker.address, threads
    own = max(1, (os.cpu_count() or 1) // max(1, int(worker.state.nthreads)))
    return get_client(), worker.address, (threads or {}).get(worker.ip, own)


def _resume_point(folder: Path, experiment: str) -> int | None:
    meta = folder / "checkpoint.json"
    if not meta.is_file():
        return None
    return int(read_json(meta).get(POSITION[experiment], 0))


def execute(task: Task) -> Outcome:
    """Run one task to its end. Every error of the run is caught and returned as a failed Outcome
    (its traceback in output.txt); only the worker's death stops this function."""
    started = time.perf_counter()
    fix_allocator()  # Dask starts workers with a 64 KiB trim threshold: every step would page-fault afresh
    runner, checkpoints = EXPERIMENTS[task.experiment]
    client, address, threads = _dask(task.threads)
    lines: list[str] = []
    scratch = Path(tempfile.mkdtemp(prefix=f"nbnets-sweep-{task.name[:40]}-"))
    outcome = Outcome(task.name, "failed", worker=address)
    try:
        params = _place_inputs(task.params, task.inputs)
        params.update(out=str(scratch / "out"))
        if "quiet" in params:
            params["quiet"] = True
        if "threads" in params:
            params["threads"] = threads
        saved = task.start_from
        if saved is None and checkpoints and client is not None and task.checkpoint_key:
            saved = client.get_metadata(task.checkpoint_key, None)  # a previous attempt's last checkpoint
        resume = None
        if saved and checkpoints:
            resume = scratch / "resume" / task.experiment / task.name
            unzip_folder(saved, resume)
            outcome.resumed_at = _resume_point(resume, task.experiment)
            lines.append(f"[sweep] resuming {task.name} from its checkpoint at "
                         f"{POSITION[task.experiment]} {outcome.resumed_at}")

        last_sent = -float("inf")

        def on_checkpoint(run_dir):
            nonlocal last_sent
            if client is not None and task.checkpoint_key and time.monotonic() - last_sent >= task.checkpoint_every:
                client.set_metadata(task.checkpoint_key, zip_folder(Path(run_dir)))
                last_sent = time.monotonic()

        with Threads(threads, clamp=True):
            run_dir = runner(params, set(task.given), str(resume) if resume else None, lines.append, on_checkpoint)
        outcome.files = read_files(Path(run_dir))
        outcome.status = "done"
        if client is not None and task.checkpoint_key and checkpoints:
            client.set_metadata(task.checkpoint_key, None)  # finished: the scheduler forgets the checkpoint
    except Exception as exc:  # noqa: BLE001 - any failure of one run is that run's result, not the sweep's
        outcome.error = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, (ValueError, TypeError, OSError)):
            outcome.error = f"{type(exc).__name__}: {outcome.error}"
        lines.append(traceback.format_exc())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    outcome.files[OUTPUT_FILE] = ("\n".join(lines) + "\n").encode("utf-8")
    outcome.wall_s = time.perf_counter() - started
    return outcome
