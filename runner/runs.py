"""Run folders: `results/<command>/<timestamp>-<id>/` with config.json and CSV tables.

Everything is written to a temporary name in the same folder and renamed, so
an interrupted run never leaves a half-written file over a good one.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import secrets
from pathlib import Path

from numbanets.checkpoint import atomic_write_text


def versions() -> dict[str, str]:
    import numba
    import numpy as np
    import pandas as pd

    import numbanets

    return {
        "numbanets": numbanets.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "python": platform.python_version(),
        "numba_threads": str(numba.get_num_threads()),
    }


def new_run_dir(out: str | os.PathLike, command: str) -> Path:
    """Create `out/command/<UTC timestamp>-<6 hex>/`; ValueError when `out` is not writable."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = Path(out) / command / f"{stamp}-{secrets.token_hex(3)}"
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    return run_dir


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def write_json(path: str | os.PathLike, data: dict) -> None:
    atomic_write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())


def write_config(run_dir: Path, command: str, options: dict, **extra) -> dict:
    """config.json: the command, every option as resolved, versions and anything extra."""
    config = {
        "command": command,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "options": options,
        "versions": versions(),
        **extra,
    }
    write_json(run_dir / "config.json", config)
    return config


def write_csv(path: str | os.PathLike, frame, **to_csv_kwargs) -> None:
    """Write a pandas DataFrame as CSV atomically."""
    atomic_write_text(path, frame.to_csv(index=False, **to_csv_kwargs))
