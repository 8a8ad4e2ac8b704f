"""`nbnets shapes`: the per-layer arithmetic of a CNN spec, as a table or CSV."""

from __future__ import annotations

import pandas as pd

from numbanets import shapes
from numbanets.nn import arch


def resolve_arch(spec: str, input_size: str | None) -> tuple[str, tuple[int, ...], str]:
    """(spec, input shape (C, H, W), label) for a built-in name or a spec string."""
    if spec in arch.BUILTIN:
        text, shape = arch.BUILTIN[spec]
        label = spec
    else:
        text, shape, label = spec, None, "custom"
    arch.parse(text)  # a bad token is reported before a missing --input
    if input_size:
        shape = parse_input_size(input_size)
    if shape is None:
        raise ValueError("--input is needed for a custom --arch, e.g. --input 3x32x32 (C x H x W)")
    return text, shape, label


def parse_input_size(text: str) -> tuple[int, ...]:
    parts = text.lower().split("x")
    if len(parts) not in (1, 3) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--input must be CxHxW (e.g. 3x32x32) or a flat size D, got {text!r}")
    return tuple(int(p) for p in parts)


def table(spec: str, input_shape) -> pd.DataFrame:
    rows = arch.plan(arch.parse(spec), input_shape)
    frame = pd.DataFrame(
        {
            "layer": [r.index for r in rows],
            "token": [r.token for r in rows],
            "kind": [r.kind for r in rows],
            "output": ["x".join(map(str, r.out_shape)) for r in rows],
            "weights": [r.weights for r in rows],
            "biases": [r.biases for r in rows],
            "params": [r.params for r in rows],
            "neurons": [r.neurons for r in rows],
            "multiply_adds": [r.multiply_adds for r in rows],
            "note": ["; ".join(dict.fromkeys(r.notes)) for r in rows],
        }
    )
    return frame


def totals(frame: pd.DataFrame) -> dict[str, int]:
    return {
        "params": int(frame["params"].sum()),
        "neurons": int(frame.loc[frame["kind"].isin(["conv", "pool", "gap", "fc"]), "neurons"].sum()),
        "multiply_adds": int(frame["multiply_adds"].sum()),
    }


def lecture_comparison(input_shape) -> str:
    """The lecture's contrast: a fully connected layer of H*W neurons on the same image."""
    c, h, w = input_shape
    units = h * w
    return (
        f"fully connected instead: {units:,} neurons on the {c}x{h}x{w} image need "
        f"{units * c * h * w:,} weights (vs 1,500 shared by the 20 5x5x3 feature maps)"
    )


def render(frame: pd.DataFrame, label: str, input_shape) -> str:
    shown = frame.drop(columns=["kind"]).copy()
    for col in ("weights", "biases", "params", "neurons", "multiply_adds"):
        shown[col] = shown[col].map(lambda v: f"{v:,}")
    lines = [f"arch: {label}   input: {'x'.join(map(str, input_shape))}", shown.to_string(index=False)]
    t = totals(frame)
    lines.append(f"total: {t['params']:,} parameters, {t['neurons']:,} neurons, {t['multiply_adds']:,} multiply-adds per image")
    if label == "lecture":
        lines.append(lecture_comparison(input_shape))
    return "\n".join(lines)


def pooling_examples() -> str:
    """The small pooling cases every lecture shows, computed by numbanets.shapes."""
    one_d = [(5, 3, s, shapes.output_size(5, 3, s, 0, 0)) for s in (1, 2)]
    lines = [f"1-D input {m}, window {k}, stride {s}: {o} outputs" for m, k, s, o in one_d]
    o = shapes.output_size(5, 3, 1, 0, 0)
    lines.append(f"2-D input 5x5, window 3x3, stride 1: {o}x{o} outputs")
    return "\n".join(lines)


def math_note() -> str:
    return "output size per dimension: floor((M + p_before + p_after - K) / s) + 1"

