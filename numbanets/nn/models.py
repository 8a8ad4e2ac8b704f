"""Models built from the layers. A model is just a Module.

    CharLM(vocab_size, hidden, layers, cell="lstm", activation="tanh", forget_bias=1.0, *,
           rng, dtype=np.float32, init="uniform", init_scale=None, dropout=0.0, dropout_rng=None)

A character language model (Karpathy's char-rnn): one-hot characters in, a
stack of `layers` RNN, LSTM or GRU layers of `hidden` units, a linear read-out to
`vocab_size` logits. Children: "rnn" (numbanets.nn.RNN, LSTM or GRU, layers l0, l1,
...) and "head" (Linear(hidden, vocab_size)).

dropout > 0 (char-rnn's -dropout, Zaremba et al. 2014): inverted dropout on the
output of every recurrent layer, into the next layer and into the read-out, never
on the recurrent connections; masks drawn from `dropout_rng` (a generator of its
own, so the initial weights do not depend on it); off in eval mode (`m.eval()`:
evaluation and sampling).

    logits, state = m.forward(idx, state)     idx (T, N) ints -> logits (T*N, V), row t*N + n
    m.backward(dlogits)                       accumulates every parameter's gradient
    loss, state = m.loss_and_grad(inputs, targets, state)   zero_grad + forward + CE + backward
    loss, state = m.loss(inputs, targets, state)            forward + CE only (evaluation)
    logits, state = m.next_logits(ids, state)               ids (T,) -> logits (V,) after the last

idx and targets are host integer arrays. On the CPU the first recurrent layer
takes the ids themselves: its input projection is a row gather of w_ih (the
same numbers as the one-hot GEMM, without the one-hot matrix), and no gradient
is computed for the input. On the GPU the input is the one-hot batch (T, N, V),
built on the device from the ids (only T*N ints travel), so the input
projection is one GEMM.
"""

from __future__ import annotations

import numpy as np

from numbanets import functional as F
from numbanets.device import to_device, to_host
from numbanets.nn.layers import Dropout, Linear
from numbanets.nn.module import Module
from numbanets.nn.recurrent import GRU, LSTM, RNN

__all__ = ["CharLM", "CELLS"]

CELLS = ("rnn", "lstm", "gru")


