"""Run folders: `results/<command>/<timestamp>-<id>/` with config.json and CSV tables.

Everything is written to a temporary name in the same folder and renamed, so
an interrupted run never leaves a half-written file over a good one.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import signal
from pathlib import Path

from numbanets.checkpoint import atomic_write_text
from runner.common.system import versions


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


class Interrupt:
    """Ctrl-C as a request: SIGINT sets `requested`, which the training loop checks
    between steps (a step is never cut in half); a second Ctrl-C raises
    KeyboardInterrupt at once. Off the main thread it installs nothing."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C behaves as usual
            self._old = None
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def resolve_resume(resume: str, command: str, opts: dict, given, defaults, overrides) -> tuple[Path, dict, dict]:
    """The run folder, its config.json and the options to continue it with.

    `resume` is a run folder (or its checkpoint file) of `command`; `given` names
    the options set on this command line: those in `overrides` replace the run's
    own, any other that differs from the run's setting is a ValueError.
    """
    run_dir = Path(resume)
    if run_dir.is_file() and run_dir.name.startswith("checkpoint"):
        run_dir = run_dir.parent
    config_path, ckpt_path = run_dir / "config.json", run_dir / "checkpoint.npz"
    if not run_dir.is_dir() or not config_path.is_file() or not ckpt_path.is_file():
        raise ValueError(f"--resume {resume}: not a {command} run folder (needs config.json and checkpoint.npz)")
    try:
        config = read_json(config_path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad run folder
        raise ValueError(f"--resume {resume}: config.json cannot be read ({exc})") from None
    if config.get("command") != command or not isinstance(config.get("options"), dict):
        raise ValueError(f"--resume {resume}: config.json is not from nbnets {command}")
    saved = config["options"]
    clashes = [
        f"--{k.replace('_', '-')} {opts[k]} (the run has {saved.get(k)})"
        for k in sorted(given)
        if k not in overrides and k in defaults and opts.get(k) != saved.get(k)
    ]
    if clashes:
        allowed = ", ".join(f"--{k.replace('_', '-')}" for k in sorted(overrides) if k != "out")
        raise ValueError(
            f"--resume continues a run with its own settings; only {allowed} may change, "
            f"but got {', '.join(clashes)}"
        )
    merged = {**saved, **{k: opts[k] for k in given if k in overrides and k != "out"}}
    return run_dir, config, merged
