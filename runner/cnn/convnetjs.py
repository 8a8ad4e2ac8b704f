"""ConvNetJS 0.3.0 snapshots, both ways: what its `Net.fromJSON` reads and its `net.toJSON()` writes.

    nbnets export-json RUN_DIR --format convnetjs     -> model.convnetjs.json for ConvNetJS
    nbnets train-cnn --init-from net.json             a ConvNetJS toJSON() snapshot (detected by content)

ConvNetJS's layout (build/convnet.js of the npm package convnetjs@0.3.0):

- A `Vol` is `{sx, sy, depth, w}` with `w[((sx * y) + x) * depth + d]`: depth varies fastest, so a
  volume is stored (y, x, d), i.e. HWC, where numbanets stores CHW.
- A conv filter is a Vol(sx=KW, sy=KH, depth=C): numbanets' w[o] (C, KH, KW) goes to (KH, KW, C).
  One `stride` and one `pad` serve both axes; out_sx = floor((in_sx + 2 pad - sx) / stride + 1).
- An fc filter is a Vol(1, 1, num_inputs) dotted with the input volume's `w` as stored, so its
  input is flattened in (y, x, d) order: numbanets' fc rows, flat over (C, H, W), are permuted.
- Max pooling skips taps outside the input (padding acts as -inf, like numbanets) but starts its
  running max at -99999, so a window lying wholly in the padding yields -99999 (numbanets: -inf;
  such windows need pad >= kernel and never occur for a sensible spec).
- Dropout at prediction time multiplies by drop_prob (ConvNetJS's own choice; numbanets' inverted
  dropout is the identity in eval mode), so a net with dropout predicts differently there.
- `softmax` follows the last fc; `input` carries out_sx/out_sy/out_depth.

What ConvNetJS cannot express is refused (ValueError, one line naming the layer and why).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from numbanets import shapes
from numbanets.device import to_host
from numbanets.nn import arch

ACTIVATIONS = ("relu", "tanh", "sigmoid")


# --------------------------------------------------------------------------- numbanets -> ConvNetJS

def _vol(a: np.ndarray, sx: int, sy: int, depth: int, exact) -> dict:
    return {"sx": sx, "sy": sy, "depth": depth, "w": exact(np.ascontiguousarray(a).ravel())}


def _refuse(i, layer, why) -> ValueError:
    return ValueError(f"layer {i} ({layer.token}): ConvNetJS cannot express it: {why}")


def _pad(i, layer, hw, stride) -> int:
    before, after = shapes.resolve_padding(layer.padding, hw, layer.kernel, stride)
    if before[0] != after[0] or before[1] != after[1]:
        raise _refuse(i, layer, f"asymmetric padding {tuple(before)} before, {tuple(after)} after "
                                "(ConvNetJS pads the same on every side)")
    if before[0] != before[1]:
        raise _refuse(i, layer, f"padding {before[0]} rows but {before[1]} columns (ConvNetJS has one pad)")
    return int(before[0])


def to_dict(model, spec: str, input_shape, exact, extra: dict | None = None) -> dict:
    """The ConvNetJS `Net.toJSON()` form of `model` (built from `spec`); `exact` turns arrays into lists."""
    layers = arch.parse(spec)
    rows = arch.plan(layers, input_shape)
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 1:
        shape = (shape[0], 1, 1)
    out = [{"out_depth": shape[0], "out_sx": shape[2], "out_sy": shape[1], "layer_type": "input"}]
    for i, ((layer, module), row) in enumerate(zip(model.arch_layers, rows), start=1):
        c, h, w = shape
        o = tuple(row.out_shape) if len(row.out_shape) == 3 else (row.out_shape[0], 1, 1)
        dims = {"out_depth": o[0], "out_sx": o[2], "out_sy": o[1]}
        if layer.kind in ("conv", "pool"):
            stride = layer.stride or layer.kernel
            if stride[0] != stride[1]:
                raise _refuse(i, layer, f"stride {stride[0]}x{stride[1]} (ConvNetJS has one stride)")
            pad = _pad(i, layer, (h, w), stride)
            kh, kw = layer.kernel
            s = int(stride[0])
            if (math.floor((w + 2 * pad - kw) / s + 1), math.floor((h + 2 * pad - kh) / s + 1)) != (o[2], o[1]):
                raise _refuse(i, layer, "ConvNetJS's output size floor((in + 2 pad - k) / stride + 1) differs")
            entry = {"sx": kw, "sy": kh, "stride": s, "in_depth": c, **dims, "layer_type": layer.kind}
            if layer.kind == "conv":
                if layer.groups != 1:
                    raise _refuse(i, layer, f"groups={layer.groups} (ConvNetJS convolves all input maps)")
                wt = to_host(module.params["w"])  # (F, C, KH, KW) -> F Vols (KH, KW, C)
                b = to_host(module.params["b"]) if "b" in module.params else np.zeros(layer.maps, wt.dtype)
                entry.update(l1_decay_mul=0.0, l2_decay_mul=1.0, pad=pad,
                             filters=[_vol(f.transpose(1, 2, 0), kw, kh, c, exact) for f in wt],
                             biases=_vol(b, 1, 1, layer.maps, exact))
            else:
                entry["pad"] = pad
        elif layer.kind == "act":
            entry = {**dims, "layer_type": layer.activation}
        elif layer.kind == "fc":
            wt = to_host(module.params["w"]).reshape(layer.units, c, h, w).transpose(0, 2, 3, 1)  # rows to (y, x, d)
            entry = {**dims, "layer_type": "fc", "num_inputs": c * h * w, "l1_decay_mul": 0.0, "l2_decay_mul": 1.0,
                     "filters": [_vol(f, 1, 1, c * h * w, exact) for f in wt],
                     "biases": _vol(to_host(module.params["b"]), 1, 1, layer.units, exact)}
        elif layer.kind == "dropout":
            entry = {**dims, "layer_type": "dropout", "drop_prob": layer.p}
        else:
            why = "global average pooling has no ConvNetJS layer" if layer.kind == "gap" else "no such layer"
            raise _refuse(i, layer, why)
        out.append(entry)
        shape = o
    if layers[-1].kind != "fc":
        raise ValueError(f"the last layer ({layers[-1].token}) must be fc: ConvNetJS's softmax follows an fc layer")
    out.append({"out_depth": shape[0], "out_sx": 1, "out_sy": 1, "layer_type": "softmax", "num_inputs": shape[0]})
    return {**(extra or {}), "layers": out}


# --------------------------------------------------------------------------- ConvNetJS -> numbanets

def is_convnetjs(doc) -> bool:
    """Read as ConvNetJS: a JSON object without numbanets' "format" marker (ConvNetJS writes only `layers`)."""
    return isinstance(doc, dict) and "format" not in doc


