"""The CharLM that train-charlm's options describe (numbanets.nn.models.CharLM)."""

from __future__ import annotations

import numpy as np

from numbanets.nn.models import CharLM
from runner.charlm.options import init_scale


def dropout_rng(seed: int) -> np.random.Generator:
    """The generator of the dropout masks: its own stream of --seed, so the initial weights (default_rng(seed))
    are the same with and without --dropout; its state is part of the checkpoint (exact resume)."""
    return np.random.default_rng([seed, 2])


def build_model(opts: dict, vocab_size: int, dtype=np.float32, device: str = "cpu"):
    """The CharLM of the options, initialised from --seed, on `device`."""
    model = CharLM(
        vocab_size, opts["hidden"], opts["layers"], cell=opts["cell"], activation=opts["activation"],
        forget_bias=opts["forget_bias"], rng=np.random.default_rng(opts["seed"]), dtype=dtype,
        init=opts["init"], init_scale=init_scale(opts),
        dropout=opts["dropout"], dropout_rng=dropout_rng(opts["seed"]),
    )
    return model.to(device) if device != "cpu" else model
