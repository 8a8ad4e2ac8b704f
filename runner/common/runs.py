"""Run folders: `results/<command>/<timestamp>-<id>/` with config.json and CSV tables.

Everything is written to a temporary name in the same folder and renamed, so
an interrupted run never leaves a half-written file over a good one.

One process writes into a run folder at a time: `RunLock` holds an exclusive,
non-blocking flock on RUN/.lock (the holder's pid inside) and a second process
is refused with a ValueError naming that pid. A training command decorated
with `with_run_locks` calls `lock_run(run_dir)` once it knows its folder (a new
one, or the one --resume names); the lock is released when the command returns
or raises, and by the OS when the process dies. Where fcntl is missing
(Windows) nothing is locked.

Ctrl-C during training is a request (`Interrupt`); a second one stops at once
with `SecondInterrupt`, which the command line turns into exit code 130.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import errno
import functools
import json
import os
import secrets
import signal
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock, run folders are not locked
    fcntl = None

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


class SecondInterrupt(KeyboardInterrupt):
    """A second Ctrl-C: the run stops where it is; what it saved stays, nothing more is saved."""

    def __init__(self):
        super().__init__("stopped at once by a second Ctrl-C: nothing more is saved "
                         "(the run folder keeps its last checkpoint)")


class Interrupt:
    """Ctrl-C as a request: SIGINT sets `requested`, which the training loop checks
    between steps (a step is never cut in half); a second Ctrl-C raises
    SecondInterrupt (a KeyboardInterrupt) at once. Off the main thread it installs nothing."""

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
            raise SecondInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


LOCK_FILE = ".lock"


class RunLock:
    """`with RunLock(run_dir):` holds an exclusive flock on run_dir/.lock, or raises ValueError
    `<run_dir> is in use by another nbnets process (pid N)` at once (non-blocking).

    The file holds the holder's pid and is removed on release, while still locked;
    a process that opened it before the removal finds, once it has the lock, that
    the name now points elsewhere (or nowhere) and tries again."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd = None

    def __enter__(self) -> "RunLock":
        if fcntl is None:
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                    return self  # a folder no one can write to needs no lock: writing into it fails anyway
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise ValueError(f"{self.run_dir} is in use by another nbnets process (pid {holder})") from None
            except BaseException:
                os.close(fd)
                raise
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                break
            os.close(fd)  # the holder removed the file as we opened it: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)  # closing the file releases the lock
            self._fd = None
        return False


_HELD: contextvars.ContextVar[contextlib.ExitStack | None] = contextvars.ContextVar("run_locks", default=None)


def with_run_locks(func):
    """Decorator: the run folders `func` locks with `lock_run` stay locked until it returns or raises."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with contextlib.ExitStack() as stack:
            token = _HELD.set(stack)
            try:
                return func(*args, **kwargs)
            finally:
                _HELD.reset(token)

    return wrapper


def lock_run(run_dir: Path) -> Path:
    """Enter RunLock(run_dir) for the rest of the enclosing `with_run_locks` call; returns run_dir."""
    stack = _HELD.get()
    if stack is None:
        raise RuntimeError("lock_run needs a caller decorated with runs.with_run_locks")
    stack.enter_context(RunLock(run_dir))
    return run_dir


def resume_rule(overrides, relocatable=()) -> str:
    """What --resume lets change, as its refusal and the command's manual state it (one source: `overrides`).

    `overrides` are option names (a command's RESUME_OVERRIDES; "out" is accepted
    and ignored), `relocatable` the file options that may name a copy elsewhere.
    """
    names = [_flag(k) for k in overrides if k != "out"]
    text = "only " + (", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]) + " may change"
    notes = [f"{_flag(k)} may name a copy of the run's file elsewhere (checked against the SHA-256 in config.json)"
             for k in relocatable]
    if "out" in overrides:
        notes.append("--out is ignored (the run stays in its folder)")
    return "; ".join([text, *notes])


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resolve_resume(resume: str, command: str, opts: dict, given, defaults, overrides,
                   relocatable: dict | None = None) -> tuple[Path, dict, dict]:
    """The run folder, its config.json and the options to continue it with.

    `resume` is a run folder (or its checkpoint file) of `command`; `given` names
    the options set on this command line: those in `overrides` replace the run's
    own, any other that differs from the run's setting is a ValueError whose
    message ends with `resume_rule`.

    `relocatable` maps a file option (--corpus, --data) to the config.json section
    holding its `sha256`: the run stores the file's absolute path, but the file may
    have moved. Given on this command line it replaces the stored path (made
    absolute; the command checks its SHA-256 against the run's); not given, the
    stored path must still be a file, else a ValueError says to pass the option.
    """
    relocatable = relocatable or {}
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
    moved = {k for k in given if k in relocatable and opts.get(k) is not None and saved.get(k) is not None}
    clashes = [
        f"{_flag(k)} {opts[k]} (the run has {saved.get(k)})"
        for k in sorted(given)
        if k not in overrides and k not in moved and k in defaults and opts.get(k) != saved.get(k)
    ]
    if clashes:
        raise ValueError(f"--resume continues a run with its own settings, but got {', '.join(clashes)}; "
                         f"{resume_rule(overrides, relocatable)}")
    merged = {**saved, **{k: opts[k] for k in given if k in overrides and k != "out"}}
    for k, section in relocatable.items():
        if k in moved:
            merged[k] = os.path.abspath(opts[k])
        elif saved.get(k) is not None and not Path(saved[k]).is_file():
            digest = (config.get(section) or {}).get("sha256") or "?"
            raise ValueError(f"--resume {resume}: the run's {_flag(k)} {saved[k]} is not there any more; "
                             f"pass {_flag(k)} FILE with the same contents (SHA-256 {digest[:12]}...)")
    return run_dir, config, merged


def latest_target(config: dict, key: str):
    """The length (`key`: steps or epochs) the run's last session aimed at: its last `resumed`
    entry's, else its options'. What a --resume without a new length continues up to."""
    resumed = config.get("resumed") or []
    if resumed and resumed[-1].get(key) is not None:
        return resumed[-1][key]
    return config["options"].get(key)
