"""What train-charlm will allocate, from its options and the vocabulary size: checked before the model is built.

float32 throughout; H hidden units, L layers, V characters, N streams of T characters,
gates 4 (LSTM), 3 (GRU) or 1 (RNN):

    parameters    per layer gates*H*(D + H + 1) (D = V for the first layer, H above it; the GRU's
                  second bias adds 3H), the read-out V*(H + 1)
    training      weights, gradients, optimizer state (rmsprop, adagrad, sgd: one array each; adam: two)
                  and the checkpoint's in-memory .npz of weights and state (common.footprint.training_bytes)
    drawing       the initialisers draw in float64 before casting: the largest matrix once more, 8 bytes a number
    activations   per layer the gates, h and c of every step and their gradients, T*N*(2*gates*H + 4*H);
                  the logits, their softmax and gradient, 3*T*N*V

On the GPU the activations live in device memory; the host still draws the
weights and writes the checkpoints, so only those are counted there.
"""

from __future__ import annotations

from runner.common import footprint

F32, F64 = 4, 8


def parts(o: dict, vocab_size: int) -> tuple[int, int]:
    """(bytes of weights, gradients, optimizer state, drawing and checkpoints; bytes of one step's activations)."""
    H, L, V, N, T = o["hidden"], o["layers"], vocab_size, o["batch_size"], o["seq_len"]
    gates = {"lstm": 4, "gru": 3}.get(o["cell"], 1)
    biases = 2 if o["cell"] == "gru" else 1
    parameters = sum(gates * H * ((V if layer == 0 else H) + H + biases) for layer in range(L)) + V * (H + 1)
    drawing = gates * H * max(V, H) * F64
    weights = footprint.training_bytes(parameters, F32, o["optimizer"]) + drawing
    activations = (L * T * N * (2 * gates * H + 4 * H) + 3 * T * N * V) * F32
    return weights, activations


def check(o: dict, vocab_size: int, device: str) -> None:
    """ValueError naming the options to lower when the run cannot fit in the available memory."""
    weights, activations = parts(o, vocab_size)
    on_host = activations if device == "cpu" else 0
    what = (f"--hidden {o['hidden']} --layers {o['layers']}" if weights >= on_host
            else f"--batch-size {o['batch_size']} --seq-len {o['seq_len']} with --hidden {o['hidden']}")
    footprint.check(weights + on_host, what)
