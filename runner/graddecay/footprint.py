"""What grad-decay will allocate, from its options: checked before the first array is drawn.

Every number is float64 (the statistics run on the host). For hidden size H,
input size D, batch N and state size S (H for an RNN, 2H for the LSTM's h and c):

    weights       every cell of a seed at once: gates*H*(H + D + 1) (gates 4 for the LSTM, else 1),
                  while drawn one more copy of w_hh (the gate blocks before they are concatenated)
    Jacobians     per cell in turn: the product P(T, t), the step's J_t, their product and
                  the copies spectral_norms makes: about 5 stacks of N x S x S
    eigenvalues   rho(W_hh) of an RNN: a copy of the H x H matrix and LAPACK's work, about 2 H^2
    --train-steps the char LM trained per cell (float32, Adam): small beside the Jacobians

The long-sequence arrays (x, h_t, the BPTT gradients: T x N x H) are counted too.
"""

from __future__ import annotations

from numbanets import gradstats as gs
from runner.common import footprint
from runner.graddecay.options import Options

F64 = 8
JACOBIAN_STACKS = 5


def estimate(o: Options, d: int) -> int:
    """Bytes at the peak of a grad-decay run with options `o` and input size `d`."""
    H, N, T = o.hidden, o.batch, o.steps
    weights, peaks = 0, []
    for name in o.cells:
        kind = gs.cell_kind(name)[0]
        gates, S = (4, 2 * H) if kind == "lstm" else ((3, H) if kind == "gru" else (1, H))
        weights += gates * H * (H + d + 2) * F64
        drawing = gates * H * H * F64 * (3 if o.init == "orthogonal" else 1)  # QR: the Gaussian, Q and R
        eigen = 2 * H * H * F64 if kind == "rnn" else 0
        sequences = 4 * (T + 1) * N * S * F64
        peaks.append(max(drawing, JACOBIAN_STACKS * N * S * S * F64 + eigen + sequences))
    training = 0
    if o.train_steps > 0:
        largest = max({"lstm": 4, "gru": 3}.get(gs.cell_kind(c)[0], 1) for c in o.cells)
        training = footprint.training_bytes(largest * H * (H + d + 1) + d * (H + 1), 4, "adam")
    return weights + max(peaks) + training


def check(o: Options, d: int) -> None:
    """ValueError naming --hidden (and --batch-size) when the run cannot fit in the available memory."""
    footprint.check(estimate(o, d), f"--hidden {o.hidden} with --batch-size {o.batch}")
