"""Device-independent checkpoints and atomic file writes.

    save("run/checkpoint.npz", arrays, meta)   -> run/checkpoint.npz and run/checkpoint.json
    arrays, meta = load("run/checkpoint.npz")

`arrays` is a dict name -> array (numpy or CUDA device arrays; they are stored
as host numpy arrays, so a checkpoint written on a GPU loads on a CPU); `meta`
is a JSON-able dict (numpy scalars and arrays, tuples and paths are converted).
The .npz holds the arrays plus the meta JSON (entry "__numbanets_meta__"), so
it is complete on its own and its arrays and meta always belong together; the
.json beside it is the same meta, for people and tools. load() returns meta
with the two keys save() adds: "format" = "numbanets-checkpoint" and "version".

Writes are atomic: the bytes go to a temporary file in the same folder, are
fsync'ed and renamed over the target with os.replace, so a crash or an error
leaves either the old file or the new one, never half of one, and no
temporary file behind. The temporary file is created like any other program
creates a file, mode 0666 less the user's umask (tempfile.mkstemp's 0600 would
leave every result readable by its owner alone).

load() reads the path it is given when that is a file, else the .npz the name
implies, and names the given path in its errors; a file that is not a zip
archive (a text file, random bytes: np.load would try to unpickle it) is
"not an .npz archive".
"""

from __future__ import annotations

import io
import json
import os
import secrets
from pathlib import Path

import numpy as np

__all__ = ["FORMAT", "VERSION", "CheckpointError", "atomic_write_bytes", "atomic_write_text", "save", "load",
           "to_jsonable", "npz_refusal"]

FORMAT = "numbanets-checkpoint"
VERSION = 1
_META_KEY = "__numbanets_meta__"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt or not a numbanets checkpoint."""


# --------------------------------------------------------------------------- atomic writes

def atomic_write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` atomically: temporary file in the same folder, fsync, os.replace."""
    path = Path(path)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """(fd, name) of a new file `.NAME.<random>.tmp` beside `path`, mode 0666 less the umask (O_EXCL)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically (see atomic_write_bytes)."""
    atomic_write_bytes(path, text.encode(encoding))


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable where the OS allows opening a folder (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- meta

def to_jsonable(value):
    """`value` with numpy scalars/arrays, tuples, sets and paths turned into JSON types.

    Non-finite floats stay floats (json writes them as NaN / Infinity, which
    Python's json reads back). TypeError names anything else that JSON cannot hold.
    """
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"meta keys must be strings, got {k!r}")
            out[k] = to_jsonable(v)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"meta value {value!r} of type {type(value).__name__} cannot be stored as JSON")


# --------------------------------------------------------------------------- save / load

def _paths(path) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".npz")
    elif path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    return path, path.with_suffix(".json")


def save(path, arrays: dict, meta: dict | None = None) -> Path:
    """Write `<name>.npz` (arrays + meta) and `<name>.json` (meta) atomically; returns the .npz path.

    The folder is created when missing."""
    from numbanets.device import to_host

    npz_path, json_path = _paths(path)
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    for reserved in ("format", "version"):
        if reserved in meta:
            raise ValueError(f"meta key {reserved!r} is reserved for the checkpoint format")
    for name in arrays:
        if not isinstance(name, str) or not name or name == _META_KEY:
            raise ValueError(f"array names must be non-empty strings other than {_META_KEY!r}, got {name!r}")
    full = {"format": FORMAT, "version": VERSION, **to_jsonable(meta)}
    text = json.dumps(full, indent=2, sort_keys=True)
    host = {name: np.asarray(to_host(a)) for name, a in arrays.items()}
    for name, a in host.items():
        if a.dtype == object:
            raise TypeError(f"array {name!r} has dtype object, which a checkpoint cannot hold")
    host[_META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **host)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(npz_path, buf.getvalue())
    atomic_write_text(json_path, text + "\n")
    return npz_path


def npz_refusal(path) -> str | None:
    """Why the file at `path` is not an .npz archive, or None when it starts as a zip archive does.

    np.load would unpickle anything that is neither a zip archive nor an .npy array
    and, with allow_pickle=False, complain about pickled data instead. OSError when
    the file cannot be read."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return None
    return "a single .npy array, not an .npz archive" if head == b"\x93NUMPY" else "not an .npz archive"


def load(path) -> tuple[dict, dict]:
    """(arrays, meta) of a checkpoint written by save(); CheckpointError (a ValueError) otherwise.

    `path` may name the .npz or the .json (or the name without .npz); arrays are host numpy arrays.
    Errors name `path` as given.
    """
    given = Path(path)
    npz_path = given if given.is_file() and given.suffix != ".json" else _paths(given)[0]
    if not npz_path.is_file():
        why = ("the file does not exist" if npz_path == given
               else f"there is no {npz_path} beside it" if given.is_file()
               else f"neither {given} nor {npz_path} exists")
        raise CheckpointError(f"{given} is not a numbanets checkpoint: {why}")

    def foreign(why):
        return CheckpointError(f"{given} is not a numbanets checkpoint: {why}")

    try:
        refusal = npz_refusal(npz_path)
    except OSError as exc:
        raise foreign(f"it cannot be read ({exc.strerror or exc})") from None
    if refusal is not None:
        raise foreign(refusal)
    try:
        data = np.load(npz_path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - whatever np.load trips over, the file is not ours
        raise foreign(f"it cannot be read as an .npz archive ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise foreign("it is a single .npy array, not an .npz archive")
    try:
        with data:
            if _META_KEY not in data.files:
                raise foreign("it has no numbanets meta entry (written by another program?)")
            arrays = {name: data[name] for name in data.files}
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - a truncated member: zlib, zipfile, EOF or format errors
        raise foreign(f"the file is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    raw = arrays.pop(_META_KEY)
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise foreign(f"its meta entry is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise foreign(f"its meta has no format marker {FORMAT!r}")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise foreign(f"its meta has no valid format version (got {version!r})")
    if version > VERSION:
        raise foreign(f"format version {version!r} is newer than this numbanets reads ({VERSION})")
    return arrays, meta

