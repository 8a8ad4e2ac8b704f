"""nbnets memory, where the runs go: one at a time in this process, or side by side on Dask distributed.

`Runs(where)` is used for the whole command: `map(specs)` returns every run's
(rows, summary) in the order of `specs`, whatever order they finish in. With
`--workers 1` (or no Dask installed) the runs go one after another in this
process; otherwise to the cluster runner.common.cluster starts or reaches, the
cluster `nbnets sweep` uses, started once and kept for every round of a
--search. Each run is the same function either way (`run_one`): the kernels'
threads set to the run's count, glibc's allocator fixed, then
runner.memory.train.fit.
"""

from __future__ import annotations

from runner.common import cluster
from runner.common.allocator import fix_allocator
from runner.common.progress import RunsBar
from runner.common.threads import Threads
from runner.memory.train import RunSpec, fit


def run_one(spec: RunSpec, threads: int | None) -> tuple[list[dict], dict]:
    """One run, as a worker (or this process) runs it."""
    fix_allocator()
    with Threads(threads, clamp=True):
        return fit(spec)


def _dask_installed() -> bool:
    try:
        import distributed  # noqa: F401 - only whether it imports
    except ImportError:
        return False
    return True


class Runs:
    def __init__(self, where: cluster.Where, quiet: bool = False, echo=print):
        self.where, self.quiet, self.echo = where, quiet, echo
        self.local_only = (where.scheduler is None and where.workers == 1) or not _dask_installed()
        self.client = self.local = None
        self.facts = {"cluster": "none: one run at a time in this process", "run_threads": where.threads or 1}
        self.threads = where.threads or 1
        self.rounds = 0

    def _connect(self):
        if self.client is None:
            self.client, self.local, self.facts = cluster.start(self.where)
            self.threads = self.facts["run_threads"]
            link = cluster.dashboard(self.client)
            self.facts["dashboard"] = link
            where = (f"local cluster of {self.facts['workers']} workers x {self.facts['threads_per_worker']} thread"
                     if self.local is not None else f"scheduler {self.facts['scheduler']}")
            self.echo(f"dask    {where}" + (f", dashboard {link}" if link else ""))

    def map(self, specs: list[RunSpec], label: str = "runs") -> list[tuple[list[dict], dict]]:
        bar = RunsBar(len(specs), 0, enabled=not self.quiet)
        results: list = [None] * len(specs)
        try:
            if self.local_only:
                for i, spec in enumerate(specs):
                    results[i] = run_one(spec, self.threads)
                    bar.update(i + 1, 0)
                return results
            self._connect()
            self.rounds += 1
            from distributed import as_completed  # installed: checked in __init__

            futures = {self.client.submit(run_one, spec, self.threads, pure=False,
                                          key=f"nbnets-memory-{spec.cell}-{spec.distance}-{spec.seed}-"
                                              f"{id(self):x}-{self.rounds}"): i for i, spec in enumerate(specs)}
            done = 0
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                future.release()
                done += 1
                bar.update(done, 0)
            return results
        finally:
            bar.close()

    def close(self):
        if self.client is not None:
            self.client.close()
        if self.local is not None:
            self.local.close()
        self.client = self.local = None
