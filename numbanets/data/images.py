"""Image classification data: scikit-learn's handwritten digits, or any set saved as .npz.

    load_digits(test_fraction, split_seed)          8x8 digits shipped inside scikit-learn
    load_npz(path, test_fraction, split_seed)       arrays x (N, C, H, W) or (N, H, W) and y (N,)

Both return an `ImageSet`: float arrays in NCHW, int64 labels, a stratified
held-out test split (scikit-learn's train_test_split with stratify=y), and the
scalar normalisation (mean, std of the training images) already applied.

An .npz may also carry its own split as `x_test`, `y_test` (MNIST and CIFAR-10
come that way); then no split is drawn. Bad files raise a ValueError that names
the file and what is wrong with it (a file that is not a zip archive at all:
"not an .npz archive").
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numbanets.checkpoint import npz_refusal

DIGITS_NAME = "builtin:sklearn-digits"


@dataclass
class ImageSet:
    name: str
    x_train: np.ndarray  # (N, C, H, W) float
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    mean: float = 0.0
    std: float = 1.0
    info: dict = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.x_train.shape[1:])

    def describe(self) -> dict:
        return {
            "name": self.name,
            "image_shape": list(self.image_shape),
            "classes": self.classes,
            "train": int(self.x_train.shape[0]),
            "test": int(self.x_test.shape[0]),
            "normalisation": {"mean": self.mean, "std": self.std},
            **self.info,
        }


def stratified_split(x, y, test_fraction: float, split_seed: int):
    """(x_train, x_test, y_train, y_test): a held-out split with every class in proportion."""
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise ValueError(f"--test-fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    counts = np.bincount(y)
    present = counts[counts > 0]
    if present.min() < 2:
        rare = int(np.flatnonzero(counts == present.min())[0])
        raise ValueError(f"class {rare} has a single image: a stratified split needs at least 2 per class")
    n_test = int(np.ceil(test_fraction * len(y)))
    if n_test < len(present) or len(y) - n_test < len(present):
        raise ValueError(
            f"a test fraction of {test_fraction} of {len(y)} images cannot hold every one of "
            f"the {len(present)} classes on both sides of the split"
        )
    return train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=split_seed)


def _finish(name, x_train, y_train, x_test, y_test, dtype, info, classes=None) -> ImageSet:
    """Scale to floats, standardise with the training mean/std, fix dtypes."""
    x_train = x_train.astype(np.float64)
    x_test = x_test.astype(np.float64)
    mean = float(x_train.mean())
    std = float(x_train.std()) or 1.0
    x_train = np.ascontiguousarray((x_train - mean) / std, dtype=dtype)
    x_test = np.ascontiguousarray((x_test - mean) / std, dtype=dtype)
    if classes is None:
        classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    return ImageSet(name, x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64),
                    classes, mean, std, info)


def load_digits(test_fraction: float = 0.2, split_seed: int = 0, dtype=np.float32) -> ImageSet:
    """scikit-learn's 1,797 handwritten digits (8x8, values 0..16) as (N, 1, 8, 8), 10 classes."""
    from sklearn.datasets import load_digits as _load

    digits = _load()
    x = digits.images.reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = stratified_split(x, y, test_fraction, split_seed)
    info = {"test_fraction": test_fraction, "split_seed": split_seed, "split": "stratified"}
    return _finish(DIGITS_NAME, x_train, y_train, x_test, y_test, dtype, info, classes=10)


def _as_images(path, key, x) -> np.ndarray:
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ValueError(f"{path}: '{key}' must be a numeric array, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[:, None, :, :]
    if x.ndim != 4:
        raise ValueError(f"{path}: '{key}' must have shape (N, C, H, W) or (N, H, W), got {x.shape}")
    if min(x.shape) < 1:
        raise ValueError(f"{path}: '{key}' is empty (shape {x.shape})")
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3) and x.shape[1] > 4:
        raise ValueError(
            f"{path}: '{key}' has shape {x.shape}, which looks channels-last (N, H, W, C); "
            f"save it as (N, C, H, W), e.g. x.transpose(0, 3, 1, 2)"
        )
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise ValueError(f"{path}: '{key}' holds NaN or infinite values")
    return x


def _as_labels(path, key, y, n, xkey) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{path}: '{key}' must be 1-D (one class index per image), got shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"{path}: '{xkey}' holds {n} images but '{key}' holds {len(y)} labels")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError(f"{path}: '{key}' must hold whole-number class indices, got non-integer values")
    elif not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{path}: '{key}' must hold integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise ValueError(f"{path}: '{key}' holds a negative label {int(y.min())}; labels must be 0..classes-1")
    return y


def load_npz(path, test_fraction: float = 0.2, split_seed: int = 0, dtype=np.float32) -> ImageSet:
    """A data set saved with np.savez: `x` (N, C, H, W) or (N, H, W), `y` (N,) class indices.

    Optional `x_test`/`y_test` give a fixed test split; otherwise a stratified
    split of `test_fraction` is drawn. Integer images (uint8 0..255) are fine:
    every image is standardised with the training set's mean and std.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--data {path}: no such file")
    try:
        refusal = npz_refusal(path)  # a text file or random bytes: np.load would speak of pickled data
    except OSError as exc:
        raise ValueError(f"--data {path}: cannot be read ({exc.strerror or exc})") from None
    if refusal is not None:
        raise ValueError(f"--data {path}: {refusal}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"--data {path}: not a readable .npz file ({exc})") from None
    except ValueError as exc:  # object arrays need pickle: refuse them
        raise ValueError(f"--data {path}: cannot read it without pickle ({exc})") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise ValueError(
            f"--data {path}: missing array {' and '.join(map(repr, missing))} "
            f"(found: {', '.join(sorted(arrays)) or 'none'}); save with np.savez(file, x=images, y=labels)"
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise ValueError(f"--data {path}: give both 'x_test' and 'y_test' or neither")
    x = _as_images(path, "x", arrays["x"])
    y = _as_labels(path, "y", arrays["y"], x.shape[0], "x")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    info = {"file": str(path), "sha256": digest}
    if "x_test" in arrays:
        x_test = _as_images(path, "x_test", arrays["x_test"])
        y_test = _as_labels(path, "y_test", arrays["y_test"], x_test.shape[0], "x_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise ValueError(f"{path}: 'x_test' images are {x_test.shape[1:]} but 'x' images are {x.shape[1:]}")
        info["split"] = "given (x_test, y_test)"
        return _finish(path.name, x, y, x_test, y_test, dtype, info)
    x_train, x_test, y_train, y_test = stratified_split(x, y, test_fraction, split_seed)
    info.update({"test_fraction": test_fraction, "split_seed": split_seed, "split": "stratified"})
    return _finish(path.name, x_train, y_train, x_test, y_test, dtype, info)
