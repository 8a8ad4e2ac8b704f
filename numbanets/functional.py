"""The public op API of numbanets: validate, then dispatch on the array type.

numpy arrays run the CPU kernels (`numbanets.kernels.cpu`) and return numpy
arrays; numba CUDA device arrays run the CUDA kernels (`numbanets.kernels.cuda`)
and return device arrays. There is no global device state.

Layouts are PyTorch's, so weights move across:

    conv2d          x (N, C, H, W)  w (F, C/groups, KH, KW)  b (F,)  -> y (N, F, OH, OW)
    conv1d          x (N, C, L)     w (F, C/groups, K)       b (F,)  -> y (N, F, OL)
    max_pool2d      x (N, C, H, W)                                   -> y, indices (N, C, OH, OW)
    gap_forward     x (N, C, H, W)                                   -> y (N, C), the mean of each plane
    linear          x (N, D)        w (O, D)                 b (O,)  -> y (N, O)
    rnn_forward     x (T, N, D)  h0 (N, H)  w_ih (H, D)  w_hh (H, H)  b (H,)    -> hs (T, N, H)
    lstm_forward    x (T, N, D)  h0, c0 (N, H)  w_ih (4H, D)  w_hh (4H, H)  b (4H,), gates i, f, g, o
    gru_forward     x (T, N, D)  h0 (N, H)  w_ih (3H, D)  w_hh (3H, H)  b_ih, b_hh (3H,), gates r, z, n

Every function checks its input and raises a ValueError (wrong shape, size or
option) or TypeError (wrong kind of array or dtype) that names what it expected
and what it got. Non-contiguous input is copied. float32 and float64 both run;
all float arrays of one call must share a dtype.
"""

from __future__ import annotations

import importlib
import math

import numpy as np

from numbanets import shapes
from numbanets.caches import INPUTS_DENSE, INPUTS_IDS, GRUCache, LSTMCache, RNNCache
from numbanets.device import is_device_array
from numbanets.kernels.codes import ACTIVATION_CODES, ACTIVATIONS

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

__all__ = [
    "conv2d", "conv2d_backward", "conv1d", "conv1d_backward",
    "max_pool2d", "max_pool2d_backward", "max_pool1d", "max_pool1d_backward",
    "gap_forward", "gap_backward",
    "linear", "linear_backward", "activation", "activation_backward", "softmax",
    "softmax_cross_entropy", "rnn_forward", "rnn_backward", "lstm_forward",
    "lstm_backward", "gru_forward", "gru_backward", "clip_grad_norm",
]


# --------------------------------------------------------------------------- dispatch

class Backend:
    """A kernel package (`numbanets.kernels.cpu` or `.cuda`); op families load on first use."""

    def __init__(self, package: str):
        self._package = importlib.import_module(package)
        self.name = self._package.NAME
        self.zeros = self._package.zeros
        self.contiguous = self._package.contiguous
        self.reshape = self._package.reshape

    def __getattr__(self, family):
        if family.startswith("_"):
            raise AttributeError(family)
        module = importlib.import_module(f"{self._package.__name__}.{family}")
        setattr(self, family, module)
        return module


_BACKENDS: dict[str, Backend] = {}


def _get_backend(name: str) -> Backend:
    if name not in _BACKENDS:
        _BACKENDS[name] = Backend(f"numbanets.kernels.{name}")
    return _BACKENDS[name]


def array_device(a, name: str = "array") -> str:
    """"cpu" for a numpy array, "cuda" for a numba CUDA device array; TypeError otherwise."""
    if isinstance(a, np.ndarray):
        return "cpu"
    if is_device_array(a):
        return "cuda"
    raise TypeError(
        f"{name} must be a numpy array or a numba CUDA device array, got {type(a).__name__}"
    )


def backend_of(**arrays) -> Backend:
    """The kernel backend all given arrays (name=array, None skipped) live on: its op families are
    attributes (`backend_of(x=x).conv`); TypeError naming the arrays when they are mixed."""
    if all(a is None or isinstance(a, np.ndarray) for a in arrays.values()):
        return _BACKENDS.get("cpu") or _get_backend("cpu")  # numpy arrays only: the common case, fast
    places = {name: array_device(a, name) for name, a in arrays.items() if a is not None}
    kinds = set(places.values())
    if len(kinds) > 1:
        where = ", ".join(f"{n} on {d}" for n, d in places.items())
        raise TypeError(f"arrays live on different devices ({where}); move them with numbanets.device.to_device/to_host")
    return _get_backend(kinds.pop() if kinds else "cpu")


