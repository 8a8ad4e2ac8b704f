"""The network to explain and its test images: from a train-cnn run folder, a checkpoint file or a JSON
snapshot (`nbnets export-json`), through runner.cnn's own readers.

The test images are the run's: the same data (its --data file, or the built-in digits) and the same
stratified split (its --test-fraction, split seed 0), standardised with the network's own
normalisation (the mean and std its training set had), so every image is what the network saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numbanets.data.images import DIGITS_NAME
from numbanets.nn import arch
from runner.cnn import checkpoint, export_json
from runner.cnn.model import load_data
from runner.common.runs import read_json
from runner.common.training import CHECKPOINT_FILE

DEFAULT_TEST_FRACTION = 0.2  # train-cnn's default, for a snapshot whose run folder is gone


@dataclass
class Loaded:
    model: object            # numbanets.nn.Sequential from numbanets.nn.arch.build, the trained weights, on the host
    spec: str
    input_shape: tuple
    classes: int
    data: object             # numbanets.data.images.ImageSet, standardised as the network expects
    source: dict = field(default_factory=dict)  # what config.json records about where the network came from


def _run_config(folder: Path) -> dict | None:
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        config = read_json(path)
    except (OSError, ValueError):
        return None
    return config if config.get("command") == "train-cnn" else None


def _data_options(config: dict | None, data_name: str | None, data: str | None, where: str) -> dict:
    """load_data's options: the run's data file and split, or --data, or the built-in digits."""
    options = (config or {}).get("options", {})
    test_fraction = options.get("test_fraction", DEFAULT_TEST_FRACTION)
    if data is not None:
        return {"data": data, "test_fraction": test_fraction}
    if config is not None:
        path = options.get("data")
        if path is not None and not Path(path).is_file():
            raise ValueError(f"{where}: the run's data file {path} is not there any more; pass --data FILE")
        return {"data": path, "test_fraction": test_fraction}
    if data_name in (None, DIGITS_NAME):
        return {"data": None, "test_fraction": test_fraction}
    raise ValueError(f"{where}: the network was trained on {data_name!r}, whose run folder is not beside the "
                     f"snapshot; pass --data FILE")


def _restandardise(data, mean: float, std: float):
    """Re-express data's images with the network's normalisation (a no-op when they agree)."""
    if data.mean == mean and data.std == std:
        return data
    for name in ("x_train", "x_test"):
        x = getattr(data, name).astype(np.float64) * data.std + data.mean
        setattr(data, name, np.ascontiguousarray((x - mean) / std, dtype=getattr(data, name).dtype))
    data.mean, data.std = mean, std
    return data


def _from_checkpoint(path: Path, data: str | None) -> Loaded:
    arrays, meta = checkpoint.load(path)
    spec, shape = meta["arch"], tuple(int(s) for s in meta["input_shape"])
    dtype = np.dtype(meta.get("dtype", "float32"))
    model = arch.build(arch.parse(spec), shape, np.random.default_rng(0), dtype)
    model.load_state_dict(checkpoint.params(arrays))
    config = _run_config(path.parent)
    images = load_data(_data_options(config, meta.get("data"), data, str(path)), dtype)
    if config is not None and data is not None:
        saved = config.get("data", {}).get("sha256")
        if saved and saved != images.info.get("sha256"):
            raise ValueError(f"--data {data} is not the run's data (sha256 {str(images.info.get('sha256'))[:12]}..., "
                             f"the run used {saved[:12]}...)")
    norm = meta.get("normalisation", {"mean": images.mean, "std": images.std})
    source = {"path": str(path), "kind": "checkpoint", "epoch": meta.get("epoch"), "step": meta.get("step")}
    return Loaded(model, spec, shape, int(meta.get("classes", 0)) or None, _restandardise(images, **norm), source)


def _from_snapshot(path: Path, data: str | None) -> Loaded:
    snap = export_json.read(path)
    model = arch.build(arch.parse(snap.arch), tuple(snap.input_shape), np.random.default_rng(0), snap.dtype)
    export_json.load_into(model, snap, source=str(path))
    origin = snap.meta.get("source", {}) if isinstance(snap.meta.get("source"), dict) else {}
    ckpt = origin.get("checkpoint")
    config = _run_config(Path(ckpt).parent) if isinstance(ckpt, str) else None
    images = load_data(_data_options(config, origin.get("data"), data, str(path)), snap.dtype)
    norm = snap.meta.get("normalisation")
    if not (isinstance(norm, dict) and {"mean", "std"} <= set(norm)):
        norm = {"mean": images.mean, "std": images.std}
    source = {"path": str(path), "kind": "snapshot", "epoch": origin.get("epoch"), "step": origin.get("step")}
    return Loaded(model, snap.arch, tuple(snap.input_shape), int(snap.meta.get("classes", 0)) or None,
                  _restandardise(images, float(norm["mean"]), float(norm["std"])), source)


def load(source, data: str | None = None) -> Loaded:
    """The network of SOURCE (a train-cnn run folder, its checkpoint.npz, or a JSON snapshot) and its test
    images; ValueError naming what is wrong."""
    path = Path(source)
    if path.is_dir():
        ckpt = path / CHECKPOINT_FILE
        if not ckpt.is_file():
            raise ValueError(f"{path}: not a train-cnn run folder (no {CHECKPOINT_FILE})")
        loaded = _from_checkpoint(ckpt, data)
        loaded.source["kind"] = "run"
        loaded.source["path"] = str(path)
    elif path.is_file() and path.suffix.lower() == ".json":
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        loaded = _from_snapshot(path, data)
    elif path.is_file():
        loaded = _from_checkpoint(path, data)
    else:
        raise ValueError(f"{path}: no such run folder, checkpoint or snapshot")
    d = loaded.data
    if d.image_shape != tuple(loaded.input_shape):
        raise ValueError(f"{path}: the network takes {'x'.join(map(str, loaded.input_shape))} images, the data has "
                         f"{'x'.join(map(str, d.image_shape))}")
    rows = arch.plan(arch.parse(loaded.spec), loaded.input_shape)
    loaded.classes = int(rows[-1].out_shape[0]) if len(rows[-1].out_shape) == 1 else loaded.classes
    top = int(d.y_test.max(initial=0))
    if loaded.classes is None or top >= loaded.classes:
        raise ValueError(f"{path}: the test labels go up to {top}, the network has {loaded.classes} outputs")
    return loaded
