"""The headline numbers of ONE run folder, as one flat dict: what a sweep records per run.

    headline(folder) -> {name: float}

A run of train-charlm, train-cnn or grad-decay is read as `nbnets analyse FOLDER`
reads it (read.load_folder) and summarised by the same builder (summary.BUILDERS),
so the names and values are the ones analyse prints:

    train-charlm  final_train_loss, final_val_loss, best_val_loss, best_step, chars_per_s, elapsed_s
    train-cnn     final_train_loss, final_train_acc, final_test_loss, final_test_acc, best_test_loss,
                  best_test_acc, best_acc_epoch, images_per_s, elapsed_s
    grad-decay    rho, lambda1, lambda1_gamma, effective_rate, decay_factor, steps_to_1e-3

A grad-decay run has one row per (cell, seed, phase). With one row the names are
plain; with several, each name is suffixed by the row's values of the identity
columns that vary within the run, joined by ".": "decay_factor.lstm",
"rho.rnn-tanh", "decay_factor.lstm.1" (cell lstm, seed 1), metric by metric in
the rows' order. A number that does not
exist (rho of an LSTM, a validation loss never evaluated) is NaN, so every run of
the same configuration has the same keys.
"""

from __future__ import annotations

import math
from pathlib import Path

from runner.analyse.read import load_folder, read_config
from runner.analyse.summary import BUILDERS

HEADLINE_KINDS = ("train-charlm", "train-cnn", "grad-decay")
EXTRA = {"train-charlm": ["best_step"], "train-cnn": ["best_acc_epoch"], "grad-decay": []}
IDENTITY = ("cell", "seed", "phase", "init", "scale", "steps")  # a grad-decay row's identity, suffix order


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _suffix(value) -> str:
    """An identity value as it reads in a name: 1.0 -> "1", 0.5 -> "0.5", "lstm" -> "lstm"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def headline(folder) -> dict[str, float]:
    """The headline numbers of one train-charlm, train-cnn or grad-decay run folder (names as analyse
    prints them); ValueError (one line) when `folder` is not such a run."""
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"{folder} is not a run folder (no such folder)")
    config = read_config(path)
    if config is not None and config.get("command") not in HEADLINE_KINDS:
        raise ValueError(f"{folder} is a {config.get('command')!r} run; headline numbers are for "
                         f"{', '.join(HEADLINE_KINDS)}")
    runs = load_folder(path, strict=True, note=lambda message: None)
    if not runs:
        raise ValueError(f"{folder} is not a run folder (no config.json, metrics.csv, summary.csv or "
                         "grad_decay.csv in it)")
    if len(runs) > 1 or runs[0].kind not in HEADLINE_KINDS:
        kinds = ", ".join(sorted({r.kind for r in runs}))
        raise ValueError(f"{folder} is a {kinds} run; headline numbers are for {', '.join(HEADLINE_KINDS)}")
    run = runs[0]
    run.label = path.name
    table, metrics, _, _ = BUILDERS[run.kind]([run])
    names = metrics + EXTRA[run.kind]
    if run.kind != "grad-decay" or len(table) == 1:
        row = table.iloc[0]
        ordered = [c for c in table.columns if c in names]  # the builder's column order
        return {name: _number(row[name]) for name in ordered}
    varying = [c for c in IDENTITY if c in table and table[c].nunique(dropna=False) > 1]
    tags = [".".join(_suffix(row[c]) for c in varying) for _, row in table.iterrows()]
    if len(set(tags)) < len(tags):
        raise ValueError(f"{folder}: grad-decay rows that share cell, seed and phase; cannot name them apart")
    return {f"{name}.{tag}": _number(value) for name in metrics for tag, value in zip(tags, table[name])}
