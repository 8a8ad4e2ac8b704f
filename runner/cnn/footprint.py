"""What train-cnn will allocate, from the network and the image size: checked before the network is built.

float32 throughout; the layer sizes come from numbanets.nn.arch.plan (what `nbnets shapes` prints):

    parameters    every layer's weights and biases
    training      weights, gradients, optimizer state (adam: two arrays, the others one) and the
                  checkpoint's in-memory .npz of weights and state (common.footprint.training_bytes)
    drawing       the initialisers draw in float64 before casting: the largest layer once more
    activations   every layer's output for a batch, kept for the backward pass, with its gradient
                  and the pooling indices (about 3 numbers per output number); evaluation runs
                  forward passes of `eval_batch` images

The images themselves are already loaded when the check runs (and counted in
the available memory). On the GPU only the weights' host side is counted.
"""

from __future__ import annotations

from numbanets.nn import arch
from runner.common import footprint

F32, F64 = 4, 8


def parts(o: dict, spec: str, image_shape, eval_batch: int) -> tuple[int, int, int]:
    """(parameters, bytes of weights, state, drawing and checkpoints, bytes of activations)."""
    rows = arch.plan(arch.parse(spec), tuple(image_shape))
    parameters = sum(row.params for row in rows)
    drawing = max((row.weights for row in rows), default=0) * F64
    weights = footprint.training_bytes(parameters, F32, o["optimizer"]) + drawing
    outputs = sum(row.neurons for row in rows)
    activations = max(3 * o["batch_size"], eval_batch) * outputs * F32
    return parameters, weights, activations


def check(o: dict, spec: str, image_shape, device: str, eval_batch: int) -> None:
    """ValueError naming --arch (and --batch-size) when the run cannot fit in the available memory."""
    parameters, weights, activations = parts(o, spec, image_shape, eval_batch)
    on_host = activations if device == "cpu" else 0
    what = f"--arch {o['arch']} ({parameters:,} parameters)"
    if on_host > weights:
        what += f" with --batch-size {o['batch_size']}"
    footprint.check(weights + on_host, what)