def _int(where, entry, key) -> int:
    v = entry.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < 0:
        raise ValueError(f"{where}: {key} must be a whole number >= 0, got {v!r}")
    return int(v)


def _read_vol(where, vol, sx, sy, depth) -> np.ndarray:
    """A Vol's w as float64 (sy, sx, depth); `w` may be a list or, as JSON.stringify writes a
    Float64Array, an object {"0": ..., "1": ...}."""
    if not isinstance(vol, dict):
        raise ValueError(f"{where}: not a Vol object {{sx, sy, depth, w}}")  # noqa: TRY004 (bad input: exit 2)
    got = tuple(vol.get(k) for k in ("sx", "sy", "depth"))
    if got != (sx, sy, depth):
        raise ValueError(f"{where}: Vol is {got} (sx, sy, depth), the layer needs {(sx, sy, depth)}")
    w = vol.get("w")
    n = sx * sy * depth
    if isinstance(w, dict):
        try:
            w = [w[str(k)] for k in range(len(w))]
        except KeyError:
            raise ValueError(f"{where}: Vol w is an object without keys 0..{len(w) - 1}") from None
    if not isinstance(w, list) or len(w) != n:
        got_n = len(w) if isinstance(w, list) else type(w).__name__
        raise ValueError(f"{where}: Vol w has {got_n} numbers, sx*sy*depth = {n}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in w):
        raise ValueError(f"{where}: Vol w holds something other than numbers")
    return np.asarray(w, dtype=np.float64).reshape(sy, sx, depth)


def from_dict(doc, source: str = "snapshot"):
    """(arch spec, input shape (C, H, W), weights per spec layer) of a ConvNetJS toJSON() document."""
    entries = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{source}: neither a numbanets snapshot (no \"format\") nor a ConvNetJS "
                         f"net.toJSON() one (no \"layers\" list)")
    first = entries[0]
    if not isinstance(first, dict) or first.get("layer_type") != "input":
        raise ValueError(f"{source}: layer 0 must be the input layer")
    shape = tuple(_int(f"{source}: layer 0 (input)", first, k) for k in ("out_depth", "out_sy", "out_sx"))
    if min(shape) < 1:
        raise ValueError(f"{source}: layer 0 (input): sizes must be >= 1, got {shape}")
    if len(entries) < 3 or not isinstance(entries[-1], dict) or entries[-1].get("layer_type") != "softmax":
        raise ValueError(f"{source}: the last layer must be softmax (numbanets classifies with a softmax loss)")
    tokens, weights = [], []
    c, h, w = shape
    for i, entry in enumerate(entries[1:-1], start=1):
        kind = entry.get("layer_type") if isinstance(entry, dict) else None
        where = f"{source}: layer {i} ({kind})"
        if kind in ("conv", "pool"):
            sx, sy, s, pad = (_int(where, entry, k) for k in ("sx", "sy", "stride", "pad"))
            if min(sx, sy, s) < 1:
                raise ValueError(f"{where}: sx, sy and stride must be >= 1")
            if kind == "conv":
                f = _int(where, entry, "out_depth")
                filters = entry.get("filters")
                if not isinstance(filters, list) or len(filters) != f or f < 1:
                    raise ValueError(f"{where}: needs {f} filters, got "
                                     f"{len(filters) if isinstance(filters, list) else 'none'}")
                wt = np.stack([_read_vol(f"{where} filter {k}", v, sx, sy, c).transpose(2, 0, 1)
                               for k, v in enumerate(filters)])
                b = _read_vol(f"{where} biases", entry.get("biases"), 1, 1, f).ravel()
                tokens.append(f"conv{f}x{sy}x{sx}:s={s}:p={pad}")
                weights.append({"w": wt, "b": b})
            else:
                f = c
                tokens.append(f"pool{sy}x{sx}:s={s}:p={pad}")
                weights.append({})
            oh, ow = math.floor((h + 2 * pad - sy) / s + 1), math.floor((w + 2 * pad - sx) / s + 1)
            if oh < 1 or ow < 1:
                raise ValueError(f"{where}: kernel {sy}x{sx} does not fit the {h}x{w} input with pad {pad}")
            c, h, w = f, oh, ow
        elif kind in ACTIVATIONS:
            tokens.append(kind)
            weights.append({})
        elif kind == "fc":
            f, n = _int(where, entry, "out_depth"), c * h * w
            if entry.get("num_inputs") not in (None, n):
                raise ValueError(f"{where}: num_inputs {entry.get('num_inputs')!r}, the input has {n} numbers")
            filters = entry.get("filters")
            if not isinstance(filters, list) or len(filters) != f or f < 1:
                raise ValueError(f"{where}: needs {f} filters, got "
                                 f"{len(filters) if isinstance(filters, list) else 'none'}")
            rows = [_read_vol(f"{where} filter {k}", v, 1, 1, n).reshape(h, w, c).transpose(2, 0, 1).ravel()
                    for k, v in enumerate(filters)]
            b = _read_vol(f"{where} biases", entry.get("biases"), 1, 1, f).ravel()
            tokens.append(f"fc{f}")
            weights.append({"w": np.stack(rows), "b": b})
            c, h, w = f, 1, 1
        elif kind == "dropout":
            p = entry.get("drop_prob", 0.5)
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
                raise ValueError(f"{where}: drop_prob must be in [0, 1), got {p!r}")
            tokens.append(f"dropout{float(p)!r}")
            weights.append({})
        else:
            raise ValueError(f"{where}: numbanets has no such layer (it reads input, conv, pool, relu, tanh, "
                             "sigmoid, fc, dropout, softmax)")
    if tokens[-1][:2] != "fc":
        raise ValueError(f"{source}: the layer before softmax must be fc, got {entries[-2].get('layer_type')!r}")
    if entries[-1].get("num_inputs") not in (None, c):
        raise ValueError(f"{source}: softmax num_inputs {entries[-1].get('num_inputs')!r}, the fc gives {c}")
    spec = "-".join(tokens)
    arch.plan(arch.parse(spec), shape)  # numbanets' own check of the derived spec
    return spec, shape, weights


def read(path, doc=None):
    """(spec, input shape, float32 weights per spec layer, meta) of a ConvNetJS toJSON() file; float32 is
    numbanets' training default (export_json.read wraps this in its Snapshot)."""
    path = Path(path)
    if doc is None:
        doc = json.loads(path.read_text(encoding="utf-8"))
    spec, shape, weights = from_dict(doc, str(path))
    f32 = [{k: v.astype(np.float32) for k, v in found.items()} for found in weights]
    meta = {"format": "convnetjs", "source": str(path)}
    if isinstance(doc.get("numbanets"), dict):
        meta["numbanets"] = doc["numbanets"]
    return spec, shape, f32, meta