# --------------------------------------------------------------------------- validation

def _check_float(name: str, a, ndim: int | None = None, shape: tuple | None = None):
    dtype = np.dtype(a.dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(a.shape)}")
    if shape is not None and tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(a.shape)}")


def _same_dtype(**arrays):
    dtypes = {name: np.dtype(a.dtype) for name, a in arrays.items() if a is not None}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n} {d}" for n, d in dtypes.items())
        raise TypeError(f"all float arrays must share one dtype, got {listed}")


def _positive_ints(value, name: str, dims: int) -> tuple[int, ...]:
    values = shapes.as_pair(value, name, dims)
    if any(v < 1 for v in values):
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return values


def _check_padding(padding, dims: int):
    if isinstance(padding, str):
        if padding.lower() not in shapes.PADDING_MODES:
            raise ValueError(
                f"padding must be an int, a pair of ints or one of 'valid', 'same', 'full'; got {padding!r}"
            )
        return
    if any(p < 0 for p in shapes.as_pair(padding, "padding", dims)):
        raise ValueError(f"padding must be >= 0, got {padding!r}")


def _is_c_contiguous(a) -> bool:
    flags = getattr(a, "flags", None)
    if flags is not None:
        return bool(flags["C_CONTIGUOUS"])
    return bool(a.is_c_contiguous())


def _activation_code(name) -> int:
    if not isinstance(name, str) or name.lower() not in ACTIVATION_CODES:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}")
    return ACTIVATION_CODES[name.lower()]


# --------------------------------------------------------------------------- convolution

def _check_conv_channels(x, w, b, groups, ndim):
    _check_float("x", x, ndim)
    _check_float("w", w, ndim)
    if b is not None:
        _check_float("b", b, 1)
    _same_dtype(x=x, w=w, b=b)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be an int >= 1, got {groups!r}")
    c, f, cg = x.shape[1], w.shape[0], w.shape[1]
    if c % groups:
        raise ValueError(f"input channels C={c} must be divisible by groups={groups}")
    if f % groups:
        raise ValueError(f"feature maps F={f} must be divisible by groups={groups}")
    if cg != c // groups:
        raise ValueError(
            f"w must have C/groups = {c}/{groups} = {c // groups} input channels (w.shape[1]), got {cg}"
        )
    if b is not None and b.shape[0] != f:
        raise ValueError(f"b must have shape ({f},) to match w's {f} feature maps, got {tuple(b.shape)}")


def _conv_geometry(x, w, stride, padding, dims):
    """Strides, pads before and output sizes of a `dims`-D convolution of x by w."""
    strides = _positive_ints(stride, "stride", dims)
    _check_padding(padding, dims)
    out, before, _ = shapes.conv_output_shape(x.shape[2:], w.shape[2:], strides, padding)
    return strides, before, out


def _check_dy(dy, expected_shape, x):
    _check_float("dy", dy, shape=expected_shape)
    _same_dtype(dy=dy, x=x)


def conv2d(x, w, b=None, stride=1, padding=0, groups=1):
    """2-D convolution (cross-correlation, as in every deep learning library).

    x (N, C, H, W), w (F, C/groups, KH, KW), b (F,) or None -> y (N, F, OH, OW).
    stride: int or pair; padding: int, pair, "valid", "same" or "full"; groups
    splits channels and maps into `groups` independent towers.
    """
    k = backend_of(x=x, w=w, b=b)
    _check_conv_channels(x, w, b, groups, 4)
    (sh, sw), (ph, pw), (oh, ow) = _conv_geometry(x, w, stride, padding, 2)
    if b is None:
        b = k.zeros(w.shape[0], x.dtype)
    return k.conv.conv2d_forward(
        k.contiguous(x), k.contiguous(w), k.contiguous(b), sh, sw, ph, pw, oh, ow, groups
    )


def conv2d_backward(dy, x, w, stride=1, padding=0, groups=1):
    """Gradients of conv2d: dy (N, F, OH, OW) -> (dx (N, C, H, W), dw like w, db (F,))."""
    k = backend_of(dy=dy, x=x, w=w)
    _check_conv_channels(x, w, None, groups, 4)
    (sh, sw), (ph, pw), (oh, ow) = _conv_geometry(x, w, stride, padding, 2)
    _check_dy(dy, (x.shape[0], w.shape[0], oh, ow), x)
    return k.conv.conv2d_backward(
        k.contiguous(dy), k.contiguous(x), k.contiguous(w), sh, sw, ph, pw, groups
    )


