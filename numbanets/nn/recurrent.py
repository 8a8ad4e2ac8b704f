"""Recurrent layers: vanilla RNN, LSTM and GRU, stackable, the whole unroll in one kernel call.

    RNN(input_size, hidden_size, layers=1, activation="tanh", *, rng, dtype, init="uniform", init_scale=None)
    LSTM(input_size, hidden_size, layers=1, forget_bias=1.0, *, rng, dtype, init="uniform", init_scale=None)
    GRU(input_size, hidden_size, layers=1, *, rng, dtype, init="uniform", init_scale=None)

    hs, state = m.forward(x, state=None)    x (T, N, D) -> hs (T, N, H) of the top layer
    dx = m.backward(dhs)                    dhs (T, N, H) = dL/dhs of the top layer
    m.set_dropout(p, rng)                   inverted dropout between layers (torch's dropout=), train mode only

state is one entry per layer, bottom first: RNN and GRU a list of h (N, H), LSTM
a list of (h, c) pairs; None means zeros. The returned state is the last time step's,
ready to be carried into the next window. Truncated BPTT: no gradient flows
into the initial state that forward was given.

Layers are children "l0", "l1", ... with parameters w_ih, w_hh, b in PyTorch's
layout (RNN (H, D), (H, H), (H,); LSTM (4H, D), (4H, H), (4H,), gates i, f, g, o;
the LSTM b is torch's bias_ih + bias_hh). The GRU keeps torch's two biases, w_ih
(3H, D), w_hh (3H, H), b_ih, b_hh (3H,), gates r, z, n: b_hn is multiplied by r,
so they do not sum into one. Initialisers: numbanets.nn.init.recurrent (b_hh drawn
like b); forget_bias is added to the f-gate slice b[H:2H] after initialisation.
"""

from __future__ import annotations

import numpy as np

from numbanets import functional as F
from numbanets.nn import init as initializers
from numbanets.nn.arrays import add_, zeros
from numbanets.nn.layers import Dropout
from numbanets.nn.module import Module

__all__ = ["RNN", "LSTM", "GRU", "RNNLayer", "LSTMLayer", "GRULayer"]


def _check_sizes(input_size, hidden_size, layers):
    for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("layers", layers)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")


class RNNLayer(Module):
    """One vanilla RNN layer: h_t = act(W_ih x_t + W_hh h_{t-1} + b)."""

    def __init__(self, input_size, hidden_size, activation="tanh", *, rng, dtype=np.float32,
                 init="uniform", init_scale=None):
        super().__init__()
        if not isinstance(activation, str) or activation.lower() not in F.ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(F.ACTIVATIONS)}; got {activation!r}")
        self.input_size, self.hidden_size, self.activation = input_size, hidden_size, activation.lower()
        w_ih, w_hh, b = initializers.recurrent(init, rng, input_size, hidden_size, 1, init_scale, dtype)
        self.add_param("w_ih", w_ih)
        self.add_param("w_hh", w_hh)
        self.add_param("b", b)
        self.cache = None

    def forward(self, x, h0=None):
        """x (T, N, D), h0 (N, H) or None -> (hs (T, N, H), h_T (N, H)).

        x may also be integer ids (T, N) of one-hot inputs (CPU; see F.rnn_forward): backward then returns None.
        """
        if h0 is None:
            h0 = zeros((x.shape[1], self.hidden_size), self.params["w_ih"].dtype, like=self.params["w_ih"])
        p = self.params
        hs, self.cache = F.rnn_forward(x, h0, p["w_ih"], p["w_hh"], p["b"], self.activation)
        return hs, hs[hs.shape[0] - 1]

    def backward(self, dhs):
        dx, _dh0, dw_ih, dw_hh, db = F.rnn_backward(dhs, self._saved("cache"))
        self._release("cache")
        add_(self.grads["w_ih"], dw_ih)
        add_(self.grads["w_hh"], dw_hh)
        add_(self.grads["b"], db)
        return dx


