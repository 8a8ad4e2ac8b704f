"""`nbnets memory`: run the grid (or the --search), write the run folder, print the table.

    memory.csv        one row per evaluation: cell, task, distance, seed, step, train_loss,
                      test_accuracy (recall) or test_mse (adding), grad_ratio_context
    summary.csv       one row per (cell, distance, seed): solved, steps_to_solve, steps, the final
                      metric, grad_ratio_init, grad_ratio_final, diverged, wall_s
    max_distance.csv  (--search) cell, max_distance (the largest distance a majority of the seeds
                      learned), reached_limit, seed_<s> (each seed's largest solved distance), tested
    memory.png        the metric and the context-step gradient against distance (runner.memory.figures)
"""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import pandas as pd

from runner.common import runs as run_files
from runner.common.cluster import Where
from runner.memory import figures
from runner.memory.options import COMMAND, Options, run_spec, validate
from runner.memory.runs import Runs
from runner.memory.search import search
from runner.memory.tasks import ADDING_MEAN_MSE, make_task
from runner.memory.train import ADDING_SOLVED


def metric_name(task: str) -> str:
    return "test_accuracy" if task == "recall" else "test_mse"


def _frames(o: Options, specs, results) -> tuple[pd.DataFrame, pd.DataFrame]:
    metric = metric_name(o.task)
    evals, summaries = [], []
    for spec, (rows, summary) in zip(specs, results):
        ident = {"cell": spec.cell, "task": spec.task, "distance": spec.distance, "seed": spec.seed}
        for row in rows:
            evals.append({**ident, "step": row["step"], "train_loss": row["train_loss"], metric: row["test_metric"],
                          "grad_ratio_context": row["grad_ratio_context"]})
        summaries.append({**ident, "solved": summary["solved"], "steps_to_solve": summary["steps_to_solve"],
                          "steps": summary["steps"], f"final_{metric}": summary["final_metric"],
                          "grad_ratio_init": summary["grad_ratio_init"],
                          "grad_ratio_final": summary["grad_ratio_final"], "diverged": summary["diverged"],
                          "wall_s": round(summary["wall_s"], 3)})
    return pd.DataFrame(evals), pd.DataFrame(summaries)


def render_table(summary: pd.DataFrame, o: Options) -> str:
    """cell x distance: solved seeds / seeds and the median steps to solve."""
    distances = sorted(summary["distance"].unique())
    cells = list(dict.fromkeys(summary["cell"]))
    width = max(len(c) for c in cells + ["cell"])
    chance = (f"chance {1 / o.symbols:.3f}" if o.task == "recall" else
              f"predicting the mean: MSE {ADDING_MEAN_MSE:.3f}")
    goal = f"accuracy >= {o.solved:g}" if o.task == "recall" else f"MSE <= {ADDING_SOLVED:g}"
    lines = [f"{o.task}: solved seeds / seeds (median steps to solve); solved = test {goal} within "
             f"{o.max_steps} steps; {chance}",
             f"{'cell':<{width}}  " + "  ".join(f"{f'd={d}':>14}" for d in distances)]
    for cell in cells:
        cells_text = []
        for d in distances:
            g = summary[(summary["cell"] == cell) & (summary["distance"] == d)]
            if g.empty:
                cells_text.append(f"{'':>14}")
                continue
            solved = g[g["solved"]]
            med = f" ({int(np.median(solved['steps_to_solve']))})" if len(solved) else ""
            cells_text.append(f"{f'{len(solved)}/{len(g)}{med}':>14}")
        lines.append(f"{cell:<{width}}  " + "  ".join(cells_text))
    return "\n".join(lines)


def _show(o: Options, plan, echo) -> None:
    task = make_task(o.task, plan.distances[0] if not o.search else max(o.min_distance, 3 if o.forget else 1),
                     o.symbols, o.fillers, o.forget)
    x, y = task.batch(np.random.default_rng([plan.seeds[0], 2]), o.show)
    for i in range(o.show):
        echo("example " + task.render(x[:, i] if x.ndim == 2 else x[:, i, :], y[i]))


def _search(o: Options, plan, runs: Runs, echo):
    specs_done, results_done = [], []

    def run_many(triples):
        specs = [run_spec(o, cell, d, seed) for cell, d, seed in triples]
        results = runs.map(specs)
        specs_done.extend(specs)
        results_done.extend(results)
        return [summary["solved"] for _, summary in results]

    def on_round(todo, states):
        echo("search  " + ", ".join(f"{cell} d={d}: {'yes' if states[cell].tested[d].count(True) * 2 > len(plan.seeds) else 'no'}"
                                    f" ({sum(states[cell].tested[d])}/{len(plan.seeds)})" for cell, d in todo.items()))

    states = search(plan.cells, plan.seeds, run_many, o.min_distance, o.max_distance, o.resolution, on_round)
    rows = []
    for cell, s in states.items():
        row = {"cell": cell, "max_distance": s.best, "reached_limit": s.failed is None and s.best > 0}
        row.update({f"seed_{seed}": v for seed, v in s.per_seed(plan.seeds).items()})
        row["tested"] = " ".join(f"{d}:{sum(v)}/{len(v)}" for d, v in sorted(s.tested.items()))
        rows.append(row)
    return specs_done, results_done, pd.DataFrame(rows)


def run(o: Options, where: Where, echo=print):
    """Run the experiment `o` describes; return the run folder."""
    plan = validate(o)
    if o.show:
        _show(o, plan, echo)
    started = time.perf_counter()
    runs = Runs(where, quiet=o.quiet, echo=echo)
    try:
        if o.search:
            specs, results, best = _search(o, plan, runs, echo)
        else:
            specs = plan.specs(o)
            echo(f"memory  {o.task}: {len(plan.cells)} cells x {len(plan.distances)} distances x "
                 f"{len(plan.seeds)} seeds = {len(specs)} runs")
            results, best = runs.map(specs), None
    finally:
        runs.close()
    evals, summary = _frames(o, specs, results)
    run_dir = run_files.new_run_dir(o.out, COMMAND)
    run_files.write_csv(run_dir / "memory.csv", evals, float_format="%.9g")
    run_files.write_csv(run_dir / "summary.csv", summary, float_format="%.9g")
    written = ["config.json", "memory.csv", "summary.csv"]
    if best is not None:
        run_files.write_csv(run_dir / "max_distance.csv", best)
        written.append("max_distance.csv")
    if best is None:
        echo(render_table(summary, o))
    else:  # the search's table: solved seeds / seeds at each distance it tried
        echo("largest distance learned by a majority of the seeds:")
        for row in best.to_dict("records"):
            limit = f" (the search stopped at --max-distance {o.max_distance})" if row["reached_limit"] else ""
            echo(f"  {row['cell']:<12} {row['max_distance']}{limit}   tested {row['tested']}")
    note = figures.plot(summary, evals, o, run_dir / "memory.png") if o.plot else None
    if o.plot and not note:
        written.append("memory.png")
    elapsed = time.perf_counter() - started
    run_files.write_config(run_dir, COMMAND, asdict(o), where={k: v for k, v in runs.facts.items()},
                           elapsed_s=round(elapsed, 3), runs=len(specs))
    if note:
        echo(note)
    echo(f"wrote {run_dir}/ ({', '.join(written)}) in {elapsed:.1f} s")
    return run_dir

