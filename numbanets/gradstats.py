"""Per-time-step gradient statistics of an unrolled RNN, LSTM or GRU (vanishing and exploding gradients).

Time steps are numbered t = 1 .. T; h_0 (and c_0) is the initial state, x_t
the input of step t, k = T - t the number of steps between h_t and the last
state. The per-step Jacobians are built explicitly from the forward pass of
the numbanets kernels (everything in float64):

    RNN   h_t = phi(a_t),  a_t = W_ih x_t + W_hh h_{t-1} + b
          J_t = dh_t/dh_{t-1} = diag(phi'(a_t)) W_hh                         (H x H)
    LSTM  state s_t = (h_t, c_t);  J_t = ds_t/ds_{t-1}                      (2H x 2H)
          dc_t/dh_{t-1} = sum_gates diag(dc_t/da_gate) W_hh[gate],  dc_t/dc_{t-1} = diag(f_t)
          dh_t/dh_{t-1} = diag(tanh(c_t) o'(t)) W_hh[o] + diag(o_t tanh'(c_t)) dc_t/dh_{t-1}
          dh_t/dc_{t-1} = diag(o_t tanh'(c_t) f_t)
    GRU   h_t = (1 - z) n + z h_{t-1},  n = tanh(a_n),  a_n = W_in x_t + b_in + r hn_t,  hn_t = W_hn h_{t-1} + b_hn
          J_t = diag(z) + diag((1 - z) n' r) W_hn + diag((1 - z) n' hn_t r') W_hr + diag((h_{t-1} - n) z') W_hz
                                                                             (H x H; r' = r (1 - r), ...)

and multiplied: P(T, t) = J_T J_{T-1} ... J_{t+1} = ds_T/ds_t. For the LSTM,
"dh_T/dh_t" is the h-to-h block of P(T, t) (every path through the gates and
the cell, c_t held fixed) and "dc_T/dc_t" its c-to-c block. Spectral norms
come from numpy's SVD. `kernel_jacobians` gets the same products from the
backward kernels instead (unit-vector batches through functional.rnn_backward /
lstm_backward / gru_backward on sub-sequences); the tests check that both agree with each
other and with finite differences.

The gradient itself (`grad_norm`) is what backpropagation through time
computes with the kernels: a softmax cross-entropy loss on the last step's
readout y_T = W_y h_T, backpropagated by functional.rnn_backward /
lstm_backward run from h_t.

Theory (Pascanu, Mikolov and Bengio 2013): ||J_t|| <= lambda1(W_hh) * max|phi'|,
so lambda1 * gamma < 1 (gamma = sup |phi'|: 1 for tanh, relu, identity; 1/4
for sigmoid) is sufficient for vanishing gradients and > 1 necessary for
exploding ones; ||P(T, t)||^(1/k) tends to the spectral radius rho(W_hh) of
a linear RNN as k grows (Gelfand's formula), not to lambda1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from numbanets import functional as F

__all__ = [
    "CELLS", "DEFAULT_CELLS", "INITS", "GAMMA", "SATURATION", "STEP_COLUMNS", "SUMMARY_COLUMNS",
    "Cell", "Unroll", "GradStats", "cell_kind", "recurrent_matrix", "make_cell", "unroll",
    "step_jacobian", "step_jacobians", "jacobian_products", "input_jacobian",
    "kernel_jacobians", "kernel_input_jacobians", "bptt_grads", "gradient_statistics",
    "spectral_norms", "decay_fit",
]

# cell name -> (kind, activation). The LSTM's "activation" is tanh(c_t), the squashing of its cell output;
# the GRU's tanh(n_t), its candidate state.
CELLS = {
    "rnn-tanh": ("rnn", "tanh"),
    "rnn-sigmoid": ("rnn", "sigmoid"),
    "rnn-relu": ("rnn", "relu"),
    "rnn-identity": ("rnn", "identity"),
    "lstm": ("lstm", "tanh(c)"),
    "gru": ("gru", "tanh(n)"),
}
DEFAULT_CELLS = ("rnn-tanh", "rnn-sigmoid", "rnn-relu", "lstm")
INITS = ("normal", "uniform", "orthogonal", "identity", "zero")
GAMMA = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0, "identity": 1.0}
SATURATION = 0.01  # |phi'| below this counts as saturated

STEP_COLUMNS = (
    "grad_norm", "grad_ratio", "jac_spec", "jac_fro2", "step_ratio", "jac_step_spec",
    "sens_hidden", "sens_out", "dphi_mean", "dphi_max", "saturated_frac",
    "gate_i", "gate_f", "gate_o", "cec_path", "dc_norm", "grad_c_norm",
)
SUMMARY_COLUMNS = (
    "rho", "lambda1", "gamma", "lambda1_gamma", "effective_rate",
    "decay_slope", "decay_factor", "steps_to_1e-3",
)


# --------------------------------------------------------------------------- cells and weights

def cell_kind(name: str) -> tuple[str, str]:
    """("rnn" | "lstm" | "gru", activation) of a cell name; ValueError naming the choices."""
    if not isinstance(name, str) or name.lower() not in CELLS:
        raise ValueError(f"unknown cell {name!r}; choose from {', '.join(CELLS)}")
    return CELLS[name.lower()]


@dataclass(frozen=True)
class Cell:
    """A recurrent cell's weights in numbanets' (PyTorch's) layout, float64.

    RNN: w_ih (H, D), w_hh (H, H), b (H,); LSTM: w_ih (4H, D), w_hh (4H, H), b (4H,), gates i, f, g, o;
    GRU: w_ih (3H, D), w_hh (3H, H), b = b_ih (3H,) and b_hh (3H,), gates r, z, n.
    """

    name: str
    w_ih: np.ndarray
    w_hh: np.ndarray
    b: np.ndarray
    b_hh: np.ndarray | None = None  # the GRU's second bias (None: zeros)

    @property
    def kind(self) -> str:
        return cell_kind(self.name)[0]

    @property
    def activation(self) -> str:
        return cell_kind(self.name)[1]

    @property
    def hidden(self) -> int:
        return self.w_hh.shape[1]

    @property
    def input_size(self) -> int:
        return self.w_ih.shape[1]

    @property
    def state_size(self) -> int:
        """H for an RNN, 2H for an LSTM (h and c)."""
        return self.hidden * (2 if self.kind == "lstm" else 1)


def recurrent_matrix(init: str, hidden: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """One (H, H) recurrent matrix g * init.

    normal: N(0, g^2/H); uniform: U(-g sqrt(3/H), g sqrt(3/H)) (the same variance);
    orthogonal: g Q, Q Haar-distributed (QR of a Gaussian, signs fixed);
    identity: g I; zero: 0 (g ignored).
    """
    h = int(hidden)
    if init == "normal":
        return rng.normal(0.0, scale / math.sqrt(h), (h, h))
    if init == "uniform":
        a = scale * math.sqrt(3.0 / h)
        return rng.uniform(-a, a, (h, h))
    if init == "orthogonal":
        q, r = np.linalg.qr(rng.normal(size=(h, h)))
        return scale * (q * np.where(np.diag(r) < 0, -1.0, 1.0))
    if init == "identity":
        return scale * np.eye(h)
    if init == "zero":
        return np.zeros((h, h))
    raise ValueError(f"unknown init {init!r}; choose from {', '.join(INITS)}")


def make_cell(name: str, hidden: int, input_size: int, rng: np.random.Generator, *, init: str = "normal",
              scale: float = 1.0, bias: float = 0.0, forget_bias: float = 1.0,
              input_scale: float | None = None) -> Cell:
    """Random weights for `name` (see CELLS).

    w_hh: `recurrent_matrix(init, H, scale)` (the LSTM: one per gate block i, f, g, o; the GRU: r, z, n);
    w_ih: N(0, input_scale^2 / D) (default input_scale 1: unit-variance drive for N(0, 1) input);
    b: `bias` for every RNN unit; the LSTM's b is 0 except the forget gate's, `forget_bias`; the GRU's
    b_ih is 0 except the update gate's, `bias` (z = sigmoid(bias) with zero input and w_hh), b_hh = 0.
    """
    kind, _ = cell_kind(name)
    if isinstance(hidden, bool) or not isinstance(hidden, (int, np.integer)) or hidden < 1:
        raise ValueError(f"hidden size must be an int >= 1, got {hidden!r}")
    if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) or input_size < 1:
        raise ValueError(f"input size must be an int >= 1, got {input_size!r}")
    if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose from {', '.join(INITS)}")
    h, d = int(hidden), int(input_size)
    gates = {"lstm": 4, "gru": 3}.get(kind, 1)
    s_in = 1.0 if input_scale is None else float(input_scale)
    w_hh = np.concatenate([recurrent_matrix(init, h, scale, rng) for _ in range(gates)])
    w_ih = rng.normal(0.0, s_in / math.sqrt(d), (gates * h, d))
    if kind == "lstm":
        b = np.zeros(4 * h)
        b[h:2 * h] = forget_bias
    elif kind == "gru":
        b = np.zeros(3 * h)
        b[h:2 * h] = bias
        return Cell(name.lower(), w_ih, np.ascontiguousarray(w_hh), b, np.zeros(3 * h))
    else:
        b = np.full(h, float(bias))
    return Cell(name.lower(), w_ih, np.ascontiguousarray(w_hh), b)


# --------------------------------------------------------------------------- forward pass

@dataclass
class Unroll:
    """The forward pass of a cell over x, from the kernels. hs, cs (T, N, H); gates (T, N, 4H or 3H) or None;
    hns (T, N, H) the GRU's W_hn h_{t-1} + b_hn, else None."""

    cell: Cell
    x: np.ndarray
    h0: np.ndarray
    c0: np.ndarray | None
    hs: np.ndarray
    cs: np.ndarray | None = None
    gates: np.ndarray | None = None
    hns: np.ndarray | None = None

    @property
    def steps(self) -> int:
        return self.x.shape[0]

    def h(self, t: int) -> np.ndarray:
        """h_t, t = 0 .. T."""
        return self.h0 if t == 0 else self.hs[t - 1]

    def c(self, t: int) -> np.ndarray:
        """c_t (LSTM), t = 0 .. T."""
        return self.c0 if t == 0 else self.cs[t - 1]

    def dphi(self, t: int) -> np.ndarray:
        """phi' at step t = 1 .. T (N, H): the RNN's activation; the LSTM's tanh(c_t), 1 - tanh^2; the GRU's
        candidate n_t = tanh(a_n), 1 - n^2."""
        if self.cell.kind == "lstm":
            return 1.0 - np.tanh(self.cs[t - 1]) ** 2
        if self.cell.kind == "gru":
            n = self.gates[t - 1][:, 2 * self.cell.hidden:]
            return 1.0 - n * n
        return _dphi_from_output(self.hs[t - 1], self.cell.activation)


def _dphi_from_output(y: np.ndarray, activation: str) -> np.ndarray:
    if activation == "tanh":
        return 1.0 - y * y
    if activation == "sigmoid":
        return y * (1.0 - y)
    if activation == "relu":
        return (y > 0).astype(y.dtype)
    return np.ones_like(y)


def _f64(a, name):
    a = np.ascontiguousarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return a


def _run(cell: Cell, x, h0, c0):
    """Forward through the kernels: (hs, cs, gates, cache)."""
    if cell.kind == "lstm":
        hs, _, cache = F.lstm_forward(x, h0, c0, cell.w_ih, cell.w_hh, cell.b)
        return hs, cache.cs, cache.gates, cache
    if cell.kind == "gru":
        b_hh = np.zeros_like(cell.b) if cell.b_hh is None else cell.b_hh
        hs, _, cache = F.gru_forward(x, h0, cell.w_ih, cell.w_hh, cell.b, b_hh)
        return hs, None, cache.gates, cache
    hs, cache = F.rnn_forward(x, h0, cell.w_ih, cell.w_hh, cell.b, cell.activation)
    return hs, None, None, cache


def unroll(cell: Cell, x, h0, c0=None) -> Unroll:
    """Run the cell's forward kernel over x (T, N, D) from h0 (N, H) (and c0, zeros by default)."""
    x = _f64(x, "x")
    h0 = _f64(h0, "h0")
    if cell.kind == "lstm":
        c0 = np.zeros_like(h0) if c0 is None else _f64(c0, "c0")
    else:
        c0 = None
    hs, cs, gates, cache = _run(cell, x, h0, c0)
    return Unroll(cell, x, h0, c0, hs, cs, gates, cache.hns if cell.kind == "gru" else None)


# --------------------------------------------------------------------------- explicit Jacobians

def _lstm_pre(u: Unroll, t: int):
    """d c_t / d a_t and d h_t / d a_t as (N, 4H) diagonals (pre-activations a_t, gates i, f, g, o),
    and the diagonals of dh_t/dc_{t-1}, dc_t/dc_{t-1} (N, H)."""
    H = u.cell.hidden
    g = u.gates[t - 1]
    i, f, gg, o = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
    c_prev = u.c(t - 1)
    tc = np.tanh(u.c(t))
    dtc = 1.0 - tc * tc
    dc_da = np.concatenate([gg * i * (1 - i), c_prev * f * (1 - f), i * (1 - gg * gg), np.zeros_like(o)], axis=1)
    dh_da = np.tile(o * dtc, 4) * dc_da
    dh_da[:, 3 * H:] = tc * o * (1 - o)
    return dc_da, dh_da, o * dtc * f, f


def _through(diags: np.ndarray, w: np.ndarray, gates: int = 4) -> np.ndarray:
    """sum over the gates of diag(diags[gate]) w[gate]: (N, gates*H) x (gates*H, M) -> (N, H, M)."""
    n, gh = diags.shape
    return np.einsum("ngh,ghm->nhm", diags.reshape(n, gates, gh // gates), w.reshape(gates, gh // gates, w.shape[1]))


def _gru_pre(u: Unroll, t: int):
    """The GRU's step t as three (N, H) diagonals, one per gate block r, z, n of a weight matrix W (3H, M):
    d h_t / d(W v) = diag(dr) W_r + diag(dz) W_z + diag(dn) W_n, for v = h_{t-1} (W = w_hh) or x_t (W = w_ih,
    where the n block is not multiplied by r: dn_input), and the direct path diag(z)."""
    H = u.cell.hidden
    g = u.gates[t - 1]
    r, z, n = g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
    dn_input = (1.0 - z) * (1.0 - n * n)  # d h_t / d a_n
    dr = dn_input * u.hns[t - 1] * r * (1.0 - r)
    dz = (u.h(t - 1) - n) * z * (1.0 - z)
    return dr, dz, dn_input * r, dn_input, z


def _through3(dr, dz, dn, w: np.ndarray) -> np.ndarray:
    """diag(dr) w[r] + diag(dz) w[z] + diag(dn) w[n]: three (N, H) diagonals and w (3H, M) -> (N, H, M)."""
    return _through(np.concatenate([dr, dz, dn], axis=1), w, 3)


def step_jacobian(u: Unroll, t: int) -> np.ndarray:
    """J_t = d s_t / d s_{t-1}, t = 1 .. T: (N, H, H) for an RNN and a GRU, (N, 2H, 2H) for an LSTM (h first,
    then c)."""
    cell = u.cell
    if cell.kind == "rnn":
        return u.dphi(t)[:, :, None] * cell.w_hh[None, :, :]
    if cell.kind == "gru":
        dr, dz, dn_rec, _, z = _gru_pre(u, t)
        J = _through3(dr, dz, dn_rec, cell.w_hh)
        idx = np.arange(cell.hidden)
        J[:, idx, idx] += z
        return J
    H = cell.hidden
    dc_da, dh_da, dh_dc, dc_dc = _lstm_pre(u, t)
    n = dc_da.shape[0]
    J = np.zeros((n, 2 * H, 2 * H))
    J[:, :H, :H] = _through(dh_da, cell.w_hh)
    J[:, H:, :H] = _through(dc_da, cell.w_hh)
    idx = np.arange(H)
    J[:, idx, H + idx] = dh_dc
    J[:, H + idx, H + idx] = dc_dc
    return J


def step_jacobians(u: Unroll) -> np.ndarray:
    """All J_t stacked: (T, N, S, S), entry t-1 holding J_t."""
    return np.stack([step_jacobian(u, t) for t in range(1, u.steps + 1)])


def jacobian_products(u: Unroll) -> np.ndarray:
    """P(T, t) = d s_T / d s_t for t = 0 .. T: (T + 1, N, S, S), entry t holding P(T, t); P(T, T) = I."""
    T = u.steps
    n, S = u.h0.shape[0], u.cell.state_size
    P = np.empty((T + 1, n, S, S))
    P[T] = np.eye(S)
    for t in range(T, 0, -1):
        P[t - 1] = P[t] @ step_jacobian(u, t)
    return P


def input_jacobian(u: Unroll, t: int) -> np.ndarray:
    """d s_t / d x_t (N, S, D): how step t's state moves with its own input."""
    cell = u.cell
    if cell.kind == "rnn":
        return u.dphi(t)[:, :, None] * cell.w_ih[None, :, :]
    if cell.kind == "gru":
        dr, dz, _, dn_input, _ = _gru_pre(u, t)
        return _through3(dr, dz, dn_input, cell.w_ih)
    dc_da, dh_da, _, _ = _lstm_pre(u, t)
    return np.concatenate([_through(dh_da, cell.w_ih), _through(dc_da, cell.w_ih)], axis=1)


def spectral_norms(m: np.ndarray) -> np.ndarray:
    """||m[..., :, :]||_2 for a stack of matrices; inf where a matrix is not finite."""
    m = np.asarray(m, dtype=np.float64)
    out = np.full(m.shape[:-2], np.inf)
    ok = np.all(np.isfinite(m), axis=(-2, -1))
    if np.any(ok):
        out[ok] = np.linalg.norm(m[ok], ord=2, axis=(-2, -1))
    return out


# --------------------------------------------------------------------------- the same through the backward kernels

def _backward(cell: Cell, cache, dhs, dc_T=None):
    """(dx, dh0, dc0) of the backward kernel (dc0 None for an RNN and a GRU)."""
    if cell.kind == "lstm":
        dx, dh0, dc0, *_ = F.lstm_backward(dhs, cache, dc_T)
        return dx, dh0, dc0
    if cell.kind == "gru":
        dx, dh0, *_ = F.gru_backward(dhs, cache)
        return dx, dh0, None
    dx, dh0, *_ = F.rnn_backward(dhs, cache)
    return dx, dh0, None


def _rep(a, times, axis):
    return None if a is None else np.ascontiguousarray(np.repeat(a, times, axis=axis))


def kernel_jacobians(u: Unroll, t: int) -> np.ndarray:
    """P(T, t) = d s_T / d s_t (N, S, S) from the backward kernels, t = 0 .. T - 1.

    The sub-sequence x_{t+1} .. x_T is run from (h_t, c_t) with every batch row
    repeated S times; backpropagating the unit vectors e_j as dL/dh_T (and, for
    the LSTM, as dL/dc_T) gives row j of P in dh0 (and dc0).
    """
    cell = u.cell
    H, S = cell.hidden, cell.state_size
    n = u.h0.shape[0]
    x = _rep(u.x[t:], H, 1)
    h = _rep(u.h(t), H, 0)
    c = _rep(u.c(t), H, 0) if cell.kind == "lstm" else None
    _, _, _, cache = _run(cell, x, h, c)
    eye = np.tile(np.eye(H), (n, 1))
    P = np.empty((n, S, S))
    dhs = np.zeros((u.steps - t, n * H, H))
    dhs[-1] = eye
    _, dh0, dc0 = _backward(cell, cache, dhs, None if c is None else np.zeros_like(c))
    P[:, :H, :H] = dh0.reshape(n, H, H)
    if cell.kind == "lstm":
        P[:, :H, H:] = dc0.reshape(n, H, H)
        _, dh0, dc0 = _backward(cell, cache, np.zeros_like(dhs), eye)
        P[:, H:, :H] = dh0.reshape(n, H, H)
        P[:, H:, H:] = dc0.reshape(n, H, H)
    return P


def kernel_input_jacobians(u: Unroll, t: int) -> np.ndarray:
    """d h_t / d x_1 (N, H, D) from the backward kernels (unit vectors as dL/dh_t over x_1 .. x_t)."""
    cell = u.cell
    H = cell.hidden
    n = u.h0.shape[0]
    x = _rep(u.x[:t], H, 1)
    h = _rep(u.h0, H, 0)
    c = _rep(u.c0, H, 0) if cell.kind == "lstm" else None
    _, _, _, cache = _run(cell, x, h, c)
    dhs = np.zeros((t, n * H, H))
    dhs[-1] = np.tile(np.eye(H), (n, 1))
    dx, _, _ = _backward(cell, cache, dhs, None if c is None else np.zeros_like(c))
    return dx[0].reshape(n, H, cell.input_size)


def bptt_grads(u: Unroll, dh_T: np.ndarray):
    """(dL/dh_t, dL/dc_t) for t = 1 .. T, each (T, N, H) (dL/dc_t None for an RNN), when the loss
    sees only h_T (dL/dh_T = dh_T), by BPTT in the kernels: the gradients at step t are dh0 (and
    dc0) of the backward pass run from (h_t, c_t) over x_{t+1} .. x_T."""
    T = u.steps
    cell = u.cell
    lstm = cell.kind == "lstm"
    g = np.empty((T,) + u.h0.shape)
    gc = np.empty((T,) + u.h0.shape) if lstm else None
    g[T - 1] = dh_T
    if lstm:
        gc[T - 1] = 0.0  # the loss reads h_T only, and c_T is a separate state variable
    for t in range(1, T):
        c = u.c(t) if lstm else None
        _, _, _, cache = _run(cell, np.ascontiguousarray(u.x[t:]), np.ascontiguousarray(u.h(t)), c)
        dhs = np.zeros((T - t,) + u.h0.shape)
        dhs[-1] = dh_T
        _, dh0, dc0 = _backward(cell, cache, dhs, None if c is None else np.zeros_like(c))
        g[t - 1] = dh0
        if lstm:
            gc[t - 1] = dc0
    return g, gc


# --------------------------------------------------------------------------- the statistics

@dataclass
class GradStats:
    """Per-step columns (each (T,), entry t-1 for step t; NaN where undefined) and the summary."""

    steps: dict
    summary: dict
    per_sample: dict  # (T, N) arrays before the batch mean: jac_spec, jac_step_spec, dphi_max

    @property
    def T(self) -> int:
        return len(self.steps["grad_norm"])


def _radius_and_norm(cell: Cell) -> tuple[float, float]:
    lam1 = float(np.linalg.norm(cell.w_hh, 2))
    if cell.kind != "rnn":
        return math.nan, lam1  # w_hh (4H, H) or (3H, H) is not square: no spectral radius
    return float(np.max(np.abs(np.linalg.eigvals(cell.w_hh)))), lam1


def decay_fit(grad_norm: np.ndarray) -> tuple[float, float, float]:
    """(slope of log10 grad_norm against t, 10^-slope, steps back to a thousandth = 3 / slope).

    slope > 0: the gradient shrinks going back in time (vanishing); steps_to_1e-3 is
    inf when it does not shrink (slope <= 1e-12, rounding included). NaN with fewer
    than two positive, finite norms.
    """
    g = np.asarray(grad_norm, dtype=np.float64)
    t = np.arange(1, len(g) + 1, dtype=np.float64)
    ok = np.isfinite(g) & (g > 0)
    if ok.sum() < 2:
        return math.nan, math.nan, math.nan
    slope = float(np.polyfit(t[ok], np.log10(g[ok]), 1)[0])
    steps = 3.0 / slope if slope > 1e-12 else math.inf
    return slope, 10.0 ** (-slope), steps


def gradient_statistics(cell: Cell, x, h0, readout, targets, c0=None, readout_bias=None) -> GradStats:
    """Everything grad-decay reports for one cell and one input batch.

    x (T, N, D), h0 (N, H), readout W_y (O, H), targets (N,) int in 0..O-1: the loss is the
    softmax cross-entropy of y_T = W_y h_T + b_y (mean over the batch; b_y = 0 by default).
    Per-step values are means over the batch (grad_norm: the norm of the whole (N, H)
    gradient). An exploding network gives inf or NaN entries, not warnings.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _gradient_statistics(cell, x, h0, readout, targets, c0, readout_bias)


def _gradient_statistics(cell: Cell, x, h0, readout, targets, c0, readout_bias) -> GradStats:
    u = unroll(cell, x, h0, c0)
    T, n = u.steps, u.h0.shape[0]
    H, S = cell.hidden, cell.state_size
    W_y = _f64(readout, "readout")
    if W_y.ndim != 2 or W_y.shape[1] != H:
        raise ValueError(f"readout must have shape (O, {H}), got {W_y.shape}")
    lstm = cell.kind == "lstm"

    # the gradient: loss on the last step, BPTT through the kernels
    b_y = None if readout_bias is None else _f64(readout_bias, "readout_bias")
    logits = F.linear(u.hs[-1], W_y, b_y)
    _, dlogits = F.softmax_cross_entropy(logits, np.asarray(targets, dtype=np.int64))
    dh_T, _, _ = F.linear_backward(dlogits, u.hs[-1], W_y)
    g, gc = bptt_grads(u, dh_T)
    grad_norm = np.sqrt(np.sum(g * g, axis=(1, 2)))

    nan = np.full(T, np.nan)
    cols = {name: nan.copy() for name in STEP_COLUMNS}
    per = {"jac_spec": np.empty((T, n)), "jac_step_spec": np.full((T, n), np.nan), "dphi_max": np.empty((T, n))}
    cols["grad_norm"] = grad_norm
    if lstm:
        cols["grad_c_norm"] = np.sqrt(np.sum(gc * gc, axis=(1, 2)))
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["grad_ratio"] = grad_norm / grad_norm[-1]
        cols["step_ratio"][:-1] = grad_norm[:-1] / grad_norm[1:]

    # backwards in t: P = P(T, t), f_prod = prod_{s > t} f_s (LSTM)
    P = np.broadcast_to(np.eye(S), (n, S, S)).copy()
    f_prod = np.ones((n, H))
    for t in range(T, 0, -1):
        i = t - 1
        Phh = P[:, :H, :H]
        spec = spectral_norms(Phh)
        per["jac_spec"][i] = spec
        cols["jac_spec"][i] = spec.mean()
        cols["jac_fro2"][i] = np.mean(np.sum(Phh * Phh, axis=(1, 2)) / H)
        dphi = np.abs(u.dphi(t))
        per["dphi_max"][i] = dphi.max(axis=1)
        cols["dphi_mean"][i] = dphi.mean()
        cols["dphi_max"][i] = dphi.max()
        cols["saturated_frac"][i] = np.mean(dphi < SATURATION)
        if lstm:
            gates = u.gates[i]
            cols["gate_i"][i] = gates[:, :H].mean()
            cols["gate_f"][i] = gates[:, H:2 * H].mean()
            cols["gate_o"][i] = gates[:, 3 * H:].mean()
            cols["cec_path"][i] = np.mean(np.max(np.abs(f_prod), axis=1))
            cols["dc_norm"][i] = spectral_norms(P[:, H:, H:]).mean()
            f_prod = f_prod * gates[:, H:2 * H]
        J = step_jacobian(u, t)
        if t >= 2:
            # row t - 1 holds ||d s_t / d s_{t-1}||
            step = spectral_norms(J)
            per["jac_step_spec"][i - 1] = step
            cols["jac_step_spec"][i - 1] = step.mean()
        P = P @ J

    # sensitivity to the first input, forward in t: A_t = d s_t / d x_1. ||W_y A|| = ||R A|| for
    # W_y = Q R (Q with orthonormal columns): the same norm from an (H, D) instead of an (O, D) matrix
    R = np.linalg.qr(W_y, mode="r") if W_y.shape[0] > H else W_y
    A = input_jacobian(u, 1)
    for t in range(1, T + 1):
        if t > 1:
            A = step_jacobian(u, t) @ A
        Ah = A[:, :H, :]
        cols["sens_hidden"][t - 1] = spectral_norms(Ah).mean()
        cols["sens_out"][t - 1] = spectral_norms(np.einsum("oh,nhd->nod", R, Ah)).mean()

    rho, lam1 = _radius_and_norm(cell)
    gamma = GAMMA[cell.activation] if cell.kind == "rnn" else math.nan
    slope, factor, to_1e3 = decay_fit(grad_norm)
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = float(cols["jac_spec"][0] ** (1.0 / (T - 1))) if T > 1 else math.nan
    summary = {
        "rho": rho, "lambda1": lam1, "gamma": gamma, "lambda1_gamma": lam1 * gamma,
        "effective_rate": eff, "decay_slope": slope, "decay_factor": factor, "steps_to_1e-3": to_1e3,
    }
    return GradStats(cols, summary, per)
