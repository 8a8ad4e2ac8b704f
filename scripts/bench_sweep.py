"""How much faster `nbnets sweep` runs N short runs than one process running them one after another.

    python scripts/bench_sweep.py                       # 8 train-charlm runs, 2 workers x 1 thread
    python scripts/bench_sweep.py --experiment train-cnn --runs 8 --workers 2 --threads-per-worker 1

Two ways to run the same N short runs (--experiment: small train-charlm runs of a
learning-rate grid, small train-cnn runs of a learning-rate grid, or grad-decay
runs of a gain grid; see RUNS), each through runner.sweep.worker.execute, the
function a worker calls:

  sequential  one after another in this process, numba and the BLAS at --sequential-threads
              (default: all cores), as a researcher's loop would run them
  sweep       a LocalCluster of --workers processes x --threads-per-worker threads, the
              runs submitted at once, every result written to a sweep folder (the
              engine and folder of `nbnets sweep`)

Both pay the kernels' loading once (numba's on-disk cache, warmed by one untimed
run first). The sequential runs are timed again with 1 thread: how much a run
itself gains from threads bounds what running runs side by side can gain. And
the same runs on --workers plain processes (concurrent.futures, no Dask) show
what running side by side costs on the machine itself. Reported: the wall time of each; the sweep's with and without
starting the cluster; the ratio sweep / sequential (target <= 0.65 on 2 cores)
and the scaling sequential / sweep; and Dask's overhead per run, measured three ways:

  slot overhead   (sweep wall without cluster start x workers - sum of the runs' own
                  times on their workers) / runs: how long a worker slot was not
                  running a run's code (scheduling, transfer, writing on the client,
                  and waiting for the last run)
  tiny-run overhead  the same on --tiny-runs grad-decay runs of about 10 ms each,
                  where the overhead dominates
  submit to written  one tiny run at a time: from submitting it to its files written
                  by the client, minus the run's own time (median of 11; target < 0.2 s)

Writes bench_sweep.csv (one row per measurement) to --out and prints it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.cli import main  # noqa: E402
from runner.common.system import versions  # noqa: E402
from runner.common import cluster  # noqa: E402
from runner.sweep import engine  # noqa: E402
from runner.sweep.folder import SweepFolder  # noqa: E402
from runner.sweep.grid import plan  # noqa: E402
from runner.sweep.worker import Task, execute  # noqa: E402

# the short runs timed, per --experiment: (fixed options, the grid key varied across the runs)
RUNS = {
    "train-charlm": (("hidden=64", "layers=1", "seq-len=32", "batch-size=16", "steps=120", "eval-every=60",
                      "sample-length=0"), "lr"),
    "train-cnn": (("arch=conv8x3x3:p=same-relu-pool2-fc10", "epochs=2", "plot=false"), "lr"),
    "grad-decay": (("steps=20", "hidden=64", "seeds=8", "plot=false"), "scale"),
}
TINY = ("steps=5", "hidden=8", "plot=false")


def tasks(experiment, fixed, values, threads, sweep_id, key=None):
    if key is not None:
        the_plan = plan(main.commands[experiment], (f"{key}={','.join(values)}",), fixed, "0")
    else:
        the_plan = plan(main.commands[experiment], (), fixed, values)
    return the_plan, [Task(experiment, r.name, r.params, r.given, threads,
                           checkpoint_key=["nbnets-sweep", sweep_id, r.name]) for r in the_plan.runs]


def sequential(todo, threads):
    started = time.perf_counter()
    outcomes = [execute(Task(**{**t.__dict__, "threads": threads, "checkpoint_key": None})) for t in todo]
    assert all(o.status == "done" for o in outcomes), [o.error for o in outcomes]
    return time.perf_counter() - started


def _run_one(task):
    return execute(task).wall_s


def plain_processes(todo, workers):
    """The same runs on `workers` plain processes (concurrent.futures, no Dask), each warmed by one run first:
    what running side by side costs on this machine without any scheduler."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    quiet = [Task(**{**t.__dict__, "checkpoint_key": None}) for t in todo]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_run_one, quiet[:workers]))   # not exactly one per process, but both load the kernels
        list(pool.map(_run_one, quiet[:workers]))
        started = time.perf_counter()
        list(pool.map(_run_one, quiet, chunksize=1))
        return time.perf_counter() - started


