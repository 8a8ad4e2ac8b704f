"""The train-charlm checkpoint format: the one module that writes and reads it.

A checkpoint is numbanets.checkpoint's pair of files, NAME.npz (host arrays)
and NAME.json (the meta), with

    arrays  param/<name>        the model's weights (CharLM.state_dict names)
            optim/<name>        the optimizer's state
            hidden/<layer>/h|c  the hidden state carried into the next window
    meta    kind                "numbanets-charlm"
            step, model, vocab, corpus
            stream_position, hidden_state, rng, best_val, best_step, optimizer, elapsed_s

checkpoint.npz holds all of it (what exact resume needs); best.npz only the
weights (param/, kind, step, model, vocab, corpus, val_loss): what `nbnets
sample` needs. Training, resume and sampling all read and write through here.
"""

from __future__ import annotations

import math
from pathlib import Path

from numbanets import checkpoint
from numbanets.device import to_device, to_host
from runner.common import training

KIND = "numbanets-charlm"
BEST_FILE = "best.npz"
REQUIRED = ("model", "vocab", "step")


def weights(model, step: int, vocab_chars: str, corpus_name: str) -> tuple[dict, dict]:
    """(arrays, meta) of the weights alone: what best.npz and `nbnets sample` need."""
    arrays = training.with_prefix("param", model.state_dict())
    meta = {"kind": KIND, "step": step, "model": model.config(), "vocab": vocab_chars, "corpus": corpus_name}
    return arrays, meta


def params(arrays: dict) -> dict:
    """The model's weights of a checkpoint's arrays, under CharLM.state_dict's names."""
    return training.section(arrays, "param")


def training_state(trainer) -> tuple[dict, dict]:
    """(arrays, meta) of a Trainer: the weights plus the optimizer, stream position and hidden state."""
    arrays, meta = trainer.weights()
    arrays.update(training.with_prefix("optim", trainer.optimizer.state_dict()))
    layers = []
    for i, s in enumerate(trainer.state or ()):
        parts = s if isinstance(s, tuple) else (s,)
        for name, a in zip(("h", "c"), parts):
            arrays[f"hidden/{i}/{name}"] = to_host(a)
        layers.append(len(parts))
    meta.update({
        "stream_position": trainer.stream.position,
        "hidden_state": layers if trainer.state is not None else None,
        "rng": {"seed": trainer.opts["seed"], "init": "numpy default_rng(seed)",
                "samples": "numpy default_rng([seed, 1, step]) per sample",
                "dropout": "numpy default_rng([seed, 2]): the dropout masks, in this state",
                "dropout_state": trainer.model.dropout_rng.bit_generator.state},
        "best_val": trainer.best_val,
        "best_step": trainer.best_step,
        "optimizer": trainer.opts["optimizer"],
    })
    return arrays, meta


def restore(trainer, arrays: dict, meta: dict) -> None:
    """Put a checkpoint's state into a Trainer; ValueError when it does not fit its model."""
    try:
        training.restore_weights(trainer.model, trainer.optimizer, arrays)
        layers = meta.get("hidden_state")
        if layers is None:
            trainer.state = None
        else:
            move = to_device if trainer.device == "cuda" else (lambda a: a.copy())
            state = []
            for i, parts in enumerate(layers):
                got = tuple(move(arrays[f"hidden/{i}/{name}"]) for name in ("h", "c")[:parts])
                state.append(got if parts == 2 else got[0])
            trainer.state = state
        dropout_state = (meta.get("rng") or {}).get("dropout_state")
        if dropout_state is not None:  # (checkpoints from before --dropout have none: they trained without)
            trainer.model.dropout_rng.bit_generator.state = dropout_state
        trainer.step = int(meta["step"])
        trainer.stream.position = int(meta["stream_position"])
        trainer.best_val = float(meta.get("best_val", math.inf))
        trainer.best_step = int(meta.get("best_step", 0))
    except KeyError as exc:
        raise ValueError(f"the checkpoint lacks {exc.args[0]!r}: not a complete train-charlm checkpoint") from None


def save(run_dir: Path, trainer, elapsed: float) -> None:
    """checkpoint.npz/.json of the trainer in `run_dir`."""
    arrays, meta = training_state(trainer)
    training.save_checkpoint(run_dir, arrays, meta, elapsed)


def save_best(run_dir: Path, trainer, val_loss: float) -> None:
    """best.npz/.json: the trainer's weights, with the validation loss that made them the best."""
    arrays, meta = trainer.weights()
    meta["val_loss"] = val_loss
    checkpoint.save(run_dir / BEST_FILE, arrays, meta)


def load(path) -> tuple[dict, dict]:
    """(arrays, meta) of a charlm checkpoint (checkpoint.npz or best.npz); ValueError for a corrupt or foreign file."""
    return training.load_checkpoint(
        path, KIND, REQUIRED,
        foreign="{path} is not a numbanets character-LM checkpoint",
        incomplete="{path} is not a complete character-LM checkpoint (no {key!r})",
    )