def conv1d(x, w, b=None, stride=1, padding=0, groups=1):
    """1-D convolution: x (N, C, L), w (F, C/groups, K), b (F,) or None -> y (N, F, OL).

    Runs the conv2d kernel on a view with H = KH = 1.
    """
    k = backend_of(x=x, w=w, b=b)
    _check_conv_channels(x, w, b, groups, 3)
    (s,), (p,), (out,) = _conv_geometry(x, w, stride, padding, 1)
    if b is None:
        b = k.zeros(w.shape[0], x.dtype)
    n, c, length = x.shape
    f, cg, kl = w.shape
    y = k.conv.conv2d_forward(
        k.reshape(k.contiguous(x), (n, c, 1, length)), k.reshape(k.contiguous(w), (f, cg, 1, kl)),
        k.contiguous(b), 1, s, 0, p, 1, out, groups,
    )
    return k.reshape(y, (n, f, out))


def conv1d_backward(dy, x, w, stride=1, padding=0, groups=1):
    """Gradients of conv1d: dy (N, F, OL) -> (dx (N, C, L), dw (F, C/groups, K), db (F,))."""
    k = backend_of(dy=dy, x=x, w=w)
    _check_conv_channels(x, w, None, groups, 3)
    (s,), (p,), (out,) = _conv_geometry(x, w, stride, padding, 1)
    _check_dy(dy, (x.shape[0], w.shape[0], out), x)
    n, c, length = x.shape
    f, cg, kl = w.shape
    dx, dw, db = k.conv.conv2d_backward(
        k.reshape(k.contiguous(dy), (n, f, 1, out)), k.reshape(k.contiguous(x), (n, c, 1, length)),
        k.reshape(k.contiguous(w), (f, cg, 1, kl)), 1, s, 0, p, groups,
    )
    return k.reshape(dx, x.shape), k.reshape(dw, w.shape), db


# --------------------------------------------------------------------------- pooling

def _pool2d_geometry(x, kernel_size, stride, padding):
    _check_float("x", x, 4)
    kernel = _positive_ints(kernel_size, "kernel_size", 2)
    strides = kernel if stride is None else _positive_ints(stride, "stride", 2)
    _check_padding(padding, 2)
    out, before, after = shapes.conv_output_shape(x.shape[2:], kernel, strides, padding)
    _check_pool_padding(kernel, before, after)
    return kernel, strides, before, out


def _check_pool_padding(kernel, before, after):
    """Every window must hold at least one real input value: padding <= kernel - 1."""
    for k, pb, pa in zip(kernel, before, after):
        if max(pb, pa) > k - 1:
            raise ValueError(f"pooling padding must be at most kernel_size - 1 = {k - 1}, got {max(pb, pa)}")


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """2-D max pooling: x (N, C, H, W) -> (y (N, C, OH, OW), indices int64 (N, C, OH, OW)).

    stride defaults to kernel_size; padding counts as -inf. indices are flat
    positions h * W + w of each maximum in its input plane, as in PyTorch.
    """
    k = backend_of(x=x)
    kernel, strides, before, out = _pool2d_geometry(x, kernel_size, stride, padding)
    return k.pool.max_pool2d_forward(
        k.contiguous(x), kernel[0], kernel[1], strides[0], strides[1], before[0], before[1], out[0], out[1]
    )


def _check_pool_backward(dy, indices, x_shape, dims):
    _check_float("dy", dy, dims + 2)
    if np.dtype(indices.dtype) != np.dtype(np.int64):
        raise TypeError(f"indices must be int64 (as returned by the forward pass), got {indices.dtype}")
    if tuple(indices.shape) != tuple(dy.shape):
        raise ValueError(f"indices must have dy's shape {tuple(dy.shape)}, got {tuple(indices.shape)}")
    x_shape = tuple(int(s) for s in x_shape)
    if len(x_shape) != dims + 2 or x_shape[:2] != tuple(dy.shape[:2]):
        raise ValueError(f"x_shape must be {dims + 2}-D and start with dy's {tuple(dy.shape[:2])}, got {x_shape}")
    return x_shape


