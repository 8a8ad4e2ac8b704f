"""train-cnn's data and network: the images, the check that the network fits them, the model itself."""

from __future__ import annotations

import numpy as np

from numbanets.data import images
from numbanets.device import to_device
from numbanets.nn import arch


def load_data(o: dict, dtype=np.float32):
    """The images of --data (default: scikit-learn's digits), split by --test-fraction with split seed 0."""
    if o["data"] is None:
        return images.load_digits(o["test_fraction"], split_seed=0, dtype=dtype)
    return images.load_npz(o["data"], o["test_fraction"], split_seed=0, dtype=dtype)


def check_fit(spec: str, data) -> int:
    """The number of outputs K of the network on data's images; ValueError unless the
    network ends in a flat layer (fcK) whose K covers every label."""
    layers = arch.parse(spec)
    rows = arch.plan(layers, data.image_shape)  # names the layer whose output would be empty
    out = rows[-1].out_shape
    if len(out) != 1:
        raise ValueError(
            f"--arch must end in a fully connected layer fcK (K = number of classes, {data.classes} here): "
            f"its last layer {rows[-1].token!r} outputs {'x'.join(map(str, out))} on {data.name}'s "
            f"{'x'.join(map(str, data.image_shape))} images"
        )
    k = out[0]
    top = int(max(data.y_train.max(initial=0), data.y_test.max(initial=0)))
    if top >= k:
        raise ValueError(
            f"labels must lie in 0..{k - 1} for a network with {k} outputs (last layer {rows[-1].token!r}), "
            f"but {data.name} has label {top}; end the --arch with fc{top + 1}"
        )
    return k


def build_model(spec: str, input_shape, seed: int, dtype=np.float32, device: str = "cpu"):
    """(model, rng): the network of `spec`, initialised from default_rng(seed), on `device`.

    The same generator then shuffles the batches and draws the dropout masks, so
    its state (saved in every checkpoint) is all the randomness of a run.
    """
    rng = np.random.default_rng(seed)
    model = arch.build(arch.parse(spec), tuple(input_shape), rng, dtype)
    if device != "cpu":
        model.to(device)
    return model, rng


def move_to(a, device: str):
    """A host array moved to `device` (a CUDA device array for "cuda"; unchanged on the CPU)."""
    return to_device(a) if device == "cuda" else a