class LSTMLayer(Module):
    """One LSTM layer, gates i, f, g, o: c_t = f c_{t-1} + i g, h_t = o tanh(c_t)."""

    def __init__(self, input_size, hidden_size, forget_bias=1.0, *, rng, dtype=np.float32,
                 init="uniform", init_scale=None):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        w_ih, w_hh, b = initializers.recurrent(init, rng, input_size, hidden_size, 4, init_scale, dtype)
        b[hidden_size:2 * hidden_size] += np.asarray(forget_bias, dtype=b.dtype)
        self.add_param("w_ih", w_ih)
        self.add_param("w_hh", w_hh)
        self.add_param("b", b)
        self.cache = None

    def forward(self, x, state=None):
        """x (T, N, D), state (h0, c0) or None -> (hs (T, N, H), (h_T, c_T)).

        x may also be integer ids (T, N) of one-hot inputs (CPU; see F.lstm_forward): backward then returns None.
        """
        if state is None:
            dtype = self.params["w_ih"].dtype
            h0 = zeros((x.shape[1], self.hidden_size), dtype, like=self.params["w_ih"])
            c0 = zeros((x.shape[1], self.hidden_size), dtype, like=self.params["w_ih"])
        else:
            h0, c0 = state
        p = self.params
        hs, last, self.cache = F.lstm_forward(x, h0, c0, p["w_ih"], p["w_hh"], p["b"])
        return hs, last

    def backward(self, dhs):
        dx, _dh0, _dc0, dw_ih, dw_hh, db = F.lstm_backward(dhs, self._saved("cache"))
        self._release("cache")
        add_(self.grads["w_ih"], dw_ih)
        add_(self.grads["w_hh"], dw_hh)
        add_(self.grads["b"], db)
        return dx