def max_pool2d_backward(dy, indices, x_shape):
    """Gradient of max_pool2d: routes dy (N, C, OH, OW) to the recorded maxima -> dx (x_shape)."""
    k = backend_of(dy=dy, indices=indices)
    n, c, h, w = _check_pool_backward(dy, indices, x_shape, 2)
    return k.pool.max_pool2d_backward(k.contiguous(dy), k.contiguous(indices), h, w)


def max_pool1d(x, kernel_size, stride=None, padding=0):
    """1-D max pooling: x (N, C, L) -> (y (N, C, OL), indices int64 (N, C, OL) into L)."""
    k = backend_of(x=x)
    _check_float("x", x, 3)
    kernel = _positive_ints(kernel_size, "kernel_size", 1)[0]
    step = kernel if stride is None else _positive_ints(stride, "stride", 1)[0]
    _check_padding(padding, 1)
    pad = padding if isinstance(padding, str) else shapes.as_pair(padding, "padding", 1)[0]
    (out,), (before,), (after,) = shapes.conv_output_shape((x.shape[2],), (kernel,), (step,), pad)
    _check_pool_padding((kernel,), (before,), (after,))
    x4 = k.contiguous(x).reshape(x.shape[0], x.shape[1], 1, x.shape[2])
    y, idx = k.pool.max_pool2d_forward(x4, 1, kernel, 1, step, 0, before, 1, out)
    return y.reshape(x.shape[0], x.shape[1], out), idx.reshape(x.shape[0], x.shape[1], out)


def max_pool1d_backward(dy, indices, x_shape):
    """Gradient of max_pool1d: dy (N, C, OL) -> dx (x_shape = (N, C, L))."""
    k = backend_of(dy=dy, indices=indices)
    n, c, length = _check_pool_backward(dy, indices, x_shape, 1)
    dy4 = k.contiguous(dy).reshape(n, c, 1, dy.shape[2])
    idx4 = k.contiguous(indices).reshape(n, c, 1, dy.shape[2])
    return k.pool.max_pool2d_backward(dy4, idx4, 1, length).reshape(n, c, length)


def gap_forward(x):
    """Global average pooling: x (N, C, H, W) -> y (N, C), y[n, c] = the mean of x[n, c] over H and W.

    The read-out of a class-activation-mapping network (`...-conv-relu-gap-fcK`).
    """
    k = backend_of(x=x)
    _check_float("x", x, 4)
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"x must have H, W >= 1 to average over, got shape {tuple(x.shape)}")
    return k.pool.global_avg_pool2d_forward(k.contiguous(x))


def gap_backward(dy, x_shape):
    """Gradient of gap_forward: dy (N, C) -> dx (x_shape = (N, C, H, W)), dx[n, c] = dy[n, c] / (H * W)."""
    k = backend_of(dy=dy)
    _check_float("dy", dy, 2)
    x_shape = tuple(int(s) for s in x_shape)
    if len(x_shape) != 4 or x_shape[:2] != tuple(dy.shape) or min(x_shape[2:]) < 1:
        raise ValueError(f"x_shape must be (N, C, H, W) with (N, C) = dy's {tuple(dy.shape)} and H, W >= 1, "
                         f"got {x_shape}")
    return k.pool.global_avg_pool2d_backward(k.contiguous(dy), x_shape[2], x_shape[3])


# --------------------------------------------------------------------------- dense

def _check_linear(x, w, b=None):
    _check_float("x", x, 2)
    _check_float("w", w, 2)
    if b is not None:
        _check_float("b", b, 1, shape=(w.shape[0],))
    _same_dtype(x=x, w=w, b=b)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but w (O, D) expects D = {w.shape[1]}")


def linear(x, w, b=None):
    """Dense layer: x (N, D), w (O, D), b (O,) or None -> x @ w.T + b (N, O)."""
    k = backend_of(x=x, w=w, b=b)
    _check_linear(x, w, b)
    if b is None:
        b = k.zeros(w.shape[0], x.dtype)
    return k.linear.linear_forward(k.contiguous(x), k.contiguous(w), k.contiguous(b))


def linear_backward(dy, x, w):
    """Gradients of linear: dy (N, O) -> (dx (N, D), dw (O, D), db (O,))."""
    k = backend_of(dy=dy, x=x, w=w)
    _check_linear(x, w)
    _check_float("dy", dy, shape=(x.shape[0], w.shape[0]))
    _same_dtype(dy=dy, x=x)
    return k.linear.linear_backward(k.contiguous(dy), k.contiguous(x), k.contiguous(w))