def swept(the_plan, todo, where, out, latency_runs=0):
    t0 = time.perf_counter()
    client, local, facts = cluster.start(where)
    t1 = time.perf_counter()
    folder = SweepFolder.create(out, list(the_plan.grid))
    order = [r.name for r in the_plan.runs]
    by_name = {r.name: r for r in the_plan.runs}
    run_seconds = []

    def on_outcome(task, outcome):
        assert outcome.status == "done", outcome.error
        run = by_name[task.name]
        folder.record(outcome, run.point, run.seed)
        folder.write_tables(order)
        run_seconds.append(outcome.wall_s)

    try:
        # one untimed run per worker: the kernels load (numba's cache) in every worker process
        warm = [client.submit(execute, Task(**{**t.__dict__, "checkpoint_key": None}), pure=False,
                              workers=[w], allow_other_workers=False)
                for t, w in zip(todo, client.scheduler_info()["workers"])]
        client.gather(warm)
        t2 = time.perf_counter()
        engine.run_all(client, todo, on_outcome, where.retries)
        t3 = time.perf_counter()
        latencies = []
        for task in todo[:latency_runs]:  # one at a time: submit -> result written, minus the run's own time
            before, count = time.perf_counter(), len(run_seconds)
            engine.run_all(client, [Task(**{**task.__dict__, "name": task.name})], on_outcome, where.retries)
            assert len(run_seconds) == count + 1
            latencies.append(time.perf_counter() - before - run_seconds[-1])
    finally:
        client.close()
        local.close()
    return {"cluster_start_s": t1 - t0, "wall_s": t3 - t2, "wall_with_start_s": (t1 - t0) + (t3 - t2),
            "sum_run_s": sum(run_seconds[:len(todo)]), "workers": facts["workers"],
            "latency_s": sorted(latencies)[len(latencies) // 2] if latencies else float("nan")}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", choices=sorted(RUNS), default="train-charlm")
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--sequential-threads", type=int, default=os.cpu_count())
    parser.add_argument("--tiny-runs", type=int, default=32)
    parser.add_argument("--out", default="results/bench-sweep")
    return parser.parse_args(argv)


def main_(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    where = cluster.Where(None, args.workers, args.threads_per_worker, 10.0, 0)
    fixed, key = RUNS[args.experiment]
    values = [f"{1e-3 * (1 + i / 4):.6g}" if key == "lr" else f"{0.5 + i / 8:.6g}" for i in range(args.runs)]
    the_plan, todo = tasks(args.experiment, fixed, values, args.threads_per_worker, "bench", key=key)

    execute(Task(**{**todo[0].__dict__, "threads": args.sequential_threads, "checkpoint_key": None}))  # warm-up
    seq = sequential(todo, args.sequential_threads)
    seq_one = sequential(todo, 1)
    sweep = swept(the_plan, todo, where, scratch)
    plain = plain_processes(todo, args.workers)
    tiny_plan, tiny = tasks("grad-decay", TINY, f"0-{args.tiny_runs - 1}", args.threads_per_worker, "tiny")
    small = swept(tiny_plan, tiny, where, scratch, latency_runs=11)

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown") if Path("/proc/cpuinfo").exists() else "unknown"
    rows = [
        {"measure": "sequential_wall_s", "value": seq, "note": f"{args.runs} {args.experiment} runs, "
                                                              f"{args.sequential_threads} threads, one process"},
        {"measure": "sequential_1_thread_wall_s", "value": seq_one, "note": "the same, 1 thread"},
        {"measure": "threads_speedup_within_a_run", "value": seq_one / seq,
         "note": f"1 thread / {args.sequential_threads} threads; the best a sweep can reach is "
                 f"sweep_over_sequential = {args.threads_per_worker} x threads_speedup / (workers x threads)"},
        {"measure": "sweep_wall_s", "value": sweep["wall_s"], "note": f"{sweep['workers']} workers x "
                                                                      f"{args.threads_per_worker} thread"},
        {"measure": "sweep_wall_with_cluster_start_s", "value": sweep["wall_with_start_s"], "note": ""},
        {"measure": "cluster_start_s", "value": sweep["cluster_start_s"], "note": "LocalCluster up, workers ready"},
        {"measure": "plain_processes_wall_s", "value": plain,
         "note": f"the same runs on {args.workers} plain processes, no Dask (concurrent.futures)"},
        {"measure": "sweep_over_sequential", "value": sweep["wall_s"] / seq, "note": "target <= 0.65"},
        {"measure": "plain_processes_over_sequential", "value": plain / seq, "note": "the same without Dask"},
        {"measure": "best_possible_sweep_over_sequential",
         "value": seq_one / seq / (sweep["workers"]), "note": "(1-thread time / workers) / sequential"},
        {"measure": "scaling", "value": seq / sweep["wall_s"], "note": "target >= 1.55"},
        {"measure": "slot_overhead_per_run_s",
         "value": (sweep["wall_s"] * sweep["workers"] - sweep["sum_run_s"]) / args.runs,
         "note": "idle worker-slot time per run, the wait for the last run included"},
        {"measure": "tiny_run_overhead_per_run_s",
         "value": (small["wall_s"] * small["workers"] - small["sum_run_s"]) / args.tiny_runs,
         "note": f"{args.tiny_runs} grad-decay runs of ~10 ms submitted at once"},
        {"measure": "submit_to_written_overhead_s", "value": small["latency_s"],
         "note": "one run at a time: submit -> files written by the client, minus the run's own time "
                 "(median of 11); target < 0.2"},
    ]
    frame = pd.DataFrame(rows)
    frame["cpu"], frame["cores"], frame["numbanets"] = cpu, os.cpu_count(), versions()["numbanets"]
    frame.to_csv(out / "bench_sweep.csv", index=False, float_format="%.4g")
    print(frame[["measure", "value", "note"]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"CPU: {cpu}, {os.cpu_count()} cores; wrote {out / 'bench_sweep.csv'}")


if __name__ == "__main__":
    main_()
