"""The plain numpy peers of `nbnets bench`: vectorised numpy, the way min-char-rnn is written.

Not the naive loops of tests/reference.py: every op is a few large numpy calls.

    conv2d / conv2d_backward     im2col (sliding_window_view) + one matmul; backward: two matmuls
                                 and a col2im that adds one (KH, KW) tap plane at a time
    max_pool2x2 / _backward      2x2 stride-2 pooling by reshape + argmax; backward by put_along_axis
    rnn_forward / rnn_backward   the input projection of all steps in one matmul, a Python loop
    lstm_forward / lstm_backward over time with one np.dot per step, the weight gradients of all
    gru_forward / gru_backward   steps in one matmul after the loop
    softmax_xent, clip_, Optimizer   the loss, global-norm clipping and the four update rules
    CharLM, CNN                  whole training steps of the bench's models (numbanets' parameter
                                 names, weights copied in): forward, backward, clipping, update

Layouts and results are numbanets' (and PyTorch's): NCHW, time-major (T, N, D),
LSTM gates i, f, g, o with one bias; GRU gates r, z, n with two; pooling indices are flat positions h * W + w.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["conv2d", "conv2d_backward", "max_pool2x2", "max_pool2x2_backward", "rnn_forward", "rnn_backward",
           "lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "softmax_xent", "clip_", "Optimizer",
           "CharLM", "CNN"]


# --------------------------------------------------------------------------- convolution

def _cols(x, kh, kw, stride, pads):
    """im2col of x (N, C, H, W): (N*OH*OW, C*KH*KW), (N, OH, OW), padded shape."""
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if pt or pb or pl or pr else x
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride[0], ::stride[1]]
    n, c, oh, ow = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw), (n, oh, ow), xp.shape


def conv2d(x, w, b, stride=(1, 1), pads=((0, 0), (0, 0))):
    """x (N, C, H, W), w (F, C, KH, KW), b (F,) or None -> y (N, F, OH, OW); pads ((top, bottom), (left, right))."""
    f = w.shape[0]
    cols, (n, oh, ow), _ = _cols(x, w.shape[2], w.shape[3], stride, pads)
    y = cols @ w.reshape(f, -1).T
    if b is not None:
        y += b
    return np.ascontiguousarray(y.reshape(n, oh, ow, f).transpose(0, 3, 1, 2))


def conv2d_backward(dy, x, w, stride=(1, 1), pads=((0, 0), (0, 0))):
    """dy (N, F, OH, OW) -> (dx like x, dw like w, db (F,))."""
    f, c, kh, kw = w.shape
    sh, sw = stride
    cols, (n, oh, ow), padded = _cols(x, kh, kw, stride, pads)
    dyr = dy.transpose(0, 2, 3, 1).reshape(-1, f)
    dw = (dyr.T @ cols).reshape(w.shape)
    db = dyr.sum(axis=0)
    dcols = (dyr @ w.reshape(f, -1)).reshape(n, oh, ow, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    dxp = np.zeros(padded, dtype=x.dtype)
    for i in range(kh):  # col2im: one tap plane at a time
        for j in range(kw):
            dxp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += dcols[:, :, i, j]
    (pt, pb), (pl, pr) = pads
    return np.ascontiguousarray(dxp[:, :, pt:padded[2] - pb, pl:padded[3] - pr]), dw, db


# --------------------------------------------------------------------------- pooling

def max_pool2x2(x):
    """2x2 stride-2 max pooling of x (N, C, H, W), H and W even -> (y, indices int64 h * W + w)."""
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"the numpy peer pools 2x2 windows of even sizes only, got {h}x{w}")
    win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    a = win.argmax(axis=-1)
    y = np.take_along_axis(win, a[..., None], axis=-1)[..., 0]
    rows = 2 * np.arange(h // 2)[:, None] + a // 2
    cols = 2 * np.arange(w // 2)[None, :] + a % 2
    return y, (rows * w + cols).astype(np.int64)


def max_pool2x2_backward(dy, indices, x_shape):
    """dy (N, C, OH, OW) routed to the flat indices of non-overlapping windows -> dx (x_shape)."""
    n, c, h, w = x_shape
    dx = np.zeros((n, c, h * w), dtype=dy.dtype)
    np.put_along_axis(dx, indices.reshape(n, c, -1), dy.reshape(n, c, -1), axis=2)
    return dx.reshape(x_shape)


# --------------------------------------------------------------------------- recurrent

def _sigmoid(a):
    return 0.5 * (np.tanh(0.5 * a) + 1.0)  # no overflow for large |a|


_ACT = {  # activation, and its derivative from the OUTPUT y
    "tanh": (np.tanh, lambda y: 1 - y * y),
    "sigmoid": (_sigmoid, lambda y: y * (1 - y)),
    "relu": (lambda a: np.maximum(a, 0), lambda y: (y > 0).astype(y.dtype)),
    "identity": (lambda a: a, lambda y: np.ones_like(y)),
}


def rnn_forward(x, h0, w_ih, w_hh, b, act="tanh"):
    """x (T, N, D), h0 (N, H) -> hs (T, N, H), h_t = act(W_ih x_t + W_hh h_{t-1} + b)."""
    t_len, n, d = x.shape
    f = _ACT[act][0]
    xw = (x.reshape(t_len * n, d) @ w_ih.T + b).reshape(t_len, n, -1)
    hs = np.empty_like(xw)
    h = h0
    for t in range(t_len):
        h = f(xw[t] + h @ w_hh.T)
        hs[t] = h
    return hs


def _weight_grads(das, x, h0, hs, w_ih, need_dx):
    """dw_ih, dw_hh, db, dx from the pre-activation gradients das (T, N, G) of all steps at once."""
    t_len, n, d = x.shape
    da = das.reshape(t_len * n, -1)
    hprev = np.concatenate([h0[None], hs[:-1]]).reshape(t_len * n, -1)
    dx = (da @ w_ih).reshape(x.shape) if need_dx else None
    return da.T @ x.reshape(t_len * n, d), da.T @ hprev, da.sum(axis=0), dx


def rnn_backward(dhs, x, h0, w_ih, w_hh, hs, act="tanh", need_dx=True):
    """dhs (T, N, H) = dL/dh_t -> (dx, dh0, dw_ih, dw_hh, db); dx None unless need_dx."""
    dact = _ACT[act][1]
    das = np.empty_like(hs)
    dh = np.zeros_like(h0)
    for t in range(hs.shape[0] - 1, -1, -1):
        da = (dhs[t] + dh) * dact(hs[t])
        das[t] = da
        dh = da @ w_hh
    dw_ih, dw_hh, db, dx = _weight_grads(das, x, h0, hs, w_ih, need_dx)
    return dx, dh, dw_ih, dw_hh, db


def lstm_forward(x, h0, c0, w_ih, w_hh, b):
    """x (T, N, D) -> (hs, cs (T, N, H), gates (T, N, 4H) after their nonlinearities), gates i, f, g, o."""
    t_len, n, d = x.shape
    h_size = h0.shape[1]
    xw = (x.reshape(t_len * n, d) @ w_ih.T + b).reshape(t_len, n, 4 * h_size)
    hs, cs = np.empty((2, t_len, n, h_size), dtype=x.dtype)
    gates = np.empty_like(xw)
    h, c = h0, c0
    for t in range(t_len):
        a = xw[t] + h @ w_hh.T
        g = gates[t]
        g[:, :2 * h_size] = _sigmoid(a[:, :2 * h_size])
        g[:, 2 * h_size:3 * h_size] = np.tanh(a[:, 2 * h_size:3 * h_size])
        g[:, 3 * h_size:] = _sigmoid(a[:, 3 * h_size:])
        c = g[:, h_size:2 * h_size] * c + g[:, :h_size] * g[:, 2 * h_size:3 * h_size]
        h = g[:, 3 * h_size:] * np.tanh(c)
        cs[t], hs[t] = c, h
    return hs, cs, gates


def lstm_backward(dhs, x, h0, c0, w_ih, w_hh, hs, cs, gates, dc_T=None, need_dx=True):
    """dhs (T, N, H) -> (dx, dh0, dc0, dw_ih, dw_hh, db); dx None unless need_dx."""
    h_size = h0.shape[1]
    das = np.empty_like(gates)
    dh = np.zeros_like(h0)
    dc = np.zeros_like(c0) if dc_T is None else dc_T.copy()
    for t in range(hs.shape[0] - 1, -1, -1):
        g = gates[t]
        i, f, gg, o = (g[:, k * h_size:(k + 1) * h_size] for k in range(4))
        tc = np.tanh(cs[t])
        dht = dhs[t] + dh
        dc = dc + dht * o * (1 - tc * tc)
        c_prev = cs[t - 1] if t else c0
        da = das[t]
        da[:, :h_size] = dc * gg * i * (1 - i)
        da[:, h_size:2 * h_size] = dc * c_prev * f * (1 - f)
        da[:, 2 * h_size:3 * h_size] = dc * i * (1 - gg * gg)
        da[:, 3 * h_size:] = dht * tc * o * (1 - o)
        dc = dc * f
        dh = da @ w_hh
    dw_ih, dw_hh, db, dx = _weight_grads(das, x, h0, hs, w_ih, need_dx)
    return dx, dh, dc, dw_ih, dw_hh, db


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    """x (T, N, D) -> (hs (T, N, H), gates r, z, n (T, N, 3H), hns (T, N, H) = h_{t-1} W_hn^T + b_hn)."""
    t_len, n, d = x.shape
    h_size = h0.shape[1]
    xw = (x.reshape(t_len * n, d) @ w_ih.T + b_ih).reshape(t_len, n, 3 * h_size)
    hs, hns = np.empty((2, t_len, n, h_size), dtype=x.dtype)
    gates = np.empty_like(xw)
    h = h0
    for t in range(t_len):
        hw = h @ w_hh.T + b_hh
        g = gates[t]
        g[:, :2 * h_size] = _sigmoid(xw[t, :, :2 * h_size] + hw[:, :2 * h_size])
        hns[t] = hw[:, 2 * h_size:]
        g[:, 2 * h_size:] = np.tanh(xw[t, :, 2 * h_size:] + g[:, :h_size] * hns[t])
        z = g[:, h_size:2 * h_size]
        h = (1 - z) * g[:, 2 * h_size:] + z * h
        hs[t] = h
    return hs, gates, hns


def gru_backward(dhs, x, h0, w_ih, w_hh, hs, gates, hns, need_dx=True):
    """dhs (T, N, H) -> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh); dx None unless need_dx."""
    h_size = h0.shape[1]
    gis, ghs = np.empty_like(gates), np.empty_like(gates)
    dh_rec = np.zeros_like(h0)
    for t in range(hs.shape[0] - 1, -1, -1):
        g = gates[t]
        r, z, nn = (g[:, k * h_size:(k + 1) * h_size] for k in range(3))
        h_prev = hs[t - 1] if t else h0
        dh = dhs[t] + dh_rec
        da_n = dh * (1 - z) * (1 - nn * nn)
        gi, gh = gis[t], ghs[t]
        gi[:, :h_size] = da_n * hns[t] * r * (1 - r)
        gi[:, h_size:2 * h_size] = dh * (h_prev - nn) * z * (1 - z)
        gi[:, 2 * h_size:] = da_n
        gh[:, :2 * h_size] = gi[:, :2 * h_size]
        gh[:, 2 * h_size:] = da_n * r
        dh_rec = dh * z + gh @ w_hh
    dw_ih, _, db_ih, dx = _weight_grads(gis, x, h0, hs, w_ih, need_dx)
    t_len, n = hs.shape[:2]
    gh2 = ghs.reshape(t_len * n, -1)
    hprev = np.concatenate([h0[None], hs[:-1]]).reshape(t_len * n, -1)
    return dx, dh_rec, dw_ih, gh2.T @ hprev, db_ih, gh2.sum(axis=0)


# --------------------------------------------------------------------------- loss, clipping, updates

def softmax_xent(logits, targets):
    """Mean softmax cross-entropy over the rows of logits (N, K) -> (loss float, dlogits)."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(targets))
    loss = float(np.mean(np.log(s[:, 0]) - z[rows, targets]))
    d = e / s
    d[rows, targets] -= 1
    d /= len(targets)
    return loss, d