def activation(x, name):
    """Element-wise activation: identity, tanh, sigmoid or relu, any shape."""
    k = backend_of(x=x)
    code = _activation_code(name)
    _check_float("x", x)
    return k.activations.activation_forward(k.contiguous(x), code)


def activation_backward(dy, y, name):
    """Gradient of an activation given its OUTPUT y: dx = dy * phi'(from y)."""
    k = backend_of(dy=dy, y=y)
    code = _activation_code(name)
    _check_float("y", y)
    _check_float("dy", dy, shape=y.shape)
    _same_dtype(dy=dy, y=y)
    return k.activations.activation_backward(k.contiguous(dy), k.contiguous(y), code)


def softmax(x):
    """Row-wise softmax of x (N, K), max-subtracted."""
    k = backend_of(x=x)
    _check_float("x", x, 2)
    return k.activations.softmax_forward(k.contiguous(x))


def softmax_cross_entropy(logits, targets):
    """Fused softmax + cross-entropy: logits (N, K), targets int (N,) in 0..K-1.

    Returns (loss, dlogits): loss = mean over N of -log softmax(logits)[target]
    (log-sum-exp, stable for huge logits) as a Python float, and its gradient.
    """
    k = backend_of(logits=logits, targets=targets)
    _check_float("logits", logits, 2)
    if not np.issubdtype(np.dtype(targets.dtype), np.integer):
        raise TypeError(f"targets must be an integer array of class indices, got {targets.dtype}")
    if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"targets must have shape ({logits.shape[0]},) to match logits, got {tuple(targets.shape)}")
    if k.name == "cpu" and targets.size:
        lo, hi = int(targets.min()), int(targets.max())
        if lo < 0 or hi >= logits.shape[1]:
            bad = lo if lo < 0 else hi
            raise ValueError(f"targets must lie in 0..{logits.shape[1] - 1} (K = {logits.shape[1]} classes), got {bad}")
    if k.name == "cpu":
        targets = targets.astype(np.int64, copy=False)
    # device targets stay as they are (device arrays have no .astype): the CUDA kernel takes int64 or int32
    # and checks the range itself, sending back only the loss and the targets' min and max
    return k.loss.softmax_cross_entropy(k.contiguous(logits), k.contiguous(targets))


# --------------------------------------------------------------------------- recurrent

def _check_sequence(x, h0, w_ih, w_hh, b, gates: int, b_name: str = "b"):
    _check_float("x", x, 3)
    return _check_sequence_shape(x.shape, h0, w_ih, w_hh, b, gates, b_name)


def _check_sequence_shape(x_shape, h0, w_ih, w_hh, b, gates: int, b_name: str = "b"):
    """_check_sequence's checks of the weights and h0 against an input of shape x_shape (T, N, D) -> H."""
    _check_float("w_ih", w_ih, 2)
    _check_float("w_hh", w_hh, 2)
    t, n, d = x_shape
    gh = w_ih.shape[0]
    if gh % gates:
        raise ValueError(f"w_ih must have {gates}*H rows, got {gh}")
    h = gh // gates
    if w_ih.shape[1] != d:
        raise ValueError(f"w_ih must have shape ({gh}, {d}) for input size D = {d}, got {tuple(w_ih.shape)}")
    _check_float("w_hh", w_hh, shape=(gh, h))
    _check_float(b_name, b, shape=(gh,))
    _check_float("h0", h0, shape=(n, h))
    if t < 1:
        raise ValueError("x must hold at least one time step (T >= 1)")
    return h


