"""A readable spec for small CNNs, and the per-layer arithmetic of one.

A spec is a list of tokens joined by "-", for example

    conv8x3x3:p=same-relu-pool2-conv16x3x3:p=same-relu-pool2-fc10

    conv<F>x<KH>x<KW>   F feature maps of KH x KW (conv<F>x<K> for a square kernel);
                        options after ":" (repeatable): s=<stride>, p=<int|valid|same|full>,
                        g=<groups>, nobias
    pool<K> / pool<KH>x<KW>   max pooling; options s=<stride> (default K), p=<int>
    gap                       global average pooling: (C, H, W) -> (C,), each feature map to its mean
    relu, tanh, sigmoid       activations
    fc<N>                     fully connected layer of N units (flattens its input first)
    dropout<P>                inverted dropout with drop probability P (e.g. dropout0.5)

`plan(layers, input_shape)` sizes every layer with numbanets.shapes (the same
arithmetic the kernels use) and counts its parameters, neurons and multiply-adds.
`build(layers, input_shape, rng, dtype)` makes the numbanets.nn.Sequential of a
spec (checked by plan() first, so a bad size names the layer).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from numbanets import shapes

ACTIVATION_TOKENS = ("relu", "tanh", "sigmoid")


@dataclass(frozen=True)
class LayerSpec:
    kind: str  # conv, pool, gap, act, fc, dropout
    token: str
    maps: int = 0
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] | None = None
    padding: object = 0
    groups: int = 1
    bias: bool = True
    units: int = 0
    activation: str = ""
    p: float = 0.0


class ArchError(ValueError):
    """A malformed spec; the message points at the bad token."""


_CONV = re.compile(r"conv(\d+)x(\d+)(?:x(\d+))?$")
_POOL = re.compile(r"pool(\d+)(?:x(\d+))?$")
_FC = re.compile(r"fc(\d+)$")
_DROP = re.compile(r"dropout(0?\.\d+|0|1(?:\.0*)?)?$")


def _bad(spec: str, token: str, why: str) -> ArchError:
    return ArchError(f"bad --arch token {token!r} in {spec!r}: {why}")


def _positive(spec, token, key, value) -> int:
    if not value.isdigit() or int(value) < 1:
        raise _bad(spec, token, f"{key}= needs a whole number >= 1, got {value!r}")
    return int(value)


def _parse_token(spec: str, token: str) -> LayerSpec:
    head, *opts = token.split(":")
    options: dict[str, str] = {}
    for opt in opts:
        key, eq, value = opt.partition("=")
        if opt == "nobias":
            options["nobias"] = ""
            continue
        if not eq or key not in ("s", "p", "g"):
            raise _bad(spec, token, f"unknown option {opt!r} (use s=, p=, g= or nobias)")
        options[key] = value
    if m := _CONV.match(head):
        maps, kh = int(m[1]), int(m[2])
        kw = int(m[3]) if m[3] else kh
        if min(maps, kh, kw) < 1:
            raise _bad(spec, token, "maps and kernel sizes must be >= 1")
        stride = _positive(spec, token, "s", options.get("s", "1"))
        groups = _positive(spec, token, "g", options.get("g", "1"))
        padding = options.get("p", "0")
        if padding not in shapes.PADDING_MODES:
            if not padding.isdigit():
                raise _bad(spec, token, f"p= must be an int or valid/same/full, got {padding!r}")
            padding = int(padding)
        return LayerSpec("conv", token, maps=maps, kernel=(kh, kw), stride=(stride, stride),
                         padding=padding, groups=groups, bias="nobias" not in options)
    if m := _POOL.match(head):
        kh = int(m[1])
        kw = int(m[2]) if m[2] else kh
        if min(kh, kw) < 1:
            raise _bad(spec, token, "pool size must be >= 1")
        if "g" in options or "nobias" in options:
            raise _bad(spec, token, "pooling takes only s= and p=")
        stride = _positive(spec, token, "s", options["s"]) if "s" in options else None
        padding = options.get("p", "0")
        if not padding.isdigit():
            raise _bad(spec, token, f"pooling p= must be an int, got {padding!r}")
        return LayerSpec("pool", token, kernel=(kh, kw),
                         stride=None if stride is None else (stride, stride), padding=int(padding))
    if opts:
        raise _bad(spec, token, "only conv and pool layers take options")
    if head == "gap":
        return LayerSpec("gap", token)
    if head in ACTIVATION_TOKENS:
        return LayerSpec("act", token, activation=head)
    if m := _FC.match(head):
        if int(m[1]) < 1:
            raise _bad(spec, token, "fc needs at least one unit")
        return LayerSpec("fc", token, units=int(m[1]))
    if m := _DROP.match(head):
        p = float(m[1]) if m[1] else 0.5
        if not 0 <= p < 1:
            raise _bad(spec, token, "dropout probability must be in [0, 1)")
        return LayerSpec("dropout", token, p=p)
    raise _bad(spec, token, "expected convFxKHxKW, poolK, gap, relu, tanh, sigmoid, fcN or dropoutP")


def parse(spec: str) -> list[LayerSpec]:
    """The layers of a spec string, in order; ArchError naming the first bad token."""
    if not isinstance(spec, str) or not spec.strip():
        raise ArchError("--arch is empty: give layers such as conv8x3x3:p=same-relu-pool2-fc10")
    tokens = spec.strip().split("-")
    for token in tokens:
        if not token:
            raise ArchError(f"bad --arch {spec!r}: empty token (two '-' in a row or a '-' at an end)")
    return [_parse_token(spec, t.strip()) for t in tokens]


@dataclass
class PlanRow:
    """One layer sized for an input: what `nbnets shapes` prints."""

    index: int
    token: str
    kind: str
    out_shape: tuple[int, ...]
    weights: int = 0
    biases: int = 0
    multiply_adds: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def neurons(self) -> int:
        return math.prod(self.out_shape)


def plan(layers: list[LayerSpec], input_shape: tuple[int, ...]) -> list[PlanRow]:
    """Size every layer for one input of shape (C, H, W) (or (D,) for a flat input).

    ValueError naming the layer and the sizes when an output would be empty or
    channels do not divide into groups.
    """
    shape = tuple(int(s) for s in input_shape)
    rows = []
    for i, layer in enumerate(layers):
        where = f"layer {i + 1} ({layer.token}) on input {'x'.join(map(str, shape))}"
        if layer.kind in ("conv", "pool"):
            if len(shape) != 3:
                raise ValueError(f"{where}: needs a (C, H, W) input, not a flat one")
            c, h, w = shape
            stride = layer.stride or layer.kernel
            before, after = shapes.resolve_padding(layer.padding, (h, w), layer.kernel, stride)
            out_hw = tuple(shapes.output_size(m, k, s, pb, pa)
                           for m, k, s, pb, pa in zip((h, w), layer.kernel, stride, before, after))
            if min(out_hw) < 1:
                raise ValueError(
                    f"{where}: output would be empty ({out_hw[0]}x{out_hw[1]}): "
                    f"kernel {layer.kernel[0]}x{layer.kernel[1]} with padding "
                    f"{before[0]}+{after[0]} x {before[1]}+{after[1]} does not fit {h}x{w}"
                )
            notes = []
            for m, k, s, pb, pa, o in zip((h, w), layer.kernel, stride, before, after, out_hw):
                if pb == pa == k - 1 and k > 1:  # full padding: compare with the quoted rule
                    quoted = shapes.quoted_output_size(m, k, s)
                    if quoted != o:
                        notes.append(f"(M+P)/s-1 = {quoted:g} disagrees with exact {o}")
            if layer.kind == "conv":
                if c % layer.groups or layer.maps % layer.groups:
                    raise ValueError(f"{where}: {c} channels and {layer.maps} maps must divide by g={layer.groups}")
                weights = shapes.conv_params(c, layer.maps, layer.kernel, layer.groups, bias=False)
                biases = layer.maps if layer.bias else 0
                out = (layer.maps, *out_hw)
                madds = shapes.conv_multiply_adds(c, layer.maps, layer.kernel, out_hw, layer.groups)
                rows.append(PlanRow(i + 1, layer.token, "conv", out, weights, biases, madds, notes))
            else:
                rows.append(PlanRow(i + 1, layer.token, "pool", (c, *out_hw), notes=notes))
            shape = rows[-1].out_shape
        elif layer.kind == "gap":
            if len(shape) != 3:
                raise ValueError(f"{where}: needs a (C, H, W) input, not a flat one")
            # the mean of each map: one multiply-add (weight 1/(H*W)) per input number
            rows.append(PlanRow(i + 1, layer.token, "gap", (shape[0],), multiply_adds=math.prod(shape)))
            shape = rows[-1].out_shape
        elif layer.kind == "fc":
            d = math.prod(shape)
            out = (layer.units,)
            rows.append(PlanRow(i + 1, layer.token, "fc", out, d * layer.units, layer.units, d * layer.units))
            shape = out
        else:
            rows.append(PlanRow(i + 1, layer.token, layer.kind, shape))
    return rows


def build(layers: list[LayerSpec], input_shape: tuple[int, ...], rng, dtype=None):
    """The numbanets.nn.Sequential of `layers` for inputs of shape (C, H, W) (or (D,)).

    One child per spec layer, in order, except that an fc layer on a (C, H, W)
    input is preceded by a Flatten child. `model.arch_layers` lists
    (LayerSpec, module) pairs, one per spec layer (the fc's Linear for fc).
    Weights are drawn from `rng` (torch's default init); dropout layers draw
    their masks from the same `rng`.
    """
    import numpy as np

    from numbanets import nn

    dtype = np.float32 if dtype is None else dtype
    rows = plan(layers, input_shape)  # ValueError naming the layer for bad sizes
    shape = tuple(int(s) for s in input_shape)
    children, pairs = [], []
    for layer, row in zip(layers, rows):
        if layer.kind == "conv":
            module = nn.Conv2D(shape[0], layer.maps, layer.kernel, stride=layer.stride, padding=layer.padding,
                               groups=layer.groups, bias=layer.bias, rng=rng, dtype=dtype)
        elif layer.kind == "pool":
            module = nn.MaxPool2D(layer.kernel, stride=layer.stride, padding=layer.padding)
        elif layer.kind == "gap":
            module = nn.GlobalAvgPool2D()
        elif layer.kind == "act":
            module = nn.Activation(layer.activation)
        elif layer.kind == "fc":
            if len(shape) != 1:
                children.append(nn.Flatten())
            module = nn.Linear(math.prod(shape), layer.units, rng=rng, dtype=dtype)
        else:
            module = nn.Dropout(layer.p, rng=rng)
        children.append(module)
        pairs.append((layer, module))
        shape = row.out_shape
    model = nn.Sequential(*children)
    model.arch_layers = pairs
    return model


# Built-in specs for `nbnets shapes --arch NAME`: (spec, input (C, H, W)).
BUILTIN = {
    "lecture": ("conv20x5x5:p=full:nobias", (3, 200, 200)),
    "alexnet": (
        "conv96x11x11:s=4-relu-pool3:s=2-conv256x5x5:p=2:g=2-relu-pool3:s=2-conv384x3x3:p=1-relu-"
        "conv384x3x3:p=1:g=2-relu-conv256x3x3:p=1:g=2-relu-pool3:s=2-fc4096-relu-dropout0.5-fc4096-relu-"
        "dropout0.5-fc1000",
        (3, 227, 227),
    ),
    "digits": ("conv32x3x3:p=same-relu-pool2-conv64x3x3:p=same-relu-pool2-fc10", (1, 8, 8)),
}