def clip_(grads: dict, max_norm: float) -> float:
    """Global-norm clipping in place (numbanets' rule); returns the norm before clipping."""
    total = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads.values()))
    if total > max_norm:
        for g in grads.values():
            g *= g.dtype.type(max_norm / total)
    return total


class Optimizer:
    """sgd (momentum), adagrad, rmsprop, adam over a dict of parameters, numbanets' formulas, in place."""

    def __init__(self, kind, params: dict, lr, momentum=0.0, alpha=0.95, eps=1e-8, betas=(0.9, 0.999)):
        self.kind, self.params, self.lr = kind, params, lr
        self.momentum, self.alpha, self.eps, self.betas = momentum, alpha, eps, betas
        slots = {"sgd": 1, "adagrad": 1, "rmsprop": 1, "adam": 2}[kind]
        self.state = {k: [np.zeros_like(p) for _ in range(slots)] for k, p in params.items()}
        self.steps = 0

    def step(self, grads: dict) -> None:
        self.steps += 1
        lr, eps = self.lr, self.eps
        for name, p in self.params.items():
            g, s = grads[name], self.state[name]
            if self.kind == "sgd":
                s[0] *= self.momentum
                s[0] += g
                p -= lr * s[0]
            elif self.kind == "adam":
                b1, b2 = self.betas
                s[0] *= b1
                s[0] += (1 - b1) * g
                s[1] *= b2
                s[1] += (1 - b2) * g * g
                m_hat = s[0] / (1 - b1 ** self.steps)
                p -= lr * m_hat / (np.sqrt(s[1] / (1 - b2 ** self.steps)) + eps)
            else:
                if self.kind == "rmsprop":
                    s[0] *= self.alpha
                    s[0] += (1 - self.alpha) * g * g
                else:
                    s[0] += g * g
                p -= lr * g / (np.sqrt(s[0]) + eps)


