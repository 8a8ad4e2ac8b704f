"""A readable JSON snapshot of a train-cnn network, like ConvNetJS's `net.toJSON()`.

    nbnets export-json RUN_DIR            -> RUN_DIR/model.json
    nbnets train-cnn --init-from FILE.json   starts from its weights
    nbnets export-json RUN_DIR --format convnetjs   ConvNetJS's own layout (runner/cnn/convnetjs.py)

`read` also takes a ConvNetJS net.toJSON() snapshot: any JSON object without this
format's "format" marker goes to convnetjs.read.

The file holds the spec (`arch`), the input shape and one entry per layer with
ConvNetJS's names where they fit: `layer_type` (input, conv, pool, relu, tanh,
sigmoid, fc, dropout, softmax), `sx`/`sy` (kernel width/height), `stride`,
`pad`, `in_depth`, `out_depth`, `out_sx`, `out_sy`, `num_inputs`, `drop_prob`,
and the weights as `filters` (one entry per output map or neuron) and `biases`.
Unlike ConvNetJS the weights are nested lists in PyTorch's layouts: a conv
filter is [C/groups][KH][KW], an fc filter is flat over its input in (C, H, W)
order (row-major NCHW flattening), so the arrays move to and from PyTorch as is.

Exact round trip: every float32 weight is written as the shortest decimal that
reads back to the same float32 (numpy's repr of the float32; where a decimal
parsed as float64 and rounded to float32 would land elsewhere, the exact
float64 value of the float32 is written instead). Reading casts to the file's
dtype, so export -> import gives the same bits.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numbanets import shapes
from numbanets.checkpoint import atomic_write_text
from numbanets.device import to_host
from numbanets.nn import arch
from runner.cnn import checkpoint, convnetjs

FORMAT = "numbanets-convnet"
VERSION = 1
NUMBERS_PER_LINE = 8


# --------------------------------------------------------------------------- exact floats

def exact_floats(a: np.ndarray):
    """Nested Python lists of floats that read back to exactly `a` (float32 or float64) bit for bit."""
    a = np.asarray(a)
    if a.dtype == np.float64:
        return a.tolist()
    if a.dtype != np.float32:
        raise TypeError(f"weights must be float32 or float64, got {a.dtype}")
    flat = a.ravel()
    short = np.array([float(str(v)) for v in flat], dtype=np.float64)  # numpy's shortest float32 repr
    back = short.astype(np.float32)
    bad = (back.view(np.uint32) != flat.view(np.uint32)) & ~np.isnan(flat)
    if bad.any():  # never seen in practice; the float64 value of the float32 is always exact
        short[bad] = flat[bad].astype(np.float64)
    return short.reshape(a.shape).tolist()


# --------------------------------------------------------------------------- writing

def _scalar(v) -> str:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    raise TypeError(f"cannot write {type(v).__name__} to JSON")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def dumps(value, indent: int = 0) -> str:
    """JSON text with objects indented and number lists kept compact (NUMBERS_PER_LINE per line)."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {dumps(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        if all(_is_number(v) for v in value):
            parts = [_scalar(v) for v in value]
            if len(parts) <= NUMBERS_PER_LINE:
                return "[" + ", ".join(parts) + "]"
            lines = [", ".join(parts[i:i + NUMBERS_PER_LINE]) for i in range(0, len(parts), NUMBERS_PER_LINE)]
            return "[\n" + inner + (",\n" + inner).join(lines) + "\n" + pad + "]"
        if all(isinstance(v, list) and v and all(_is_number(x) for x in v) and len(v) <= NUMBERS_PER_LINE
               for v in value) and len(value) <= NUMBERS_PER_LINE:
            return "[" + ", ".join(dumps(v) for v in value) + "]"  # a small matrix (a 3x3 kernel) on one line
        return "[\n" + ",\n".join(inner + dumps(v, indent + 2) for v in value) + "\n" + pad + "]"
    return _scalar(value)


def _dims(shape) -> dict:
    if len(shape) == 3:
        return {"out_depth": shape[0], "out_sy": shape[1], "out_sx": shape[2]}
    return {"out_depth": shape[0], "out_sy": 1, "out_sx": 1}


def _stride(pair):
    return pair[0] if pair[0] == pair[1] else list(pair)


