"""`nbnets analyse`, reading: find the runs under the given paths and identify each table by its columns.

A run folder holds config.json and one or more of the tables below; a CSV
outside a run folder is read alone. What kind of run a table comes from is
decided by its columns (TABLES), not by its file name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

KINDS = ("train-charlm", "train-cnn", "grad-decay", "bench")

# The columns the commands write (tests/test_analyse.py checks these against the writers).
CHARLM_COLUMNS = ["step", "epoch", "train_loss", "val_loss", "train_bpc", "val_bpc",
                  "grad_norm", "clipped", "lr", "chars_per_s", "elapsed_s"]
CNN_COLUMNS = ["epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s", "elapsed_s"]
GRAD_DECAY_COLUMNS = ["cell", "seed", "phase", "steps", "t", "grad_norm", "grad_ratio", "jac_spec"]
DECAY_METRICS = ["rho", "lambda1", "gamma", "lambda1_gamma", "effective_rate",
                 "decay_slope", "decay_factor", "steps_to_1e-3"]
SUMMARY_COLUMNS = ["cell", "seed", "phase"] + DECAY_METRICS
BENCH_COLUMNS = ["case", "shape", "impl", "device", "threads", "median_ms", "min_ms", "max_ms", "gflops",
                 "fraction_of_peak", "peak_rss_mb", "speedup_vs_torch", "speedup_vs_numpy"]

# (kind, table name = file name without .csv, columns it must have), tried in this order
TABLES = [
    ("train-charlm", "metrics", CHARLM_COLUMNS),
    ("train-cnn", "metrics", CNN_COLUMNS),
    ("grad-decay", "grad_decay", GRAD_DECAY_COLUMNS),
    ("grad-decay", "summary", SUMMARY_COLUMNS),
    ("bench", "bench", BENCH_COLUMNS),
]
FILE_NAMES = sorted({f"{name}.csv" for _, name, _ in TABLES})
EXPECTED = ("the columns of a train-charlm or train-cnn metrics.csv, a grad-decay grad_decay.csv or "
            "summary.csv, or a bench.csv")


@dataclass
class Run:
    kind: str
    path: Path                              # the run folder, or the CSV when it is not in one
    config: dict | None = None
    tables: dict = field(default_factory=dict)   # table name -> DataFrame
    label: str = ""                         # unique within its kind: the folder (or file) name
    legend: str = ""                        # label plus the options that differ, for figures

    @property
    def options(self) -> dict:
        if not self.config:
            return {}
        opts = dict(self.config.get("options") or {})
        if "device" in self.config:        # the resolved device, not "auto"
            opts["device"] = self.config["device"]
        return opts


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def read_table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:  # pandas' ParserError, EmptyDataError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"cannot read {path} as a CSV table: {_one_line(exc)}") from None


def identify(path: Path, frame: pd.DataFrame) -> tuple[str, str]:
    """(kind, table name) of a CSV from its columns; ValueError when it is none of ours."""
    columns = set(frame.columns)
    for kind, name, need in TABLES:
        if set(need) <= columns:
            return kind, name
    if {"true", "predicted", "count"} <= columns:
        raise ValueError(f"{path} is a train-cnn confusion matrix, which analyse does not read; give its run "
                         "folder or its metrics.csv")
    has = ", ".join(map(str, list(frame.columns)[:10])) + (", ..." if len(frame.columns) > 10 else "")
    raise ValueError(f"{path} is not a numbanets table (expected {EXPECTED}; it has: {has or 'no columns'})")


def read_config(folder: Path) -> dict | None:
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {_one_line(exc)}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a numbanets config (a JSON object with a \"command\")")
    return config


def load_csv(path: Path) -> Run:
    """One CSV; it joins its folder's run when config.json beside it names the same command."""
    frame = read_table(path)
    kind, name = identify(path, frame)
    config = read_config(path.parent)
    if config is not None and config.get("command") == kind:
        return Run(kind, path.parent, config, {name: frame})
    home = path.parent if path.name == f"{name}.csv" and config is None else path
    return Run(kind, home, None, {name: frame})


def _is_run_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() or any((folder / n).is_file() for n in FILE_NAMES)


def load_folder(folder: Path, strict: bool, note) -> list[Run]:
    """The runs of one run folder. strict: problems are errors; else they are noted and skipped."""
    try:
        config = read_config(folder)
        if config is None:  # no config.json: the CSVs with our file names, recognised by their columns
            return [load_csv(folder / n) for n in FILE_NAMES if (folder / n).is_file()]
        kind = config.get("command")
        if kind not in KINDS:
            raise ValueError(f"{folder}: command {kind!r} in config.json is not one analyse reads "
                             f"({', '.join(KINDS)})")
        run = Run(kind, folder, config)
        for table_kind, name, need in TABLES:
            path = folder / f"{name}.csv"
            if table_kind != kind or not path.is_file():
                continue
            frame = read_table(path)
            missing = [c for c in need if c not in frame.columns]
            if missing:
                raise ValueError(f"{path} lacks the columns {', '.join(missing)} of a {kind} {name}.csv")
            run.tables[name] = frame
        if not run.tables:
            names = " or ".join(f"{n}.csv" for k, n, _ in TABLES if k == kind)
            raise ValueError(f"{folder} is a {kind} run without its {names} (interrupted before writing it?)")
        return [run]
    except ValueError as exc:
        if strict:
            raise
        note(f"skipped: {exc}")
        return []


def _walk(root: Path):
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        if _is_run_folder(folder):
            dirnames[:] = []
            yield folder


def collect(paths, note=print) -> list[Run]:
    """Every run under `paths`, each once (a run reached twice merges its tables), labelled."""
    runs: dict[tuple, Run] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ValueError(f"no such file or folder: {raw}")
        if path.is_file():
            found = load_folder(path.parent, True, note) if path.name == "config.json" else [load_csv(path)]
        elif _is_run_folder(path):
            found = load_folder(path, True, note)
        else:
            folders = list(_walk(path))
            found = [run for folder in folders for run in load_folder(folder, False, note)]
            if not found:
                why = (f"{len(folders)} skipped, see above" if folders else
                       f"looked for folders with config.json or {', '.join(FILE_NAMES)}")
                raise ValueError(f"no numbanets runs found in {raw} ({why})")
        for run in found:
            key = (run.kind, run.path.resolve())
            if key in runs:
                runs[key].tables.update(run.tables)
            else:
                runs[key] = run
    out = list(runs.values())
    for kind in KINDS:
        same = [r for r in out if r.kind == kind]
        names = [r.path.name for r in same]
        for r in same:
            r.label = r.path.name if names.count(r.path.name) == 1 else str(r.path)
    return out
