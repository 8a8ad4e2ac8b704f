"""The CharLM that train-charlm's options describe (numbanets.nn.models.CharLM)."""

from __future__ import annotations

import numpy as np

from numbanets.nn.models import CharLM
from runner.charlm.options import init_scale


def build_model(opts: dict, vocab_size: int, dtype=np.float32, device: str = "cpu"):
    """The CharLM of the options, initialised from --seed, on `device`."""
    model = CharLM(
        vocab_size, opts["hidden"], opts["layers"], cell=opts["cell"], activation=opts["activation"],
        forget_bias=opts["forget_bias"], rng=np.random.default_rng(opts["seed"]), dtype=dtype,
        init=opts["init"], init_scale=init_scale(opts),
    )
    return model.to(device) if device != "cpu" else model