# --------------------------------------------------------------------------- whole training steps

class _Model:
    """Parameters (copies of a numbanets state_dict, same dotted names), gradients, optimizer."""

    def __init__(self, state: dict, optimizer: dict, clip: float):
        self.params = {k: np.array(v, copy=True) for k, v in state.items()}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.opt = Optimizer(params=self.params, **optimizer)
        self.clip = clip

    def step(self, x, y) -> float:
        """One training step: forward, backward, global-norm clipping, update; returns the loss."""
        loss = self.loss_and_grad(x, y)
        if self.clip > 0:
            clip_(self.grads, self.clip)
        self.opt.step(self.grads)
        return loss

    def outputs(self, loss) -> dict:
        """The loss, every gradient ("grad.<name>") and every weight ("param.<name>"), copied."""
        got = {"loss": float(loss)}
        for name, p in self.params.items():
            got[f"grad.{name}"], got[f"param.{name}"] = self.grads[name].copy(), p.copy()
        return got


class CharLM(_Model):
    """numbanets.nn.CharLM in numpy: one-hot ids -> RNN/LSTM/GRU layers "rnn.l<k>" -> Linear "head"."""

    def __init__(self, state, optimizer, clip, cell, layers, vocab, activation="tanh"):
        super().__init__(state, optimizer, clip)
        self.cell, self.layers, self.activation = cell, layers, activation
        self.eye = np.eye(vocab, dtype=self.params["head.w"].dtype)

    def loss_and_grad(self, ids, targets) -> float:
        t_len, n = ids.shape
        p, gr = self.params, self.grads
        x = self.eye[ids]
        caches = []
        for k in range(self.layers):
            w_ih, w_hh = p[f"rnn.l{k}.w_ih"], p[f"rnn.l{k}.w_hh"]
            h0 = np.zeros((n, w_hh.shape[1]), dtype=x.dtype)
            if self.cell == "gru":
                out = gru_forward(x, h0, w_ih, w_hh, p[f"rnn.l{k}.b_ih"], p[f"rnn.l{k}.b_hh"])
            elif self.cell == "lstm":
                out = lstm_forward(x, h0, h0, w_ih, w_hh, p[f"rnn.l{k}.b"])
            else:
                out = (rnn_forward(x, h0, w_ih, w_hh, p[f"rnn.l{k}.b"], self.activation),)
            caches.append((x, h0, out))
            x = out[0]
        hid = x.reshape(t_len * n, -1)
        loss, dlogits = softmax_xent(hid @ p["head.w"].T + p["head.b"], targets.reshape(-1))
        gr["head.w"][...] = dlogits.T @ hid
        gr["head.b"][...] = dlogits.sum(axis=0)
        dh = (dlogits @ p["head.w"]).reshape(t_len, n, -1)
        for k in range(self.layers - 1, -1, -1):
            x, h0, out = caches[k]
            w_ih, w_hh = p[f"rnn.l{k}.w_ih"], p[f"rnn.l{k}.w_hh"]
            if self.cell == "gru":
                dx, _, dw_ih, dw_hh, db_ih, db_hh = gru_backward(dh, x, h0, w_ih, w_hh, *out, need_dx=k > 0)
                gr[f"rnn.l{k}.b_ih"][...], gr[f"rnn.l{k}.b_hh"][...] = db_ih, db_hh
            elif self.cell == "lstm":
                dx, _, _, dw_ih, dw_hh, gr[f"rnn.l{k}.b"][...] = lstm_backward(dh, x, h0, h0, w_ih, w_hh, *out,
                                                                               need_dx=k > 0)
            else:
                dx, _, dw_ih, dw_hh, gr[f"rnn.l{k}.b"][...] = rnn_backward(dh, x, h0, w_ih, w_hh, out[0],
                                                                           self.activation, k > 0)
            gr[f"rnn.l{k}.w_ih"][...], gr[f"rnn.l{k}.w_hh"][...] = dw_ih, dw_hh
            dh = dx
        return loss