def rnn_forward(x, h0, w_ih, w_hh, b, activation="tanh"):
    """Vanilla RNN over a whole sequence: h_t = g(W_hh h_{t-1} + W_ih x_t + b).

    x (T, N, D), h0 (N, H), w_ih (H, D), w_hh (H, H), b (H,); g is tanh, sigmoid,
    relu or identity. Returns (hs (T, N, H), cache), cache a numbanets.caches.RNNCache
    for rnn_backward.

    x may also be an integer numpy array (T, N) of ids in 0..D-1, standing for
    their one-hot vectors, as in lstm_forward (CPU only; rnn_backward then
    returns None for dx).
    """
    code = _activation_code(activation)
    if _is_ids(x):
        k = _ids_backend(h0=h0, w_ih=w_ih, w_hh=w_hh, b=b)
        ids = _check_ids_sequence(x, h0, w_ih, w_hh, b, 1)
        h0, w_ih, w_hh, b = (k.contiguous(a) for a in (h0, w_ih, w_hh, b))
        hs = k.rnn.rnn_forward_projected(k.embedding.one_hot_projection(ids, w_ih), h0, w_hh, b, code)
        return hs, RNNCache(INPUTS_IDS, ids, h0, w_ih, w_hh, hs, code)
    k = backend_of(x=x, h0=h0, w_ih=w_ih, w_hh=w_hh, b=b)
    _check_sequence(x, h0, w_ih, w_hh, b, 1)
    _same_dtype(x=x, h0=h0, w_ih=w_ih, w_hh=w_hh, b=b)
    x, h0, w_ih, w_hh, b = (k.contiguous(a) for a in (x, h0, w_ih, w_hh, b))
    hs = k.rnn.rnn_forward(x, h0, w_ih, w_hh, b, code)
    return hs, RNNCache(INPUTS_DENSE, x, h0, w_ih, w_hh, hs, code)


def rnn_backward(dhs, cache):
    """Backpropagation through time: dhs (T, N, H) = dL/dh_t for every t.

    Returns (dx (T, N, D), dh0 (N, H), dw_ih (H, D), dw_hh (H, H), db (H,)).
    """
    if not isinstance(cache, RNNCache):
        raise TypeError("cache must be the second value returned by rnn_forward")
    c = cache
    if c.inputs == INPUTS_IDS:
        k = backend_of(dhs=dhs, h0=c.h0)
        _check_float("dhs", dhs, shape=c.hs.shape)
        _same_dtype(dhs=dhs, h0=c.h0)
        da, dh0 = k.rnn.rnn_backward_preactivations(k.contiguous(dhs), c.w_hh, c.hs, c.activation)
        dw_ih, dw_hh, db = k.embedding.one_hot_param_grads(da, c.x, c.w_ih.shape[1], c.h0, c.hs)
        return None, dh0, dw_ih, dw_hh, db
    k = backend_of(dhs=dhs, x=c.x)
    _check_float("dhs", dhs, shape=c.hs.shape)
    _same_dtype(dhs=dhs, x=c.x)
    return k.rnn.rnn_backward(k.contiguous(dhs), c.x, c.h0, c.w_ih, c.w_hh, c.hs, c.activation)


def lstm_forward(x, h0, c0, w_ih, w_hh, b):
    """LSTM over a whole sequence, gates i, f, g, o (torch.nn.LSTM's order and layout).

    x (T, N, D), h0, c0 (N, H), w_ih (4H, D), w_hh (4H, H), b (4H,) (torch's
    bias_ih + bias_hh). Returns (hs (T, N, H), (h_T, c_T), cache), cache a
    numbanets.caches.LSTMCache for lstm_backward.

    x may also be an integer numpy array (T, N) of ids in 0..D-1, standing for
    their one-hot vectors (a character LM's input): the input projection is then
    a row gather of w_ih (the same numbers as the GEMM with the one-hot matrix,
    without it), and lstm_backward returns None for dx. CPU only.
    """
    if _is_ids(x):
        return _lstm_forward_ids(x, h0, c0, w_ih, w_hh, b)
    k = backend_of(x=x, h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh, b=b)
    _check_sequence(x, h0, w_ih, w_hh, b, 4)
    _check_float("c0", c0, shape=h0.shape)
    _same_dtype(x=x, h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh, b=b)
    x, h0, c0, w_ih, w_hh, b = (k.contiguous(a) for a in (x, h0, c0, w_ih, w_hh, b))
    hs, cs, gates = k.lstm.lstm_forward(x, h0, c0, w_ih, w_hh, b)
    return hs, (hs[-1], cs[-1]), LSTMCache(INPUTS_DENSE, x, h0, c0, w_ih, w_hh, hs, cs, gates)


