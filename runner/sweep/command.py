"""`nbnets sweep`: plan the runs, start (or reach) the cluster, run, write the sweep folder.

Everything that can be checked is checked before the cluster starts: the keys
and values (runner.sweep.grid), the input files, the output folder. A run that
fails on its worker is recorded (sweep.csv, failures.csv) and the others go on;
the exit code is then 1. Ctrl-C keeps every finished run and the last checkpoint
of the runs in flight, and prints the --resume command (exit code 130).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import numbanets
from runner.common.system import versions
from runner.common import cluster
from runner.common.progress import RunsBar
from runner.sweep import engine
from runner.sweep.folder import SweepFolder
from runner.sweep.grid import EXPERIMENTS, plan
from runner.sweep.worker import Task


@dataclass
class Request:
    experiment: str | None
    grids: tuple
    sets: tuple
    seeds: str | None
    where: cluster.Where
    out: str
    resume: str | None
    quiet: bool


@dataclass
class SweepResult:
    path: object
    done: int
    failed: int
    interrupted: bool
    wall_s: float
    run_wall_s: float            # the sum of the runs' own wall times on their workers


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _grid_arguments(settings: dict) -> tuple[tuple, tuple, str]:
    grids = tuple(f"{key}={','.join(values)}" for key, values in settings["grid"].items())
    sets = tuple(f"{key}={value}" for key, value in settings["fixed"].items())
    return grids, sets, ",".join(str(s) for s in settings["seeds"])


def _threads_text(threads) -> str:
    if isinstance(threads, dict):
        return ", ".join(f"{n} on {host}" for host, n in threads.items()) or "the worker's cores / its threads"
    return str(threads)


def prepare(commands: dict, request: Request):
    """(the plan, the sweep folder (None for a new sweep: it is made once the cluster is up), its settings
    so far): every check that needs no cluster."""
    if request.resume:
        if request.experiment or request.grids or request.sets or request.seeds:
            raise ValueError("--resume continues a sweep with its stored command, grid, --set and --seeds; "
                             "give only --resume SWEEP_DIR (and where to run)")
        folder, settings = SweepFolder.open(request.resume)
        experiment = settings.get("experiment")
        if experiment not in commands or experiment not in EXPERIMENTS:
            raise ValueError(f"--resume {request.resume}: sweep.json names no command nbnets sweep runs "
                             f"({experiment!r})")
        grids, sets, seeds = _grid_arguments(settings)
        return plan(commands[experiment], grids, sets, seeds), folder, settings
    if not request.experiment:
        raise ValueError(f"give the COMMAND to sweep ({', '.join(EXPERIMENTS)}) or --resume SWEEP_DIR")
    if request.experiment not in commands or request.experiment not in EXPERIMENTS:
        raise ValueError(f"nbnets sweep runs {', '.join(EXPERIMENTS)}; not {request.experiment!r}")
    the_plan = plan(commands[request.experiment], request.grids, request.sets, request.seeds or "0")
    settings = {"command": "sweep", **the_plan.describe(), "runs": len(the_plan.runs), "created_utc": _now()}
    return the_plan, None, settings


def _software() -> dict:
    import dask
    import distributed

    return {"dask": dask.__version__, "distributed": distributed.__version__, "numbanets": numbanets.__version__,
            "python": versions()["python"]}


def run(commands: dict, request: Request, echo=print) -> SweepResult:
    """Run the sweep `request` describes; `commands` maps names to the nbnets click commands."""
    the_plan, folder, settings = prepare(commands, request)
    started = time.perf_counter()
    client, local, facts = cluster.start(request.where)
    try:
        if folder is None:
            folder = SweepFolder.create(request.out, list(the_plan.grid))
        sweep_id = folder.path.name
        todo = [r for r in the_plan.runs if r.name not in folder.rows]
        order = [r.name for r in the_plan.runs]
        by_name = {r.name: r for r in the_plan.runs}
        points = len(the_plan.runs) // max(1, len(the_plan.seeds))
        echo(f"sweep   {the_plan.experiment}: {points} grid point{'s' * (points != 1)} x {len(the_plan.seeds)} "
             f"seed{'s' * (len(the_plan.seeds) != 1)} = {len(the_plan.runs)} runs"
             + (f", {len(todo)} still to run" if request.resume else "") + f" -> {folder.path}")
        link = cluster.dashboard(client)
        settings.update(where=facts, dashboard=link, versions=_software(), status="running")
        folder.write_settings(settings)
        where = (f"local cluster of {facts['workers']} workers x {facts['threads_per_worker']} thread"
                 f"{'s' * (facts['threads_per_worker'] != 1)}" if local is not None else
                 f"scheduler {facts['scheduler']} ({facts['workers']} workers; kernel threads per run: "
                 f"{_threads_text(facts['run_threads'])})")
        echo(f"dask    {where}" + (f", dashboard {link}" if link else ""))
        if local is None and not facts["workers"]:
            echo("dask    the scheduler has no workers yet: the runs wait for them")
        threads = facts["run_threads"]
        tasks = [Task(the_plan.experiment, r.name, r.params, r.given, threads,
                      inputs={v: the_plan.inputs[v] for v in r.params.values() if isinstance(v, str)
                              and v in the_plan.inputs},
                      start_from=folder.partial(r.name), checkpoint_key=["nbnets-sweep", sweep_id, r.name],
                      checkpoint_every=request.where.checkpoint_every)
                 for r in todo]
        bar = RunsBar(len(the_plan.runs), len(folder.rows), enabled=not request.quiet)
        run_wall = 0.0

        def on_outcome(task, outcome):
            nonlocal run_wall
            if outcome.status == "partial":
                folder.save_partial(task.name, outcome.files["checkpoint.zip"])
                return
            run = by_name[task.name]
            folder.record(outcome, run.point, run.seed)
            folder.write_tables(order)
            run_wall += outcome.wall_s
            bar.update(*folder.counts())

        bar.update(*folder.counts())
        interrupted = engine.run_all(client, tasks, on_outcome, request.where.retries)
        bar.close()
    finally:
        client.close()
        if local is not None:
            local.close()
    wall = time.perf_counter() - started
    folder.write_tables(order)
    done, failed = folder.counts()
    settings.update(status="interrupted" if interrupted else "finished", finished_utc=_now(), done=done,
                    failed=failed, wall_s=round(wall, 3))
    folder.write_settings(settings)
    for name, error in list(folder.failures.items())[:10]:
        echo(f"failed  {name}: {error}")
    if len(folder.failures) > 10:
        echo(f"failed  ... {len(folder.failures) - 10} more in {folder.path / 'failures.csv'}")
    echo(f"wrote   {folder.path}/ (sweep.json, sweep.csv, failures.csv, runs/): {done} done, {failed} failed, "
         f"{wall:.1f} s")
    if interrupted:
        echo(f"interrupted with {len(the_plan.runs) - done - failed} runs unfinished. Continue with:\n"
             f"  nbnets sweep --resume {folder.path}")
    else:
        echo(f"analyse with: nbnets analyse {folder.path}")
    return SweepResult(folder.path, done, failed, interrupted, wall, run_wall)
