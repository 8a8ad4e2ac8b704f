"""The train-cnn checkpoint format: the one module that writes and reads it.

A checkpoint is numbanets.checkpoint's pair NAME.npz (host arrays) + NAME.json (meta):

    arrays  param/<name>   the network's weights (numbanets.nn.arch.build's state_dict names)
            optim/<name>   the optimizer's state
    meta    kind           "numbanets-cnn"
            epoch, step, arch, input_shape, classes, dtype, data, normalisation, optimizer,
            rng (the seed and the generator's state: batch order and dropout masks), elapsed_s

Training, --resume and `nbnets export-json` all read and write through here.
"""

from __future__ import annotations

from pathlib import Path

from runner.common import training

KIND = "numbanets-cnn"
REQUIRED = ("arch", "input_shape", "epoch", "step", "rng")


def params(arrays: dict) -> dict:
    """The network's weights of a checkpoint's arrays, under the model's state_dict names."""
    return training.section(arrays, "param")


def training_state(trainer) -> tuple[dict, dict]:
    """(arrays, meta) of a Trainer: weights, optimizer state, position and the generator's state."""
    arrays = training.with_prefix("param", trainer.model.state_dict())
    arrays.update(training.with_prefix("optim", trainer.optimizer.state_dict()))
    meta = {
        "kind": KIND,
        "epoch": trainer.epoch,
        "step": trainer.step,
        "arch": trainer.spec,
        "input_shape": list(trainer.data.image_shape),
        "classes": trainer.classes,
        "dtype": trainer.dtype.name,
        "data": trainer.data.name,
        "normalisation": {"mean": trainer.data.mean, "std": trainer.data.std},
        "optimizer": trainer.o["optimizer"],
        "rng": {"seed": trainer.o["seed"], "bit_generator": trainer.rng.bit_generator.state,
                "use": "numpy default_rng(seed): initial weights, then batch order and dropout masks"},
    }
    return arrays, meta


def restore(trainer, arrays: dict, meta: dict) -> None:
    """Put a checkpoint's state into a Trainer; ValueError when it does not fit its network."""
    try:
        training.restore_weights(trainer.model, trainer.optimizer, arrays)
        trainer.rng.bit_generator.state = meta["rng"]["bit_generator"]
        trainer.epoch = int(meta["epoch"])
        trainer.step = int(meta["step"])
    except KeyError as exc:
        raise ValueError(f"the checkpoint lacks {exc.args[0]!r}: not a complete train-cnn checkpoint") from None


def save(run_dir: Path, trainer, elapsed: float) -> None:
    """checkpoint.npz/.json of the trainer in `run_dir`."""
    arrays, meta = training_state(trainer)
    training.save_checkpoint(run_dir, arrays, meta, elapsed)


def load(path) -> tuple[dict, dict]:
    """(arrays, meta) of a train-cnn checkpoint; ValueError for a corrupt or foreign file."""
    return training.load_checkpoint(
        path, KIND, REQUIRED,
        foreign="{path} is not a train-cnn checkpoint (kind {kind!r})",
        incomplete="{path} is not a complete train-cnn checkpoint (no {key!r})",
    )