class CharLM(Module):
    def __init__(self, vocab_size, hidden, layers, cell="lstm", activation="tanh", forget_bias=1.0, *,
                 rng, dtype=np.float32, init="uniform", init_scale=None, dropout=0.0, dropout_rng=None):
        super().__init__()
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
            raise ValueError(f"vocab_size must be an int >= 1, got {vocab_size!r}")
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}; got {cell!r}")
        self.vocab_size, self.hidden, self.cell = int(vocab_size), hidden, cell
        self.dtype = np.dtype(dtype)
        self._config = dict(vocab_size=int(vocab_size), hidden=int(hidden), layers=int(layers), cell=cell,
                            activation=activation, forget_bias=float(forget_bias), init=init,
                            init_scale=None if init_scale is None else float(init_scale), dtype=self.dtype.name,
                            dropout=float(dropout))
        if cell == "lstm":
            rnn = LSTM(vocab_size, hidden, layers, forget_bias, rng=rng, dtype=dtype, init=init, init_scale=init_scale)
        elif cell == "gru":
            rnn = GRU(vocab_size, hidden, layers, rng=rng, dtype=dtype, init=init, init_scale=init_scale)
        else:
            rnn = RNN(vocab_size, hidden, layers, activation, rng=rng, dtype=dtype, init=init, init_scale=init_scale)
        self.rnn = self.add_module("rnn", rnn)
        self.head = self.add_module("head", Linear(hidden, vocab_size, rng=rng, dtype=dtype))
        self.dropout_rng = dropout_rng
        self.drop = Dropout(dropout, rng=dropout_rng)  # the top layer's output, into the read-out
        rnn.set_dropout(self.drop.p, dropout_rng)  # every other layer's output, into the next layer
        self.shape = None

    def config(self) -> dict:
        """The constructor's arguments (JSON-able, without rng): CharLM(**config, rng=...) rebuilds it."""
        return dict(self._config)

    def _ids(self, idx, name):
        idx = to_host(idx)
        if not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"{name} must be an integer array of character ids, got {idx.dtype}")
        if idx.ndim != 2:
            raise ValueError(f"{name} must be 2-D (T, N), got shape {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.vocab_size):
            bad = idx.min() if idx.min() < 0 else idx.max()
            raise ValueError(f"{name} must lie in 0..{self.vocab_size - 1} (vocab_size {self.vocab_size}), got {bad}")
        return idx

    def _on_device(self, a):
        return to_device(a) if self.device == "cuda" else a

    def one_hot(self, idx) -> np.ndarray:
        """idx (T, N) -> (T, N, V) host array of the model's dtype."""
        idx = self._ids(idx, "idx")
        return np.eye(self.vocab_size, dtype=self.dtype)[idx]

    def forward(self, idx, state=None):
        """idx (T, N) ints, state per the recurrent stack (None = zeros) -> (logits (T*N, V), state)."""
        x = np.ascontiguousarray(self._ids(idx, "idx"), dtype=np.int64)
        if self.device == "cuda":
            # only the ids travel (T*N int64); the one-hot batch is built on the device
            from numbanets.kernels.cuda.elementwise import one_hot

            x = one_hot(to_device(x), self.vocab_size, self.dtype)
        # on the CPU the ids themselves: the first layer gathers rows of w_ih instead of a one-hot GEMM
        t, n = x.shape[0], x.shape[1]
        if self.training and self.drop.p > 0 and self.dropout_rng is None:
            raise RuntimeError("CharLM with dropout > 0 needs dropout_rng to train (or eval() to evaluate)")
        hs, state = self.rnn.forward(x, state)
        self.drop.training = self.training
        hs = self.drop.forward(hs)
        self.shape = (t, n)
        logits = self.head.forward(hs.reshape((t * n, self.hidden)))
        return logits, state

    def backward(self, dlogits):
        """dlogits (T*N, V) -> gradient w.r.t. the one-hot input (T, N, V) (GPU), or None where the first
        layer took the ids themselves (CPU); parameter grads accumulate."""
        t, n = self.shape
        dh = self.drop.backward(self.head.backward(dlogits).reshape((t, n, self.hidden)))
        return self.rnn.backward(dh)

    def _targets(self, targets, expected):
        targets = self._ids(targets, "targets")
        if targets.shape != expected:
            raise ValueError(f"targets must have the inputs' shape {expected}, got {targets.shape}")
        return self._on_device(np.ascontiguousarray(targets.reshape(-1), dtype=np.int64))

    def loss(self, inputs, targets, state=None):
        """Mean cross-entropy (nats per character) of predicting targets (T, N) -> (loss, state)."""
        logits, state = self.forward(inputs, state)
        loss, _ = F.softmax_cross_entropy(logits, self._targets(targets, self.shape))
        return loss, state

    def loss_and_grad(self, inputs, targets, state=None):
        """zero_grad, forward, softmax cross-entropy, backward -> (loss, final state)."""
        self.zero_grad()
        logits, state = self.forward(inputs, state)
        loss, dlogits = F.softmax_cross_entropy(logits, self._targets(targets, self.shape))
        self.backward(dlogits)
        return loss, state

    def next_logits(self, ids, state=None):
        """ids (T,) fed one sequence long -> (host logits (V,) after the last id, state)."""
        ids = np.asarray(ids).reshape(-1, 1)
        logits, state = self.forward(ids, state)
        return to_host(logits)[-1].copy(), state

    def __repr__(self):
        return f"CharLM(vocab_size={self.vocab_size}, rnn={self.rnn!r}, head={self.head!r})"
