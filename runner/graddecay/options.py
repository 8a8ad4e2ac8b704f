"""grad-decay's options as one frozen dataclass, checked once by `validate`."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from numbanets import gradstats as gs

COMMAND = "grad-decay"
INPUTS = ("random", "zero", "corpus")
DEFAULT_INPUT_SIZE = 16


@dataclass
class Options:
    steps: int = 7
    cells: tuple = gs.DEFAULT_CELLS
    hidden: int = 32
    input_size: int | None = None
    batch: int = 4
    init: str = "normal"
    scale: float = 1.0
    forget_bias: float = 1.0
    bias: float = 0.0
    h0: float = 0.0
    input: str | None = None  # random, or corpus with --train-steps
    seeds: int = 1
    seed: int = 0  # the first draw: seeds seed .. seed + seeds - 1
    train_steps: int = 0
    record_every: int | None = None
    device: str = "auto"
    out: str = "results"
    plot: bool = True


# click parameter name -> Options field, where they differ (runner/cli.py's grad-decay options)
PARAM_FIELDS = {"input_kind": "input"}


def from_params(params: dict) -> Options:
    """Options from the grad-decay command's parsed click parameters (the CLI and `nbnets sweep` both)."""
    return Options(**{PARAM_FIELDS.get(name, name): value for name, value in params.items()})


def _int_at_least(value, name, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def validate(o: Options) -> Options:
    """The same rules as the click options, for callers of `run` from Python (ValueError).

    Returns a copy with the defaults that depend on other options filled in (--input).
    """
    _int_at_least(o.steps, "--steps", 1)
    _int_at_least(o.hidden, "--hidden", 1)
    _int_at_least(o.batch, "--batch", 1)
    _int_at_least(o.seeds, "--seeds", 1)
    _int_at_least(o.seed, "--seed", 0)
    _int_at_least(o.train_steps, "--train-steps", 0)
    if o.input_size is not None:
        _int_at_least(o.input_size, "--input-size", 1)
    if o.record_every is not None:
        _int_at_least(o.record_every, "--record-every", 1)
    if not o.cells:
        raise ValueError("--cells must name at least one cell")
    for c in o.cells:
        gs.cell_kind(c)
    if o.init not in gs.INITS:
        raise ValueError(f"unknown --init {o.init!r}; choose from {', '.join(gs.INITS)}")
    if not (isinstance(o.scale, (int, float)) and math.isfinite(o.scale) and o.scale > 0):
        raise ValueError(f"--scale must be a finite number > 0, got {o.scale!r}")
    for name in ("forget_bias", "bias", "h0"):
        v = getattr(o, name)
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number, got {v!r}")
    if o.input is None:
        o = replace(o, input="corpus" if o.train_steps > 0 else "random")
    if o.input not in INPUTS:
        raise ValueError(f"unknown --input {o.input!r}; choose from {', '.join(INPUTS)}")
    if o.record_every is not None and o.train_steps == 0:
        raise ValueError("--record-every needs --train-steps")
    return o


# --------------------------------------------------------------------------- inputs
