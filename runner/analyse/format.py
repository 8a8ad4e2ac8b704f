"""Text forms of `nbnets analyse`'s sections: aligned text, markdown, or one CSV.

    render(sections, fmt)    fmt "table" | "markdown" | "csv" -> str
    format_value(v)          one cell: integers without decimals, floats to 4 significant digits, NaN as "-"
    is_numeric(column)       a column of numbers only (right-aligned; sortable)

The CSV form is ONE table whose first column `section` names the kind (see
runner/analyse/summary.py), so pandas reads every section back in one call; a
section whose display is compact (sweep: "mean ± ci95") gives its numeric
table (Section.csv) there instead.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def format_value(value) -> str:
    if value is None or value is pd.NA:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
    return str(value)


def is_numeric(column: pd.Series) -> bool:
    values = column.dropna()
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values)


def _cells(frame: pd.DataFrame):
    heads = [str(c) for c in frame.columns]
    rows = [[format_value(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    right = [is_numeric(frame.iloc[:, i]) for i in range(frame.shape[1])]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(heads)]
    return heads, rows, right, widths


def render_text(frame: pd.DataFrame) -> str:
    heads, rows, right, widths = _cells(frame)

    def line(cells):
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, r, w in zip(cells, right, widths)).rstrip()

    return "\n".join([line(heads)] + [line(r) for r in rows])


def render_markdown(frame: pd.DataFrame) -> str:
    heads, rows, right, widths = _cells(frame)
    esc = [[c.replace("|", "\\|") for c in r] for r in [heads] + rows]
    widths = [max(3, max(len(r[i]) for r in esc)) for i in range(len(heads))]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w) for c, r, w in zip(cells, right, widths)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else (":" + "-" * (w + 1)) for r, w in zip(right, widths)) + "|"
    return "\n".join([line(esc[0]), rule] + [line(r) for r in esc[1:]])


def render(sections, fmt: str) -> str:
    if fmt == "csv":
        frames = [(s.display if s.csv is None else s.csv).assign(section=s.kind) for s in sections]
        frame = pd.concat(frames, ignore_index=True, sort=False)
        frame = frame[["section"] + [c for c in frame.columns if c != "section"]]
        return frame.to_csv(index=False)
    blocks = []
    for s in sections:
        if fmt == "markdown":
            blocks.append(f"### {s.title}\n\n{s.note}\n\n{render_markdown(s.display)}\n")
        else:
            blocks.append(f"{s.title}\n({s.note})\n{render_text(s.display)}\n")
    return "\n".join(blocks)
