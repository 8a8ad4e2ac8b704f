"""`nbnets analyse`, reading: find the runs under the given paths and identify each table by its columns.

A run folder holds config.json and one or more of the tables below; a CSV
outside a run folder is read alone. What kind of run a table comes from is
decided by its columns (TABLES), not by its file name.

A sweep folder (`nbnets sweep`) holds sweep.json (its "command" is "sweep")
and sweep.csv, one row per run with the run's headline numbers; it is read as
ONE Sweep, and its runs/ are not walked (give SWEEP/runs or one of its run
folders to read those as runs).
"""

from __future__ import annotations

import json
import math
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
BENCH_NEEDED = ["case", "shape", "impl", "device", "threads", "median_ms", "min_ms", "max_ms", "gflops",
                "fraction_of_peak", "peak_rss_mb", "speedup_vs_torch", "speedup_vs_numpy"]  # what older runs wrote too
BENCH_COLUMNS = [*BENCH_NEEDED[:-1], "speedup_ci_low", "speedup_ci_high", "speedup_vs_numpy", "numpy_ci_low",
                 "numpy_ci_high", "wide", "blocks", "block_runs", "added_blocks", "load_before", "load_after",
                 "cpu_vendor", "cpu_model", "cpu_flags", "blas", "recurrent_gemm"]

# (kind, table name = file name without .csv, columns it must have), tried in this order
TABLES = [
    ("train-charlm", "metrics", CHARLM_COLUMNS),
    ("train-cnn", "metrics", CNN_COLUMNS),
    ("grad-decay", "grad_decay", GRAD_DECAY_COLUMNS),
    ("grad-decay", "summary", SUMMARY_COLUMNS),
    ("bench", "bench", BENCH_NEEDED),
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


@dataclass
class Sweep:
    path: Path                              # the sweep folder
    settings: dict                          # sweep.json
    table: pd.DataFrame                     # sweep.csv, grid columns as the text written
    label: str = ""                         # unique among the sweeps: the folder name
    defaults: dict = field(default_factory=dict)  # option -> value in its first run's config.json

    def value(self, key: str):
        """A key this sweep does not vary: its fixed value, else what its runs used (NaN when unknown)."""
        fixed = self.settings.get("fixed") or {}
        if key in fixed:
            return fixed[key]
        value = self.defaults.get(key.replace("-", "_"), math.nan)
        return ",".join(map(str, value)) if isinstance(value, list) else math.nan if value is None else value

    @property
    def experiment(self) -> str:
        return str(self.settings.get("experiment", "?"))

    @property
    def grid(self) -> dict:
        return self.settings["grid"]


SWEEP_FILE, SWEEP_TABLE = "sweep.json", "sweep.csv"
SWEEP_COLUMNS = ["run", "status"]


def is_sweep_folder(folder: Path) -> bool:
    return (folder / SWEEP_FILE).is_file()


def load_sweep(folder: Path) -> Sweep:
    """sweep.json and sweep.csv of a sweep folder; ValueError (one line) when either is not usable."""
    path = folder / SWEEP_FILE
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {_one_line(exc)}") from None
    if not isinstance(settings, dict) or settings.get("command") != "sweep":
        raise ValueError(f"{path} is not from nbnets sweep (a JSON object with \"command\": \"sweep\")")
    grid = settings.get("grid")
    if not isinstance(grid, dict) or not all(isinstance(v, list) for v in grid.values()):
        raise ValueError(f"{path} has no \"grid\" of option names and value lists")
    table_path = folder / SWEEP_TABLE
    if not table_path.is_file():
        raise ValueError(f"{folder} is a sweep without its {SWEEP_TABLE} (no run finished yet?)")
    try:  # the grid values as written (1e-3 stays "1e-3"), the numbers as numbers
        table = pd.read_csv(table_path, dtype={key: str for key in list(grid) + ["run", "status"]})
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {table_path} as a CSV table: {_one_line(exc)}") from None
    missing = [c for c in SWEEP_COLUMNS + list(grid) if c not in table.columns]
    if missing:
        raise ValueError(f"{table_path} lacks the columns {', '.join(missing)} of a sweep.csv")
    return Sweep(folder, settings, table, defaults=_first_options(folder, table))


def _first_options(folder: Path, table: pd.DataFrame) -> dict:
    """The options in the config.json of the sweep's first run that has one ({} when none does)."""
    for run in table["run"].dropna():
        try:
            config = read_config(folder / "runs" / str(run))
        except ValueError:
            continue
        if config and isinstance(config.get("options"), dict):
            return config["options"]
    return {}


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
    """(folder, is a sweep) for every run or sweep folder under root; nothing below either is walked."""
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        if is_sweep_folder(folder) or _is_run_folder(folder):
            dirnames[:] = []
            yield folder, is_sweep_folder(folder)


def _sweep_or_skip(folder: Path, note) -> list[Sweep]:
    try:
        return [load_sweep(folder)]
    except ValueError as exc:
        note(f"skipped: {exc}")
        return []


def _found(raw: str, note) -> tuple[list[Run], list[Sweep]]:
    path = Path(raw)
    if not path.exists():
        raise ValueError(f"no such file or folder: {raw}")
    if path.is_file() and path.name in (SWEEP_FILE, SWEEP_TABLE) and is_sweep_folder(path.parent):
        return [], [load_sweep(path.parent)]
    if path.is_file():
        return (load_folder(path.parent, True, note) if path.name == "config.json" else [load_csv(path)]), []
    if is_sweep_folder(path):
        return [], [load_sweep(path)]
    if _is_run_folder(path):
        return load_folder(path, True, note), []
    folders = list(_walk(path))
    runs = [run for folder, sweep in folders if not sweep for run in load_folder(folder, False, note)]
    sweeps = [one for folder, sweep in folders if sweep for one in _sweep_or_skip(folder, note)]
    if not runs and not sweeps:
        why = (f"{len(folders)} skipped, see above" if folders else
               f"looked for folders with config.json, {SWEEP_FILE} or {', '.join(FILE_NAMES)}")
        raise ValueError(f"no numbanets runs found in {raw} ({why})")
    return runs, sweeps


def _label(items) -> None:
    names = [item.path.name for item in items]
    for item in items:
        item.label = item.path.name if names.count(item.path.name) == 1 else str(item.path)


def collect_all(paths, note=print) -> tuple[list[Run], list[Sweep]]:
    """Every run and every sweep under `paths`, each once (a run reached twice merges its tables), labelled."""
    runs: dict[tuple, Run] = {}
    sweeps: dict[Path, Sweep] = {}
    for raw in paths:
        found, found_sweeps = _found(raw, note)
        for run in found:
            key = (run.kind, run.path.resolve())
            if key in runs:
                runs[key].tables.update(run.tables)
            else:
                runs[key] = run
        for sweep in found_sweeps:
            sweeps.setdefault(sweep.path.resolve(), sweep)
    out = list(runs.values())
    for kind in KINDS:
        _label([r for r in out if r.kind == kind])
    _label(list(sweeps.values()))
    return out, list(sweeps.values())


def collect(paths, note=print) -> list[Run]:
    """Every run under `paths` (sweep folders left out: see collect_all)."""
    return collect_all(paths, note)[0]