class CNN(_Model):
    """A small CNN in numpy from layer descriptions (runner.bench.cases.cnn_layers):

    ("conv", name, stride, pads), ("relu",), ("pool2",), ("flatten",), ("fc", name).
    """

    def __init__(self, state, optimizer, clip, layers):
        super().__init__(state, optimizer, clip)
        self.layers = layers

    def loss_and_grad(self, x, y) -> float:
        p, gr = self.params, self.grads
        caches = []
        for layer in self.layers:
            kind = layer[0]
            if kind == "conv":
                caches.append(x)
                x = conv2d(x, p[f"{layer[1]}.w"], p[f"{layer[1]}.b"], layer[2], layer[3])
            elif kind == "relu":
                x = np.maximum(x, 0)
                caches.append(x)
            elif kind == "pool2":
                caches.append(x.shape)
                x, idx = max_pool2x2(x)
                caches[-1] = (caches[-1], idx)
            elif kind == "flatten":
                caches.append(x.shape)
                x = x.reshape(x.shape[0], -1)
            elif kind == "fc":
                caches.append(x)
                x = x @ p[f"{layer[1]}.w"].T + p[f"{layer[1]}.b"]
            else:
                raise ValueError(f"the numpy CNN peer has no layer {kind!r}")
        loss, d = softmax_xent(x, y)
        for layer, cache in zip(reversed(self.layers), reversed(caches)):
            kind = layer[0]
            if kind == "conv":
                d, gr[f"{layer[1]}.w"][...], gr[f"{layer[1]}.b"][...] = conv2d_backward(
                    d, cache, p[f"{layer[1]}.w"], layer[2], layer[3])
            elif kind == "relu":
                d = d * (cache > 0)
            elif kind == "pool2":
                d = max_pool2x2_backward(d, cache[1], cache[0])
            elif kind == "flatten":
                d = d.reshape(cache)
            else:
                gr[f"{layer[1]}.w"][...] = d.T @ cache
                gr[f"{layer[1]}.b"][...] = d.sum(axis=0)
                d = d @ p[f"{layer[1]}.w"]
        return loss
