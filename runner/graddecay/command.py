"""`nbnets grad-decay`: the run: collect the statistics, write the run folder, print the table."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from numbanets.device import resolve
from runner.common import runs
from runner.graddecay.experiment import collect
from runner.graddecay.figures import plot
from runner.graddecay.options import COMMAND, Options, validate
from runner.graddecay.table import render_table


def run(o: Options, echo=print) -> Path:
    """Run the experiment, write the run folder, echo the table; return the run folder."""
    o = validate(o)
    device = resolve(o.device)
    started = time.perf_counter()
    steps, summary, facts = collect(o, device)
    run_dir = runs.new_run_dir(o.out, COMMAND)
    options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(o).items()}
    runs.write_csv(run_dir / "grad_decay.csv", steps)
    runs.write_csv(run_dir / "summary.csv", summary)
    echo(render_table(steps, summary, o))
    note = plot(steps, o, run_dir / "grad_decay.png") if o.plot else None
    elapsed = time.perf_counter() - started
    runs.write_config(run_dir, COMMAND, options, device=device, statistics_on="host (numpy, float64)",
                      elapsed_s=round(elapsed, 3), **facts)
    if note:
        echo(note)
    written = ["config.json", "grad_decay.csv", "summary.csv"] + (["grad_decay.png"] if o.plot and not note else [])
    echo(f"wrote {run_dir}/ ({', '.join(written)})")
    return run_dir
