"""What the recurrent forward passes keep for their backward passes: one named tuple per op family.

    hs, cache = functional.rnn_forward(...)          cache: RNNCache  -> functional.rnn_backward(dhs, cache)
    hs, (h_T, c_T), cache = functional.lstm_forward(...)  cache: LSTMCache -> functional.lstm_backward(dhs, cache)
    hs, h_T, cache = functional.gru_forward(...)     cache: GRUCache  -> functional.gru_backward(dhs, cache)

The arrays are the (contiguous) inputs and the forward's results, on the
device the forward ran on. `inputs` says what `x` holds: INPUTS_DENSE, the
float input (T, N, D), or INPUTS_IDS, integer ids (T, N) int64 into the D
columns of w_ih standing for one-hot rows (CPU only; the backward then returns
None for dx). It comes first so that the fields keep the positions of the
tuples the forward passes returned before they had names (cache[7] of an
LSTMCache is cs).

The other ops need no cache object: conv, linear and activation backward take
the forward's inputs or output, max pooling its indices.
"""

from __future__ import annotations

from typing import Any, NamedTuple

INPUTS_DENSE = "dense"
INPUTS_IDS = "ids"

__all__ = ["RNNCache", "LSTMCache", "GRUCache", "INPUTS_DENSE", "INPUTS_IDS"]


class RNNCache(NamedTuple):
    """rnn_forward's cache: x (T, N, D) or ids (T, N), h0 (N, H), w_ih (H, D), w_hh (H, H), hs (T, N, H)."""

    inputs: str          # INPUTS_DENSE or INPUTS_IDS: what x holds
    x: Any               # (T, N, D) float, or (T, N) int64 ids
    h0: Any              # (N, H)
    w_ih: Any            # (H, D)
    w_hh: Any            # (H, H)
    hs: Any              # (T, N, H) hidden states after the activation
    activation: int      # numbanets.kernels.codes activation code


class LSTMCache(NamedTuple):
    """lstm_forward's cache: the inputs, and per step the states and the gates after their nonlinearity."""

    inputs: str          # INPUTS_DENSE or INPUTS_IDS: what x holds
    x: Any               # (T, N, D) float, or (T, N) int64 ids
    h0: Any              # (N, H)
    c0: Any              # (N, H)
    w_ih: Any            # (4H, D)
    w_hh: Any            # (4H, H)
    hs: Any              # (T, N, H)
    cs: Any              # (T, N, H) cell states
    gates: Any           # (T, N, 4H) i, f, g, o after sigmoid / tanh


class GRUCache(NamedTuple):
    """gru_forward's cache: the inputs, and per step the state, the gates and W_hn h_{t-1} + b_hn."""

    inputs: str          # INPUTS_DENSE or INPUTS_IDS: what x holds
    x: Any               # (T, N, D) float, or (T, N) int64 ids
    h0: Any              # (N, H)
    w_ih: Any            # (3H, D)
    w_hh: Any            # (3H, H)
    hs: Any              # (T, N, H)
    gates: Any           # (T, N, 3H) r, z, n after sigmoid / tanh
    hns: Any             # (T, N, H) h_{t-1} W_hn^T + b_hn (what r multiplies)
