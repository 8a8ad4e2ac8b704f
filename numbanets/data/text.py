"""Character corpora, vocabularies and truncated-BPTT batching.

The built-in corpus needs no download and no file outside the package: it is
the source text of a fixed list of Python standard-library modules, read from
the running interpreter (so its exact bytes depend on the Python version; its
name, size and hash go into every run's config.json).
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Plain-Python modules present in every CPython >= 3.10: about 1.1 MB of source.
BUILTIN_MODULES = (
    "argparse", "ast", "calendar", "collections", "configparser", "csv", "dataclasses",
    "difflib", "enum", "fractions", "functools", "glob", "gzip", "heapq", "inspect",
    "json.decoder", "json.encoder", "logging", "pathlib", "pprint", "random",
    "shutil", "statistics", "string", "textwrap", "threading", "tokenize", "typing", "zipfile",
)
BUILTIN_NAME = "builtin:python-stdlib"


@dataclass(frozen=True)
class Corpus:
    name: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def describe(self) -> dict:
        return {"name": self.name, "chars": len(self.text), "sha256": self.sha256}


def _module_source(name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return ""
    return Path(spec.origin).read_text(encoding="utf-8")


def builtin_corpus() -> Corpus:
    """The concatenated source of BUILTIN_MODULES (a missing module is skipped)."""
    parts = [_module_source(m) for m in BUILTIN_MODULES]
    return Corpus(BUILTIN_NAME, "\n".join(p for p in parts if p))


def load_corpus(path: str | None, encoding: str = "utf-8") -> Corpus:
    """A text file as a corpus, or the built-in corpus for None.

    ValueError (one line) for a missing file, an empty one, or bytes that do
    not decode, naming the byte offset.
    """
    if path is None:
        return builtin_corpus()
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"corpus {path} does not exist or is not a file")
    data = p.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"corpus {path} is not valid {encoding}: byte 0x{data[exc.start]:02x} at offset {exc.start} "
            f"({exc.reason}); choose another --encoding"
        ) from None
    except LookupError:
        raise ValueError(f"unknown --encoding {encoding!r}") from None
    if not text:
        raise ValueError(f"corpus {path} is empty")
    return Corpus(str(p), text)


class Vocabulary:
    """Characters <-> integer ids, sorted by code point."""

    def __init__(self, chars):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        if len(self.index) != len(self.chars):
            raise ValueError("vocabulary characters must be distinct")

    @classmethod
    def from_text(cls, text: str) -> "Vocabulary":
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        """Characters of `text` that are not in the vocabulary, in order of appearance."""
        seen = []
        for c in text:
            if c not in self.index and c not in seen:
                seen.append(c)
        return seen

    def encode(self, text: str) -> np.ndarray:
        missing = self.unknown(text)
        if missing:
            raise ValueError(f"characters not in the vocabulary: {' '.join(repr(c) for c in missing)}")
        return np.fromiter((self.index[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def unigram_entropy(ids: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats per character) of the character frequencies: the loss of the best
    model that ignores context."""
    counts = np.bincount(ids, minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


class BatchStream:
    """char-rnn batching: `batch_size` contiguous streams read in windows of `seq_len`.

    The ids are cut into `batch_size` equal rows; window k holds columns
    [k*seq_len, (k+1)*seq_len) as inputs and the next character of each as
    targets, both time-major (T, N). Consecutive windows continue each stream, so
    the hidden state can be carried across them. `position` (the next window)
    is all that exact resume needs.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, position: int = 0):
        per_stream = (len(ids) - 1) // batch_size
        self.windows = per_stream // seq_len
        if self.windows < 1:
            raise ValueError(
                f"text of {len(ids)} characters is too short for one batch of {batch_size} x {seq_len} "
                f"(needs at least {batch_size * seq_len + 1})"
            )
        used = self.windows * seq_len
        rows = np.arange(batch_size)[:, None] * per_stream
        cols = np.arange(used + 1)[None, :]
        streams = ids[rows + cols]  # (N, used + 1)
        self.inputs = np.ascontiguousarray(streams[:, :-1].T)  # (used, N)
        self.targets = np.ascontiguousarray(streams[:, 1:].T)
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.position = position % self.windows

    def next(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """(inputs (T, N), targets (T, N), wrapped): wrapped is True at the start of a new epoch."""
        k = self.position
        sl = slice(k * self.seq_len, (k + 1) * self.seq_len)
        self.position = (k + 1) % self.windows
        return self.inputs[sl], self.targets[sl], k == 0

    def __iter__(self):
        """All windows once, from the first."""
        for k in range(self.windows):
            sl = slice(k * self.seq_len, (k + 1) * self.seq_len)
            yield self.inputs[sl], self.targets[sl]
