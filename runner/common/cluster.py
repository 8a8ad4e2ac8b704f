"""Dask distributed for the commands that run many runs (nbnets sweep, nbnets memory): the cluster.

Where the runs go:

- no --scheduler: a `distributed.LocalCluster` on 127.0.0.1 of `workers` worker
  processes (each under a nanny that restarts it if it dies), each running one
  task at a time with `threads` kernel threads: NUMBA_NUM_THREADS and the BLAS
  variables are set before the worker processes are spawned (a spawned worker
  imports numba before a nanny's ordinary `env` applies; see BLAS_VARIABLES and
  POOL_VARIABLE for how), and the function a task runs sets numba's
  and the BLAS's counts again around its run (runner.common.threads.Threads)
  and fixes glibc's allocator (runner.common.allocator), so workers x threads
  never exceeds the cores. The scheduler runs in this process with
  `distributed.scheduler.allowed-failures` = --retries: a task whose worker
  dies is given to another worker that many times, then fails (KilledWorker).
  The workers' statistical profiler is off: sampling the running task's stack
  every 10 ms under the GIL made each small train-charlm run about 15 % slower
  (BENCHMARKS.md); the dashboard's other pages still work.
- --scheduler ADDRESS: a running cluster (`dask scheduler` + `dask worker`,
  dask-jobqueue, dask-kubernetes, ...) and whatever workers it has; its own
  allowed-failures applies there.

A command submits one task per run (`client.submit`) and handles the results
as they come (`distributed.as_completed`); runner.common.progress.RunsBar
shows how far it is.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass



# The BLAS's thread counts, set before a local worker is spawned (Dask's pre-spawn-environ, which the
# nanny also writes into this process and writes again at every restart; harmless here: this process has
# loaded its BLAS already).
BLAS_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# numba's pool size, set in this process only while the workers are spawned, then put back: numba re-reads
# its environment when it compiles, and NUMBA_NUM_THREADS changed under a running pool is an error
# ("Cannot set NUMBA_NUM_THREADS to a different value once the threads have been launched"). A worker
# that its nanny restarts later gets numba's default pool; Threads still limits what a run uses.
POOL_VARIABLE = "NUMBA_NUM_THREADS"


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
                 **{name: str(threads) for name in BLAS_VARIABLES}}
    pool = os.environ.get(POOL_VARIABLE)
    os.environ[POOL_VARIABLE] = str(threads)
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": where.retries,
                              "distributed.nanny.pre-spawn-environ": spawn_env,
                              "distributed.worker.profile.enabled": False}), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="(?s).*already have a cluster running")  # 8787 taken
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=":8787", silence_logs=logging.ERROR)
    finally:
        if pool is None:
            os.environ.pop(POOL_VARIABLE, None)
        else:
            os.environ[POOL_VARIABLE] = pool
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
