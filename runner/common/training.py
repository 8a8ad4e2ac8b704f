"""The pieces of a training run that train-charlm and train-cnn share.

A run folder holds metrics.csv (one row per step or epoch, fixed columns) and
checkpoint.npz/.json (arrays plus a JSON meta whose `kind` names the command's
checkpoint format). Each command's own format lives in its `checkpoint.py`,
which calls `save_checkpoint` / `load_checkpoint` here with its kind and the
meta keys it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from numbanets import checkpoint
from runner.common.runs import write_csv, write_json

CHECKPOINT_FILE = "checkpoint.npz"
METRICS_FILE = "metrics.csv"


class NonFiniteLoss(ValueError):
    """The loss (or the gradient norm) became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class RunResult:
    """What a training command returns: where the run is, how far it got, whether Ctrl-C stopped it."""

    run_dir: Path
    interrupted: bool = False
    summary: dict = field(default_factory=dict)
    step: int | None = None      # train-charlm: the last step trained
    epoch: int | None = None     # train-cnn: the last epoch trained
    test_acc: float | None = None


def write_metrics(run_dir: Path, rows: list[dict], columns: list[str]) -> None:
    """metrics.csv with exactly `columns`, floats to 9 significant digits, written atomically."""
    write_csv(run_dir / METRICS_FILE, pd.DataFrame(rows, columns=columns), float_format="%.9g")


def read_metrics(run_dir: Path, columns: list[str], key: str, upto: int) -> list[dict]:
    """The rows of metrics.csv whose `key` column (step or epoch) is <= `upto`, as dicts; [] without a file.

    ValueError when the file cannot be parsed or lacks one of `columns`."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    try:
        frame = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad run folder
        raise ValueError(f"{path} cannot be read: {exc}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {', '.join(missing)}")
    return frame[frame[key] <= upto][columns].to_dict("records")


def record_resume(run_dir: Path, config: dict, opts: dict, given, overrides, relocatable: dict,
                  entry: dict) -> None:
    """Append this --resume session to config.json's `resumed` (`entry`: where it starts, its target,
    its device; plus the options it changed) and point a moved file option (`relocatable`: --corpus,
    --data) at its new path, where the next --resume finds it; config.json is written at once."""
    changed = {k: opts[k] for k in given if k in overrides or k in relocatable}
    config.setdefault("resumed", []).append({**entry, "options_changed": changed})
    for name in relocatable:
        if name in changed:
            config["options"][name] = opts[name]
    write_json(run_dir / "config.json", config)


def section(arrays: dict, prefix: str) -> dict:
    """The arrays stored under `prefix/` (param, optim, hidden), with the prefix taken off their names."""
    start = prefix + "/"
    return {k[len(start):]: v for k, v in arrays.items() if k.startswith(start)}


def with_prefix(prefix: str, arrays: dict) -> dict:
    """`arrays` renamed to `prefix/<name>` for a checkpoint: the inverse of `section`."""
    return {f"{prefix}/{k}": v for k, v in arrays.items()}


def restore_weights(model, optimizer, arrays: dict) -> None:
    """Load a checkpoint's param/ arrays into the model and its optim/ arrays into the optimizer."""
    model.load_state_dict(section(arrays, "param"))
    optimizer.load_state_dict(section(arrays, "optim"))


def save_checkpoint(run_dir: Path, arrays: dict, meta: dict, elapsed: float) -> None:
    """checkpoint.npz + .json in `run_dir` (atomic), the run's elapsed seconds added to the meta."""
    meta["elapsed_s"] = elapsed
    checkpoint.save(run_dir / CHECKPOINT_FILE, arrays, meta)


def load_checkpoint(path, kind: str, required: tuple[str, ...], foreign: str, incomplete: str) -> tuple[dict, dict]:
    """(arrays, meta) of a checkpoint of `kind` holding every key in `required`.

    `foreign` and `incomplete` are the ValueError messages for another kind of
    file and for a missing key; they are formatted with `path`, `kind` (the
    file's) and `key`."""
    arrays, meta = checkpoint.load(path)
    if not isinstance(meta, dict) or meta.get("kind") != kind:
        found = meta.get("kind") if isinstance(meta, dict) else None
        raise ValueError(foreign.format(path=path, kind=found, key=None))
    for key in required:
        if key not in meta:
            raise ValueError(incomplete.format(path=path, kind=kind, key=key))
    return arrays, meta