class GRULayer(Module):
    """One GRU layer, gates r, z, n: n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1 - z) n + z h."""

    def __init__(self, input_size, hidden_size, *, rng, dtype=np.float32, init="uniform", init_scale=None):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        w_ih, w_hh, b_ih = initializers.recurrent(init, rng, input_size, hidden_size, 3, init_scale, dtype)
        if init == "uniform":  # drawn like b_ih: U(-s, s), s the initialiser's scale
            scale = 1.0 / np.sqrt(hidden_size) if init_scale is None else init_scale
            b_hh = initializers.uniform(rng, (3 * hidden_size,), scale, dtype)
        else:
            b_hh = np.zeros(3 * hidden_size, dtype=dtype)
        self.add_param("w_ih", w_ih)
        self.add_param("w_hh", w_hh)
        self.add_param("b_ih", b_ih)
        self.add_param("b_hh", b_hh)
        self.cache = None

    def forward(self, x, h0=None):
        """x (T, N, D), h0 (N, H) or None -> (hs (T, N, H), h_T (N, H)).

        x may also be integer ids (T, N) of one-hot inputs (CPU; see F.gru_forward): backward then returns None.
        """
        if h0 is None:
            h0 = zeros((x.shape[1], self.hidden_size), self.params["w_ih"].dtype, like=self.params["w_ih"])
        p = self.params
        hs, h_T, self.cache = F.gru_forward(x, h0, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
        return hs, h_T

    def backward(self, dhs):
        dx, _dh0, dw_ih, dw_hh, db_ih, db_hh = F.gru_backward(dhs, self._saved("cache"))
        self._release("cache")
        for name, g in (("w_ih", dw_ih), ("w_hh", dw_hh), ("b_ih", db_ih), ("b_hh", db_hh)):
            add_(self.grads[name], g)
        return dx


class _Stack(Module):
    """Layers l0, l1, ...: each one's hs is the next one's input, through inverted dropout when
    `set_dropout` asked for it (torch's `dropout=`: every layer's output but the last's)."""

    drops = ()  # one Dropout per connection between layers; () = none

    def set_dropout(self, p: float, rng) -> None:
        """Inverted dropout with probability p on the outputs of every layer but the last (the non-recurrent
        connections, Zaremba et al. 2014), masks drawn from `rng`; identity in eval mode and for p = 0."""
        self.drops = tuple(Dropout(p, rng=rng) for _ in range(len(self.children) - 1)) if p > 0 else ()

    def _forward_stack(self, x, state):
        layers = list(self.children.values())
        if state is None:
            state = [None] * len(layers)
        elif not isinstance(state, (list, tuple)) or len(state) != len(layers):
            got = len(state) if isinstance(state, (list, tuple)) else type(state).__name__
            raise ValueError(f"state must be a list with one entry per layer ({len(layers)}), got {got}")
        new_state = []
        for i, (layer, s) in enumerate(zip(layers, state)):
            x, last = layer.forward(x, s)
            new_state.append(last)
            if i < len(self.drops):
                self.drops[i].training = self.training
                x = self.drops[i].forward(x)
        return x, new_state

    def backward(self, dhs):
        """dhs (T, N, H) of the top layer -> dx (T, N, D); parameter gradients accumulate."""
        layers = list(self.children.values())
        for i in reversed(range(len(layers))):
            if i < len(self.drops):
                dhs = self.drops[i].backward(dhs)
            dhs = layers[i].backward(dhs)
        return dhs

    @property
    def layers(self) -> int:
        return len(self.children)


class RNN(_Stack):
    def __init__(self, input_size, hidden_size, layers=1, activation="tanh", *, rng, dtype=np.float32,
                 init="uniform", init_scale=None):
        super().__init__()
        _check_sizes(input_size, hidden_size, layers)
        self.input_size, self.hidden_size, self.activation = input_size, hidden_size, activation
        for i in range(layers):
            self.add_module(f"l{i}", RNNLayer(input_size if i == 0 else hidden_size, hidden_size, activation,
                                              rng=rng, dtype=dtype, init=init, init_scale=init_scale))

    def forward(self, x, state=None):
        """x (T, N, D), state [h (N, H) per layer] or None -> (hs (T, N, H), state)."""
        return self._forward_stack(x, state)

    def __repr__(self):
        return f"RNN({self.input_size}, {self.hidden_size}, layers={self.layers}, activation={self.activation!r})"


class LSTM(_Stack):
    def __init__(self, input_size, hidden_size, layers=1, forget_bias=1.0, *, rng, dtype=np.float32,
                 init="uniform", init_scale=None):
        super().__init__()
        _check_sizes(input_size, hidden_size, layers)
        self.input_size, self.hidden_size, self.forget_bias = input_size, hidden_size, forget_bias
        for i in range(layers):
            self.add_module(f"l{i}", LSTMLayer(input_size if i == 0 else hidden_size, hidden_size, forget_bias,
                                               rng=rng, dtype=dtype, init=init, init_scale=init_scale))

    def forward(self, x, state=None):
        """x (T, N, D), state [(h, c) per layer] or None -> (hs (T, N, H), state); a None entry is zeros."""
        for s in state or ():
            if s is not None and not (isinstance(s, (tuple, list)) and len(s) == 2):
                raise ValueError("LSTM state must be a list of (h, c) pairs, one per layer")
        hs, new_state = self._forward_stack(x, state)
        return hs, [tuple(s) for s in new_state]

    def __repr__(self):
        return f"LSTM({self.input_size}, {self.hidden_size}, layers={self.layers}, forget_bias={self.forget_bias})"


class GRU(_Stack):
    def __init__(self, input_size, hidden_size, layers=1, *, rng, dtype=np.float32, init="uniform", init_scale=None):
        super().__init__()
        _check_sizes(input_size, hidden_size, layers)
        self.input_size, self.hidden_size = input_size, hidden_size
        for i in range(layers):
            self.add_module(f"l{i}", GRULayer(input_size if i == 0 else hidden_size, hidden_size,
                                              rng=rng, dtype=dtype, init=init, init_scale=init_scale))

    def forward(self, x, state=None):
        """x (T, N, D), state [h (N, H) per layer] or None -> (hs (T, N, H), state)."""
        return self._forward_stack(x, state)

    def __repr__(self):
        return f"GRU({self.input_size}, {self.hidden_size}, layers={self.layers})"