def lstm_backward(dhs, cache, dc_T=None):
    """Backpropagation through time of lstm_forward.

    dhs (T, N, H) = dL/dh_t for every t; dc_T (N, H) an extra gradient into the
    last cell state. Returns (dx, dh0, dc0, dw_ih, dw_hh, db).
    """
    if not isinstance(cache, LSTMCache):
        raise TypeError("cache must be the third value returned by lstm_forward")
    if cache.inputs == INPUTS_IDS:
        return _lstm_backward_ids(dhs, cache, dc_T)
    c = cache
    k = backend_of(dhs=dhs, x=c.x, dc_T=dc_T)
    _check_float("dhs", dhs, shape=c.hs.shape)
    if dc_T is None:
        dc_T = k.zeros(c.h0.shape, c.x.dtype)
    else:
        _check_float("dc_T", dc_T, shape=c.h0.shape)
    _same_dtype(dhs=dhs, dc_T=dc_T, x=c.x)
    return k.lstm.lstm_backward(
        k.contiguous(dhs), k.contiguous(dc_T), c.x, c.h0, c.c0, c.w_ih, c.w_hh, c.hs, c.cs, c.gates
    )


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    """GRU over a whole sequence, gates r, z, n (torch.nn.GRU's definition, order and layout).

    x (T, N, D), h0 (N, H), w_ih (3H, D), w_hh (3H, H), b_ih (3H,), b_hh (3H,)
    (both biases: b_hn is multiplied by r, so they do not sum into one). Returns
    (hs (T, N, H), h_T (N, H), cache), cache a numbanets.caches.GRUCache for
    gru_backward.

    x may also be an integer numpy array (T, N) of ids in 0..D-1 standing for
    their one-hot vectors, as in lstm_forward (CPU only; gru_backward then
    returns None for dx).
    """
    if _is_ids(x):
        k = _ids_backend(h0=h0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
        ids = _check_ids_sequence(x, h0, w_ih, w_hh, b_ih, 3, "b_ih")
        _check_float("b_hh", b_hh, shape=b_ih.shape)
        _same_dtype(h0=h0, b_hh=b_hh)
        h0, w_ih, w_hh, b_ih, b_hh = (k.contiguous(a) for a in (h0, w_ih, w_hh, b_ih, b_hh))
        gates = k.embedding.one_hot_projection(ids, w_ih)
        hs, gates, hns = k.gru.gru_forward_gates(gates, h0, w_hh, b_ih, b_hh)
        return hs, hs[-1], GRUCache(INPUTS_IDS, ids, h0, w_ih, w_hh, hs, gates, hns)
    k = backend_of(x=x, h0=h0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    _check_sequence(x, h0, w_ih, w_hh, b_ih, 3, "b_ih")
    _check_float("b_hh", b_hh, shape=b_ih.shape)
    _same_dtype(x=x, h0=h0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    x, h0, w_ih, w_hh, b_ih, b_hh = (k.contiguous(a) for a in (x, h0, w_ih, w_hh, b_ih, b_hh))
    hs, gates, hns = k.gru.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
    return hs, hs[-1], GRUCache(INPUTS_DENSE, x, h0, w_ih, w_hh, hs, gates, hns)


def gru_backward(dhs, cache, dh_T=None):
    """Backpropagation through time of gru_forward.

    dhs (T, N, H) = dL/dh_t for every t; dh_T (N, H) an extra gradient into the
    last state (as from the next window). Returns
    (dx, dh0, dw_ih, dw_hh, db_ih, db_hh); dx is None for ids input.
    """
    if not isinstance(cache, GRUCache):
        raise TypeError("cache must be the third value returned by gru_forward")
    c = cache
    k = backend_of(dhs=dhs, h0=c.h0, dh_T=dh_T)
    _check_float("dhs", dhs, shape=c.hs.shape)
    if dh_T is None:
        dh_T = k.zeros(c.h0.shape, c.h0.dtype)
    else:
        _check_float("dh_T", dh_T, shape=c.h0.shape)
    _same_dtype(dhs=dhs, dh_T=dh_T, h0=c.h0)
    dhs, dh_T = k.contiguous(dhs), k.contiguous(dh_T)
    if c.inputs == INPUTS_IDS:
        gi, gh, dh0 = k.gru.gru_backward_gates(dhs, dh_T, c.h0, c.w_hh, c.hs, c.gates, c.hns)
        dw_ih, db_ih = k.embedding.one_hot_input_grads(gi, c.x, c.w_ih.shape[1])
        dw_hh, db_hh = k.gru.gru_param_grads(gh, c.h0, c.hs)
        return None, dh0, dw_ih, dw_hh, db_ih, db_hh
    return k.gru.gru_backward(dhs, dh_T, c.x, c.h0, c.w_ih, c.w_hh, c.hs, c.gates, c.hns)


def _is_ids(x) -> bool:
    """True for an integer numpy array (T, N): character ids standing for one-hot inputs."""
    return isinstance(x, np.ndarray) and x.ndim == 2 and np.issubdtype(x.dtype, np.integer)


def _ids_backend(**arrays) -> Backend:
    k = backend_of(**arrays)
    if k.name != "cpu":
        raise TypeError("integer ids as recurrent input run on the CPU only; pass one-hot vectors (T, N, D) on the GPU")
    return k


def _check_ids_sequence(ids, h0, w_ih, w_hh, b, gates: int, b_name: str = "b") -> np.ndarray:
    """The checks of a (T, N, D) input for ids (T, N) into the D columns of w_ih -> ids as int64."""
    t, n = ids.shape
    _check_float("w_ih", w_ih, 2)
    _check_sequence_shape((t, n, w_ih.shape[1]), h0, w_ih, w_hh, b, gates, b_name)
    _same_dtype(h0=h0, w_ih=w_ih, w_hh=w_hh, b=b)
    if ids.size and (ids.min() < 0 or ids.max() >= w_ih.shape[1]):
        bad = ids.min() if ids.min() < 0 else ids.max()
        raise ValueError(f"ids must lie in 0..{w_ih.shape[1] - 1} (the D columns of w_ih), got {bad}")
    return np.ascontiguousarray(ids, dtype=np.int64)


def _lstm_forward_ids(ids, h0, c0, w_ih, w_hh, b):
    """lstm_forward with one-hot input given as integer ids (T, N) into the D columns of w_ih."""
    k = _ids_backend(h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh, b=b)
    ids = _check_ids_sequence(ids, h0, w_ih, w_hh, b, 4)
    _check_float("c0", c0, shape=h0.shape)
    _same_dtype(h0=h0, c0=c0)
    h0, c0, w_ih, w_hh, b = (k.contiguous(a) for a in (h0, c0, w_ih, w_hh, b))
    gates = k.embedding.one_hot_projection(ids, w_ih)
    hs, cs, gates = k.lstm.lstm_forward_gates(gates, h0, c0, w_hh, b)
    return hs, (hs[-1], cs[-1]), LSTMCache(INPUTS_IDS, ids, h0, c0, w_ih, w_hh, hs, cs, gates)


def _lstm_backward_ids(dhs, cache: LSTMCache, dc_T):
    c = cache  # c.x holds the ids (T, N)
    k = backend_of(dhs=dhs, h0=c.h0, dc_T=dc_T)
    _check_float("dhs", dhs, shape=c.hs.shape)
    if dc_T is None:
        dc_T = k.zeros(c.h0.shape, c.h0.dtype)
    else:
        _check_float("dc_T", dc_T, shape=c.h0.shape)
    _same_dtype(dhs=dhs, dc_T=dc_T, h0=c.h0)
    da, dh0, dc0 = k.lstm.lstm_backward_gates(
        k.contiguous(dhs), k.contiguous(dc_T), c.h0, c.c0, c.w_hh, c.hs, c.cs, c.gates
    )
    dw_ih, dw_hh, db = k.embedding.one_hot_param_grads(da, c.x, c.w_ih.shape[1], c.h0, c.hs)
    return None, dh0, dc0, dw_ih, dw_hh, db


# --------------------------------------------------------------------------- clipping

def clip_grad_norm(grads, max_norm):
    """Global-norm clipping (Pascanu et al. 2013, Algorithm 1).

    grads: an iterable (or dict) of arrays. When their joint L2 norm exceeds
    max_norm, every array is scaled in place by max_norm / norm. Returns the
    norm before clipping as a float.
    """
    arrays = list(grads.values()) if isinstance(grads, dict) else list(grads)
    if not isinstance(max_norm, (int, float)) or isinstance(max_norm, bool) or not max_norm > 0:
        raise ValueError(f"max_norm must be a number > 0, got {max_norm!r}")
    if not arrays:
        return 0.0
    k = backend_of(**{f"grads[{i}]": a for i, a in enumerate(arrays)})
    for i, a in enumerate(arrays):
        _check_float(f"grads[{i}]", a)
        if not _is_c_contiguous(a):
            raise ValueError(f"grads[{i}] must be C-contiguous to be scaled in place")
    total = math.sqrt(sum(k.clip.sum_squares(a) for a in arrays))
    if total > max_norm:
        scale = max_norm / total
        for a in arrays:
            k.clip.scale_(a, scale)
    return total
