"""grad-decay's terminal table: ||dh_T/dh_t|| per cell and step, with the summary's rates."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from runner.graddecay.options import Options


def columns_to_show(T: int, most: int = 12) -> list[int]:
    if T <= most:
        return list(range(1, T + 1))
    return sorted(set(np.linspace(1, T, most).round().astype(int).tolist()))


def render_table(steps: pd.DataFrame, summary: pd.DataFrame, o: Options) -> str:
    """Cells as rows, t as columns: log10 of grad_ratio (mean over seeds), plus the summary numbers."""
    T = o.steps
    ts = columns_to_show(T)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame = steps.assign(log_ratio=np.log10(steps["grad_ratio"].astype(float)))
    table = frame.groupby(["phase", "cell", "t"], sort=False)["log_ratio"].mean()
    summ = summary.groupby(["phase", "cell"], sort=False)[["lambda1_gamma", "effective_rate", "steps_to_1e-3"]].mean()
    phases = list(dict.fromkeys(steps["phase"]))
    label = max(len(c) for c in o.cells) + (8 + len(str(max(phases))) if len(phases) > 1 else 0)
    label = max(label, 4)
    seeds = f"mean of {o.seeds} seeds" + (f" from {o.seed}" if o.seed else "") if o.seeds > 1 else f"seed {o.seed}"
    lines = [f"log10 ||dL/dh_t|| / ||dL/dh_T||   (T = {T}, H = {o.hidden}, init {o.init} x {o.scale:g}, "
             f"input {o.input}, {seeds})"]
    head = f"{'cell':<{label}}" + "".join(f"{f't={t}':>8}" for t in ts)
    head += f"  | {'lam1*gamma':>10} {'eff.rate':>9} {'to 1e-3':>8}"
    lines.append(head)
    for phase in phases:
        for cell in o.cells:
            name = cell if len(phases) == 1 else f"{cell} @step {phase}"
            row = f"{name:<{label}}"
            for t in ts:
                v = table.get((phase, cell, t), np.nan)
                row += f"{fmt(v, 2):>8}"
            s = summ.loc[(phase, cell)]
            row += (f"  | {fmt(s['lambda1_gamma'], 3):>10} {fmt(s['effective_rate'], 3):>9} "
                    f"{steps_text(s['steps_to_1e-3']):>8}")
            lines.append(row)
    lines.append("(steps back to 1e-3 from the fitted slope of log10 grad_norm against t; "
                 "'never' when the gradient does not shrink; lam1*gamma blank for the LSTM and GRU)")
    return "\n".join(lines)


def fmt(v, digits) -> str:
    v = float(v)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}f}"


def steps_text(v) -> str:
    v = float(v)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "never"
    return f"{v:.1f}"