def to_dict(model, spec: str, input_shape, extra: dict | None = None) -> dict:
    """The snapshot of `model` (built by numbanets.nn.arch.build from `spec`) as a JSON-able dict."""
    layers = arch.parse(spec)
    rows = arch.plan(layers, input_shape)
    shape = tuple(int(s) for s in input_shape)
    dtype = None
    out = [{"layer_type": "input", **_dims(shape)}]
    for (layer, module), row in zip(model.arch_layers, rows):
        entry = {"layer_type": layer.kind if layer.kind != "act" else layer.activation, "token": layer.token}
        if layer.kind in ("conv", "pool"):
            stride = layer.stride or layer.kernel
            before, after = shapes.resolve_padding(layer.padding, shape[1:], layer.kernel, stride)
            entry.update(sx=layer.kernel[1], sy=layer.kernel[0], stride=_stride(stride), pad=layer.padding,
                         pad_before=list(before), pad_after=list(after), in_depth=shape[0])
            if layer.kind == "conv":
                entry["groups"] = layer.groups
        if layer.kind == "fc":
            entry["num_inputs"] = math.prod(shape)
        if layer.kind == "dropout":
            entry["drop_prob"] = layer.p
        entry.update(_dims(row.out_shape))
        if layer.kind in ("conv", "fc"):
            w = to_host(module.params["w"])
            dtype = w.dtype
            entry["filters"] = exact_floats(w.reshape(w.shape[0], -1) if layer.kind == "fc" else w)
            entry["biases"] = exact_floats(to_host(module.params["b"])) if "b" in module.params else None
        out.append(entry)
        shape = row.out_shape
    out.append({"layer_type": "softmax", "num_inputs": shape[0], "out_depth": shape[0], "out_sy": 1, "out_sx": 1,
                "num_classes": shape[0]})
    return {
        "format": FORMAT,
        "version": VERSION,
        "arch": spec,
        "input_shape": [int(s) for s in input_shape],
        "classes": int(shape[0]),
        "dtype": np.dtype(dtype or np.float32).name,
        **(extra or {}),
        "layers": out,
    }


def write(path, model, spec: str, input_shape, extra: dict | None = None) -> Path:
    path = Path(path)
    atomic_write_text(path, dumps(to_dict(model, spec, input_shape, extra)) + "\n")
    return path


# --------------------------------------------------------------------------- reading

@dataclass
class Snapshot:
    arch: str
    input_shape: tuple
    dtype: np.dtype
    weights: list = field(default_factory=list)  # per spec layer: {"w": array, "b": array} or {}
    meta: dict = field(default_factory=dict)


def _array(path, where, value, shape, dtype, name) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise ValueError(f"{path}: {where}: {name} is not a regular array of numbers") from None
    if a.shape != tuple(shape):
        raise ValueError(f"{path}: {where}: {name} has shape {a.shape}, the layer needs {tuple(shape)}")
    return a.astype(dtype)


