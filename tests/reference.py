"""Float64 reference implementations that every kernel test compares against.

Each function is written straight from the mathematical definition of its op:
explicit sums over the kernel window, the pooling max taken tap by tap, the
recurrences stepped one time step, one sample and one unit at a time. They are
deliberately slow and deliberately simple: no im2col, no vectorised tricks, and
nothing imported from numbanets, so that a bug in a kernel cannot be copied
into the number it is checked against. Keep test shapes tiny.

Every function converts its float inputs with np.asarray(..., dtype=np.float64)
and returns float64 arrays (pooling indices are int64).

Conventions (the same as numbanets): images NCHW, sequences time-major
(T, N, D), PyTorch weight layouts; LSTM gate order i, f, g, o.

Padding of one spatial dimension of size M, window K, stride s:
an int p (p before and after), "valid" (0, 0), "full" (K - 1, K - 1), or
"same": out = ceil(M / s), total = max((out - 1) * s + K - M, 0),
before = total // 2, after = total - before. The output size is
floor((M + before + after - K) / s) + 1.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "resolve_padding_ref",
    "conv2d_ref",
    "conv1d_ref",
    "max_pool2d_ref",
    "max_pool1d_ref",
    "gap_ref",
    "gap_backward_ref",
    "linear_ref",
    "activation_ref",
    "softmax_ref",
    "softmax_cross_entropy_ref",
    "rnn_ref",
    "lstm_ref",
    "clip_grad_norm_ref",
    "sgd_ref",
    "adagrad_ref",
    "rmsprop_ref",
    "adam_ref",
]


def _f64(a):
    return np.asarray(a, dtype=np.float64)


# ----------------------------------------------------------------- padding --

def resolve_padding_ref(padding, in_size, kernel, stride):
    """(before, after) padding of ONE spatial dimension, from the definitions."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0
        if padding == "full":
            return kernel - 1, kernel - 1
        if padding == "same":
            out = -(-in_size // stride)  # ceil(M / s)
            total = max((out - 1) * stride + kernel - in_size, 0)
            before = total // 2
            return before, total - before
        raise ValueError(f"unknown padding mode {padding!r}")
    return int(padding), int(padding)


def _pair(value):
    """An int or a 2-sequence as a 2-tuple."""
    if isinstance(value, (tuple, list)):
        assert len(value) == 2, value
        return tuple(value)
    return (value, value)


def _out_size(in_size, kernel, stride, before, after):
    return (in_size + before + after - kernel) // stride + 1


# ------------------------------------------------------------- convolution --

def conv2d_ref(x, w, b=None, stride=1, padding=0, groups=1):
    """y[n,f,i,j] = b[f] + sum_{c in f's group, u, v} w[f,c,u,v] * x[n, g*Cg + c, i*sh+u-ph, j*sw+v-pw].

    x (N, C, H, W), w (F, C//groups, KH, KW), b (F,) or None -> y (N, F, OH, OW).
    Taps outside the image count as zero.
    """
    x, w = _f64(x), _f64(w)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    assert C == Cg * groups and F % groups == 0
    Fg = F // groups
    sh, sw = _pair(stride)
    pad_h, pad_w = (padding, padding) if isinstance(padding, str) else _pair(padding)
    ph, ph_after = resolve_padding_ref(pad_h, H, KH, sh)
    pw, pw_after = resolve_padding_ref(pad_w, W, KW, sw)
    OH = _out_size(H, KH, sh, ph, ph_after)
    OW = _out_size(W, KW, sw, pw, pw_after)
    y = np.zeros((N, F, OH, OW))
    for n in range(N):
        for f in range(F):
            g = f // Fg
            for i in range(OH):
                for j in range(OW):
                    acc = 0.0 if b is None else float(b[f])
                    for c in range(Cg):
                        for u in range(KH):
                            h = i * sh + u - ph
                            if h < 0 or h >= H:
                                continue
                            for v in range(KW):
                                col = j * sw + v - pw
                                if col < 0 or col >= W:
                                    continue
                                acc += w[f, c, u, v] * x[n, g * Cg + c, h, col]
                    y[n, f, i, j] = acc
    return y


def conv1d_ref(x, w, b=None, stride=1, padding=0, groups=1):
    """y[n,f,i] = b[f] + sum_{c in f's group, u} w[f,c,u] * x[n, g*Cg + c, i*s+u-p].

    x (N, C, L), w (F, C//groups, K), b (F,) or None -> y (N, F, OL).
    """
    x, w = _f64(x), _f64(w)
    N, C, L = x.shape
    F, Cg, K = w.shape
    assert C == Cg * groups and F % groups == 0
    Fg = F // groups
    s = stride[0] if isinstance(stride, (tuple, list)) else stride
    p = padding[0] if isinstance(padding, (tuple, list)) else padding
    before, after = resolve_padding_ref(p, L, K, s)
    OL = _out_size(L, K, s, before, after)
    y = np.zeros((N, F, OL))
    for n in range(N):
        for f in range(F):
            g = f // Fg
            for i in range(OL):
                acc = 0.0 if b is None else float(b[f])
                for c in range(Cg):
                    for u in range(K):
                        t = i * s + u - before
                        if 0 <= t < L:
                            acc += w[f, c, u] * x[n, g * Cg + c, t]
                y[n, f, i] = acc
    return y


# ------------------------------------------------------------- max pooling --

def max_pool2d_ref(x, kernel_size, stride=None, padding=0):
    """y[n,c,i,j] = max over the window of x (padding counts as -inf).

    x (N, C, H, W) -> (y (N, C, OH, OW) float64, indices (N, C, OH, OW) int64).
    indices = h*W + w of the max in the unpadded plane; ties: the first in
    row-major window order wins (strictly-greater comparison). A window made
    only of padding gives -inf and index -1.
    """
    x = _f64(x)
    N, C, H, W = x.shape
    KH, KW = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    pad_h, pad_w = (padding, padding) if isinstance(padding, str) else _pair(padding)
    ph, ph_after = resolve_padding_ref(pad_h, H, KH, sh)
    pw, pw_after = resolve_padding_ref(pad_w, W, KW, sw)
    OH = _out_size(H, KH, sh, ph, ph_after)
    OW = _out_size(W, KW, sw, pw, pw_after)
    y = np.full((N, C, OH, OW), -np.inf)
    idx = np.full((N, C, OH, OW), -1, dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    best, best_at = -math.inf, -1
                    for u in range(KH):
                        h = i * sh + u - ph
                        if h < 0 or h >= H:
                            continue
                        for v in range(KW):
                            col = j * sw + v - pw
                            if col < 0 or col >= W:
                                continue
                            val = x[n, c, h, col]
                            if best_at < 0 or val > best:
                                best, best_at = val, h * W + col
                    y[n, c, i, j] = best
                    idx[n, c, i, j] = best_at
    return y, idx


def max_pool1d_ref(x, kernel_size, stride=None, padding=0):
    """1-D max pooling: x (N, C, L) -> (y (N, C, OL), indices into L, int64)."""
    x = _f64(x)
    N, C, L = x.shape
    K = kernel_size[0] if isinstance(kernel_size, (tuple, list)) else kernel_size
    if stride is None:
        stride = K
    s = stride[0] if isinstance(stride, (tuple, list)) else stride
    p = padding[0] if isinstance(padding, (tuple, list)) else padding
    before, after = resolve_padding_ref(p, L, K, s)
    OL = _out_size(L, K, s, before, after)
    y = np.full((N, C, OL), -np.inf)
    idx = np.full((N, C, OL), -1, dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(OL):
                best, best_at = -math.inf, -1
                for u in range(K):
                    t = i * s + u - before
                    if 0 <= t < L:
                        val = x[n, c, t]
                        if best_at < 0 or val > best:
                            best, best_at = val, t
                y[n, c, i] = best
                idx[n, c, i] = best_at
    return y, idx


def gap_ref(x):
    """Global average pooling: y[n,c] = (1 / (H*W)) * sum over h, w of x[n,c,h,w].  (N, C, H, W) -> (N, C)."""
    x = _f64(x)
    N, C, H, W = x.shape
    y = np.zeros((N, C))
    for n in range(N):
        for c in range(C):
            total = 0.0
            for h in range(H):
                for w in range(W):
                    total += x[n, c, h, w]
            y[n, c] = total / (H * W)
    return y


def gap_backward_ref(dy, x_shape):
    """dx[n,c,h,w] = dy[n,c] / (H*W): every input of a map shares its mean's gradient equally."""
    dy = _f64(dy)
    N, C, H, W = x_shape
    dx = np.zeros((N, C, H, W))
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    dx[n, c, h, w] = dy[n, c] / (H * W)
    return dx


# ------------------------------------------------------------------- dense --

def linear_ref(x, w, b=None):
    """y[n,o] = b[o] + sum_d w[o,d] * x[n,d].   x (N, D), w (O, D), b (O,) -> y (N, O)."""
    x, w = _f64(x), _f64(w)
    N, D = x.shape
    O = w.shape[0]
    y = np.zeros((N, O))
    for n in range(N):
        for o in range(O):
            acc = 0.0 if b is None else float(b[o])
            for d in range(D):
                acc += w[o, d] * x[n, d]
            y[n, o] = acc
    return y


def _sigmoid(z):
    # 1 / (1 + e^-z), in the form that does not overflow for either sign.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


_ACTIVATIONS = {
    "identity": lambda z: z,
    "tanh": math.tanh,
    "sigmoid": _sigmoid,
    "relu": lambda z: z if z > 0.0 else 0.0,
}


def _act(name):
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}") from None


def activation_ref(x, name):
    """Element-wise identity / tanh / sigmoid / relu, any shape."""
    x = _f64(x)
    f = _act(name)
    y = np.empty_like(x)
    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    for k in range(flat_x.size):
        flat_y[k] = f(float(flat_x[k]))
    return y


def softmax_ref(x):
    """Row-wise softmax of x (N, K): exp(x - max) / sum exp(x - max)."""
    x = _f64(x)
    N, K = x.shape
    y = np.empty_like(x)
    for n in range(N):
        m = max(float(v) for v in x[n])
        e = [math.exp(float(v) - m) for v in x[n]]
        total = math.fsum(e)
        for k in range(K):
            y[n, k] = e[k] / total
    return y


def softmax_cross_entropy_ref(logits, targets):
    """Mean over n of -log softmax(logits[n])[t_n] = logsumexp(logits[n]) - logits[n, t_n].  Loss only."""
    z = _f64(logits)
    t = np.asarray(targets)
    N = z.shape[0]
    losses = []
    for n in range(N):
        m = max(float(v) for v in z[n])
        log_sum = m + math.log(math.fsum(math.exp(float(v) - m) for v in z[n]))
        losses.append(log_sum - float(z[n, int(t[n])]))
    return math.fsum(losses) / N


# -------------------------------------------------------------- recurrences --

def rnn_ref(x, h0, w_ih, w_hh, b, activation="tanh"):
    """h_t[n,j] = act(b[j] + sum_d w_ih[j,d] x_t[n,d] + sum_k w_hh[j,k] h_{t-1}[n,k]).

    x (T, N, D), h0 (N, H), w_ih (H, D), w_hh (H, H), b (H,) -> hs (T, N, H).
    """
    x, h0, w_ih, w_hh, b = (_f64(a) for a in (x, h0, w_ih, w_hh, b))
    f = _act(activation)
    T, N, D = x.shape
    H = w_hh.shape[0]
    hs = np.zeros((T, N, H))
    h_prev = h0.copy()
    for t in range(T):
        for n in range(N):
            for j in range(H):
                acc = b[j]
                for d in range(D):
                    acc += w_ih[j, d] * x[t, n, d]
                for k in range(H):
                    acc += w_hh[j, k] * h_prev[n, k]
                hs[t, n, j] = f(float(acc))
        h_prev = hs[t]
    return hs


def lstm_ref(x, h0, c0, w_ih, w_hh, b):
    """LSTM, gate rows i [0:H], f [H:2H], g [2H:3H], o [3H:4H] (torch.nn.LSTM layout).

    a_q[n,j] = b[qH+j] + sum_d w_ih[qH+j,d] x_t[n,d] + sum_k w_hh[qH+j,k] h_{t-1}[n,k]
    i, f, o = sigmoid(a), g = tanh(a); c_t = f*c_{t-1} + i*g; h_t = o*tanh(c_t).
    x (T, N, D), h0, c0 (N, H), w_ih (4H, D), w_hh (4H, H), b (4H,) -> (hs, cs) each (T, N, H).
    """
    x, h0, c0, w_ih, w_hh, b = (_f64(a) for a in (x, h0, c0, w_ih, w_hh, b))
    T, N, D = x.shape
    H = w_hh.shape[1]
    hs = np.zeros((T, N, H))
    cs = np.zeros((T, N, H))
    h_prev, c_prev = h0.copy(), c0.copy()
    for t in range(T):
        for n in range(N):
            for j in range(H):
                pre = []
                for q in range(4):  # i, f, g, o
                    r = q * H + j
                    acc = b[r]
                    for d in range(D):
                        acc += w_ih[r, d] * x[t, n, d]
                    for k in range(H):
                        acc += w_hh[r, k] * h_prev[n, k]
                    pre.append(float(acc))
                i_gate = _sigmoid(pre[0])
                f_gate = _sigmoid(pre[1])
                g_gate = math.tanh(pre[2])
                o_gate = _sigmoid(pre[3])
                c = f_gate * c_prev[n, j] + i_gate * g_gate
                cs[t, n, j] = c
                hs[t, n, j] = o_gate * math.tanh(c)
        h_prev, c_prev = hs[t], cs[t]
    return hs, cs


def gru_ref(x, h0, w_ih, w_hh, b_ih, b_hh):
    """GRU, gate rows r [0:H], z [H:2H], n [2H:3H] (torch.nn.GRU layout and definition).

    i_q[n,j] = b_ih[qH+j] + sum_d w_ih[qH+j,d] x_t[n,d]     h_q[n,j] = b_hh[qH+j] + sum_k w_hh[qH+j,k] h_{t-1}[n,k]
    r = sigmoid(i_r + h_r), z = sigmoid(i_z + h_z), n = tanh(i_n + r * h_n); h_t = (1 - z) * n + z * h_{t-1}.
    x (T, N, D), h0 (N, H), w_ih (3H, D), w_hh (3H, H), b_ih, b_hh (3H,) -> hs (T, N, H).
    """
    x, h0, w_ih, w_hh, b_ih, b_hh = (_f64(a) for a in (x, h0, w_ih, w_hh, b_ih, b_hh))
    T, N, D = x.shape
    H = w_hh.shape[1]
    hs = np.zeros((T, N, H))
    h_prev = h0.copy()
    for t in range(T):
        for n in range(N):
            for j in range(H):
                inp, rec = [], []
                for q in range(3):  # r, z, n
                    row = q * H + j
                    acc_i = b_ih[row]
                    for d in range(D):
                        acc_i += w_ih[row, d] * x[t, n, d]
                    acc_h = b_hh[row]
                    for k in range(H):
                        acc_h += w_hh[row, k] * h_prev[n, k]
                    inp.append(float(acc_i))
                    rec.append(float(acc_h))
                r_gate = _sigmoid(inp[0] + rec[0])
                z_gate = _sigmoid(inp[1] + rec[1])
                n_gate = math.tanh(inp[2] + r_gate * rec[2])
                hs[t, n, j] = (1.0 - z_gate) * n_gate + z_gate * h_prev[n, j]
        h_prev = hs[t]
    return hs


# ---------------------------------------------------------------- clipping --

def clip_grad_norm_ref(grads, max_norm):
    """Pascanu et al. 2013, Algorithm 1.

    norm = sqrt(sum of squares of every element of every array); when
    norm > max_norm every array is scaled by max_norm / norm.
    Returns (norm, list of float64 copies, scaled or not). The inputs are not touched.
    """
    arrays = [_f64(g).copy() for g in grads]
    norm = math.sqrt(math.fsum(float(v) * float(v) for a in arrays for v in a.reshape(-1)))
    if norm > max_norm:
        scale = max_norm / norm
        arrays = [a * scale for a in arrays]
    return norm, arrays


# -------------------------------------------------------------- optimizers --
# One step of each rule on float64 copies; g' = g + weight_decay * p (L2).

def sgd_ref(p, g, v, lr, momentum, weight_decay):
    """v = momentum*v + g' ; p = p - lr*v.  Returns (p, v)."""
    p, g, v = _f64(p).copy(), _f64(g), _f64(v).copy()
    gd = g + weight_decay * p
    v = momentum * v + gd
    p = p - lr * v
    return p, v


def adagrad_ref(p, g, s, lr, eps, weight_decay):
    """s = s + g'^2 ; p = p - lr*g'/(sqrt(s)+eps).  Returns (p, s)."""
    p, g, s = _f64(p).copy(), _f64(g), _f64(s).copy()
    gd = g + weight_decay * p
    s = s + gd * gd
    p = p - lr * gd / (np.sqrt(s) + eps)
    return p, s


def rmsprop_ref(p, g, s, lr, alpha, eps, weight_decay):
    """s = alpha*s + (1-alpha)*g'^2 ; p = p - lr*g'/(sqrt(s)+eps).  Returns (p, s)."""
    p, g, s = _f64(p).copy(), _f64(g), _f64(s).copy()
    gd = g + weight_decay * p
    s = alpha * s + (1.0 - alpha) * gd * gd
    p = p - lr * gd / (np.sqrt(s) + eps)
    return p, s


def adam_ref(p, g, m, v, lr, beta1, beta2, eps, step, weight_decay):
    """Adam with bias correction (step starts at 1).  Returns (p, m, v).

    m = b1*m + (1-b1)*g' ; v = b2*v + (1-b2)*g'^2 ;
    mhat = m/(1-b1^step) ; vhat = v/(1-b2^step) ; p = p - lr*mhat/(sqrt(vhat)+eps).
    """
    p, g, m, v = _f64(p).copy(), _f64(g), _f64(m).copy(), _f64(v).copy()
    gd = g + weight_decay * p
    m = beta1 * m + (1.0 - beta1) * gd
    v = beta2 * v + (1.0 - beta2) * gd * gd
    mhat = m / (1.0 - beta1**step)
    vhat = v / (1.0 - beta2**step)
    p = p - lr * mhat / (np.sqrt(vhat) + eps)
    return p, m, v
