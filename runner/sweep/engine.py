"""nbnets sweep, the results as they come: submit every run, write each as it finishes, Ctrl-C.

Each run is one task, keyed `nbnets-sweep-<sweep id>-<run>`, on the cluster
that runner.common.cluster started or reached; its result (every file of the
run folder) is handed to the caller as soon as it arrives.
"""

from __future__ import annotations

from concurrent.futures import CancelledError

from runner.sweep.worker import Outcome, execute


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
