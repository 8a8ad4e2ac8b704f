"""nbnets sweep, the client's side of Dask distributed: the cluster, the submissions, the results as they come.

Where the runs go:

- no --scheduler: a `distributed.LocalCluster` on 127.0.0.1 of `workers` worker
  processes (each under a nanny that restarts it if it dies), each running one
  task at a time with `threads` kernel threads: NUMBA_NUM_THREADS and the BLAS
  variables are set before each worker process is spawned (Dask's
  `distributed.nanny.pre-spawn-environ`: a spawned worker imports numba before
  a nanny's ordinary `env` applies), and runner.sweep.worker sets numba's and
  the BLAS's counts again around every run, so workers x threads never exceeds
  the cores. The scheduler runs in this process with
  `distributed.scheduler.allowed-failures` = --retries: a task whose worker
  dies is given to another worker that many times, then fails (KilledWorker).
  The workers' statistical profiler is off: sampling the running task's stack
  every 10 ms under the GIL made each small train-charlm run about 15 % slower
  (BENCHMARKS.md); the dashboard's other pages still work.
- --scheduler ADDRESS: a running cluster (`dask scheduler` + `dask worker`,
  dask-jobqueue, dask-kubernetes, ...) and whatever workers it has; its own
  allowed-failures applies there.

Each run is one task, keyed `nbnets-sweep-<sweep id>-<run>`; its result (every
file of the run folder) is written by the client as soon as it arrives.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from concurrent.futures import CancelledError
from dataclasses import dataclass

from runner.sweep.worker import Outcome, execute


# set in a local worker's environment before it starts, so numba's pool and the BLAS's are that size from
# their first import (a numba pool larger than the threads a run uses keeps idle threads that compete with
# the other workers' runs)
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class Where:
    scheduler: str | None
    workers: int | None
    threads: int | None          # per worker (local: 1 when not given)
    connect_timeout: float
    retries: int
    checkpoint_every: float = 30.0   # seconds between a run's checkpoints sent to the scheduler


def start(where: Where) -> tuple[object, object, dict]:
    """(client, the local cluster or None, facts for sweep.json); ValueError when the scheduler is unreachable."""
    import dask
    from distributed import Client, LocalCluster

    if where.scheduler:
        try:
            client = Client(where.scheduler, timeout=f"{where.connect_timeout}s")
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"--scheduler {where.scheduler}: cannot reach it within {where.connect_timeout:g} s "
                             f"({' '.join(str(exc).split())[:160]})") from None
        workers = client.scheduler_info().get("workers", {})
        facts = {"scheduler": where.scheduler, "cluster": "existing", "workers": len(workers),
                 "threads_per_worker": sorted({w.get("nthreads") for w in workers.values()}),
                 "run_threads": where.threads or threads_by_host(client, workers)}
        return client, None, facts
    threads = where.threads or 1
    workers = where.workers or max(1, (os.cpu_count() or 1) // threads)
    spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ"),
                 **{name: str(threads) for name in THREAD_VARIABLES}}
    with dask.config.set({"distributed.scheduler.allowed-failures": where.retries,
                          "distributed.nanny.pre-spawn-environ": spawn_env,
                          "distributed.worker.profile.enabled": False}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="(?s).*already have a cluster running")  # port 8787 taken: another
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=":8787", silence_logs=logging.ERROR)
    client = Client(cluster)
    facts = {"scheduler": cluster.scheduler_address, "cluster": "local", "workers": workers,
             "threads_per_worker": threads, "run_threads": threads, "retries": where.retries}
    return client, cluster, facts


def threads_by_host(client, workers: dict) -> dict:
    """host -> kernel threads per run, so that the runs of all the workers on one machine fill its cores
    and no more: the host's cores // the Dask threads (task slots) of all its workers. Workers that join
    later on other hosts use their own cores // their threads (runner.sweep.worker)."""
    cores = client.run(os.cpu_count) if workers else {}
    slots, host_cores = {}, {}
    for address, info in workers.items():
        host = info.get("host") or address.rsplit(":", 1)[0].split("://")[-1]
        slots[host] = slots.get(host, 0) + int(info.get("nthreads") or 1)
        host_cores[host] = int(cores.get(address) or 1)
    return {host: max(1, host_cores[host] // slots[host]) for host in slots}


def dashboard(client) -> str:
    try:
        return client.dashboard_link or ""
    except Exception:  # noqa: BLE001 - no dashboard (bokeh missing) is not an error
        return ""


class RunsBar:
    """runs  5/8 done, 1 failed [###############.........]  0:42 elapsed, ~0:25 left (stderr, terminals only)."""

    def __init__(self, total: int, already: int, enabled: bool, stream=None, width: int = 24):
        self.total, self.already, self.width = total, already, width
        self.stream = stream or sys.stderr
        self.enabled = enabled and getattr(self.stream, "isatty", lambda: False)()
        self.started = time.perf_counter()
        self.done = self.failed = 0

    def update(self, done: int, failed: int) -> None:
        self.done, self.failed = done, failed
        if self.enabled:
            self.stream.write("\r" + self.line() + "\x1b[K")
            self.stream.flush()

    def line(self) -> str:
        finished = self.done + self.failed
        frac = finished / max(1, self.total)
        filled = int(round(frac * self.width))
        elapsed = time.perf_counter() - self.started
        new = finished - self.already
        left = f", ~{_clock(elapsed / new * (self.total - finished))} left" if new > 0 and finished < self.total else ""
        return (f"runs {finished:>{len(str(self.total))}}/{self.total} done, {self.failed} failed "
                f"[{'#' * filled}{'.' * (self.width - filled)}] {_clock(elapsed)} elapsed{left}")

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def run_all(client, tasks, on_outcome, retries: int) -> bool:
    """Submit every task, call `on_outcome(task, outcome)` as each finishes (in completion order);
    return True when Ctrl-C stopped it (the unfinished tasks are cancelled, their last checkpoints
    handed to `on_outcome` as outcomes of status "partial" with the zip in files["checkpoint.zip"])."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    futures = {client.submit(execute, task, key=f"nbnets-sweep-{task.checkpoint_key[1]}-{task.name}",
                             pure=False): task for task in tasks}
    pending = set(futures)
    try:
        for future in as_completed(futures):
            task = futures[future]
            pending.discard(future)
            try:
                outcome = future.result()
            except CancelledError:
                continue
            except KilledWorker:
                outcome = Outcome(task.name, "failed", error=f"its worker died {retries + 1} times "
                                                             "(killed, or out of memory)")
            except Exception as exc:  # noqa: BLE001 - a task that could not run (e.g. unpicklable) fails alone
                outcome = Outcome(task.name, "failed", error=f"{type(exc).__name__}: {' '.join(str(exc).split())}")
            future.release()
            on_outcome(task, outcome)
    except KeyboardInterrupt:
        client.cancel(list(pending), force=True)
        for future in pending:
            task = futures[future]
            saved = client.get_metadata(task.checkpoint_key, None) if task.checkpoint_key else None
            if saved:
                on_outcome(task, Outcome(task.name, "partial", files={"checkpoint.zip": saved}))
        return True
    return False