def read(path) -> Snapshot:
    """A snapshot written by `write` / `nbnets export-json`; ValueError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--init-from {path}: no such file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if convnetjs.is_convnetjs(doc):  # a ConvNetJS net.toJSON() snapshot
        spec, shape, weights, meta = convnetjs.read(path, doc)
        return Snapshot(spec, shape, np.dtype(np.float32), weights, meta)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not a numbanets network snapshot (no \"format\": \"{FORMAT}\"; "
                         f"write one with nbnets export-json RUN_DIR)")
    if not isinstance(doc.get("version"), int) or doc["version"] > VERSION:
        raise ValueError(f"{path}: snapshot version {doc.get('version')!r} is not one this numbanets reads ({VERSION})")
    spec, shape = doc.get("arch"), doc.get("input_shape")
    if not isinstance(shape, list) or len(shape) not in (1, 3) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ValueError(f"{path}: input_shape must be [C, H, W], got {shape!r}")
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{path}: the snapshot has no \"arch\" spec string")
    layers = arch.parse(spec)
    rows = arch.plan(layers, tuple(shape))
    try:
        dtype = np.dtype(doc.get("dtype", "float32"))
    except TypeError:
        dtype = None
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"{path}: dtype must be float32 or float64, got {doc.get('dtype')!r}")
    entries = doc.get("layers")
    if not isinstance(entries, list) or len(entries) != len(layers) + 2:
        got = len(entries) if isinstance(entries, list) else "none"
        raise ValueError(f"{path}: expected {len(layers) + 2} layers (input, the {len(layers)} of the arch, "
                         f"softmax), got {got}")
    weights = []
    in_shape = tuple(shape)
    for i, (layer, row, entry) in enumerate(zip(layers, rows, entries[1:-1]), start=1):
        where = f"layer {i} ({layer.token})"
        kind = layer.kind if layer.kind != "act" else layer.activation
        if not isinstance(entry, dict) or entry.get("layer_type") != kind:
            got = entry.get("layer_type") if isinstance(entry, dict) else type(entry).__name__
            raise ValueError(f"{path}: {where}: layer_type should be {kind!r}, got {got!r}")
        found = {}
        if layer.kind == "conv":
            c = in_shape[0]
            found["w"] = _array(path, where, entry.get("filters"),
                                (layer.maps, c // layer.groups, *layer.kernel), dtype, "filters")
            if layer.bias:
                found["b"] = _array(path, where, entry.get("biases"), (layer.maps,), dtype, "biases")
        elif layer.kind == "fc":
            found["w"] = _array(path, where, entry.get("filters"), (layer.units, math.prod(in_shape)), dtype,
                                "filters")
            found["b"] = _array(path, where, entry.get("biases"), (layer.units,), dtype, "biases")
        weights.append(found)
        in_shape = row.out_shape
    meta = {k: v for k, v in doc.items() if k not in ("layers",)}
    return Snapshot(spec, tuple(shape), dtype, weights, meta)


def load_into(model, snap: Snapshot, source: str = "snapshot") -> None:
    """Copy a snapshot's weights into `model` (built from the same spec), cast to the model's dtype."""
    if len(model.arch_layers) != len(snap.weights):
        raise ValueError(f"{source}: the snapshot has {len(snap.weights)} layers, the network {len(model.arch_layers)}")
    names = {id(child): name for name, child in model.children.items()}
    state = {}
    for (layer, module), found in zip(model.arch_layers, snap.weights):
        for key, value in found.items():
            p = module.params[key]
            state[f"{names[id(module)]}.{key}"] = value.astype(np.dtype(p.dtype))
    model.load_state_dict(state)


# --------------------------------------------------------------------------- export a run

def export_run(source, output=None, fmt: str = "numbanets") -> tuple[Path, dict]:
    """Write the snapshot of a train-cnn run folder (its checkpoint.npz) or checkpoint file.

    `fmt` numbanets: this module's format; convnetjs: what ConvNetJS's Net.fromJSON reads
    (runner/cnn/convnetjs.py). Returns (path written, facts for the one-line report). Default
    output: model.json (model.convnetjs.json) beside the checkpoint.
    """
    if fmt not in ("numbanets", "convnetjs"):
        raise ValueError(f"--format must be numbanets or convnetjs, got {fmt!r}")
    source = Path(source)
    if source.is_dir():
        ckpt = source / "checkpoint.npz"
        if not ckpt.is_file():
            raise ValueError(f"{source}: not a train-cnn run folder (no checkpoint.npz)")
    elif source.is_file():
        ckpt = source
    else:
        raise ValueError(f"{source}: no such run folder or checkpoint file")
    arrays, meta = checkpoint.load(ckpt)
    spec, shape = meta["arch"], tuple(meta["input_shape"])
    dtype = np.dtype(meta.get("dtype", "float32"))
    model = arch.build(arch.parse(spec), shape, np.random.default_rng(0), dtype)
    model.load_state_dict(checkpoint.params(arrays))
    extra = {
        "source": {"checkpoint": str(ckpt), "epoch": meta.get("epoch"), "step": meta.get("step"),
                   "data": meta.get("data")},
        "normalisation": meta.get("normalisation", {"mean": 0.0, "std": 1.0}),
        "note": "inputs are (x - normalisation.mean) / normalisation.std; fc filters flatten (C, H, W) row-major",
    }
    if fmt == "convnetjs":
        norm = extra["normalisation"]
        extra = {"numbanets": {"arch": spec, "input_shape": list(shape), "source": extra["source"],
                               "normalisation": norm,
                               "note": "feed ConvNetJS a Vol(W, H, C) of (x - mean) / std; see docs/commands/export-json.md"}}
        doc = convnetjs.to_dict(model, spec, shape, exact_floats, extra)  # ValueError: a layer ConvNetJS lacks
        out = Path(output) if output is not None else ckpt.parent / "model.convnetjs.json"
        atomic_write_text(out, dumps(doc) + "\n")
        return out, {"arch": spec, "epoch": meta.get("epoch"), "parameters": model.num_parameters()}
    out = Path(output) if output is not None else ckpt.parent / "model.json"
    write(out, model, spec, shape, extra)
    return out, {"arch": spec, "epoch": meta.get("epoch"), "parameters": model.num_parameters()}
