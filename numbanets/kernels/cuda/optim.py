"""Fused, in-place optimizer updates on the GPU (`numba.cuda.jit`), one pass over raveled arrays.

Same maths as numbanets.kernels.cpu.optim (torch.optim's SGD, Adagrad, RMSprop,
Adam): p parameter, g gradient (read only), state arrays as named, all the same
size and dtype, C-contiguous device arrays. Weight decay is L2 on the gradient,
g' = g + weight_decay * p. Each update is one launch of a 1-D grid-stride loop;
scalars are float64, element arithmetic is float64, stored in the arrays' dtype.

    sgd      v = momentum*v + g' ;                     p -= lr*v
    adagrad  s = s + g'^2 ;                            p -= lr*g'/(sqrt(s)+eps)
    rmsprop  s = alpha*s + (1-alpha)*g'^2 ;            p -= lr*g'/(sqrt(s)+eps)
    adam     m = b1*m + (1-b1)*g' ; v = b2*v + (1-b2)*g'^2 ;
             p -= lr * (m/(1-b1^step)) / (sqrt(v/(1-b2^step)) + eps)     step starts at 1
"""

from __future__ import annotations

import math

from numba import cuda

from numbanets.kernels.cuda import flat, grid_1d
from numbanets.kernels.cuda.registry import register

__all__ = ["sgd_update_", "adagrad_update_", "rmsprop_update_", "adam_update_"]


@register("sgd_update_1d", "{f}[::1], {f}[::1], {f}[::1], float64, float64, float64")
def _sgd_update_1d(p, g, v, lr, momentum, weight_decay):
    # p, g, v (n,) -> p, v updated in place
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, p.shape[0], step):
        pi = float(p[i])
        gi = float(g[i]) + weight_decay * pi
        vi = momentum * float(v[i]) + gi
        v[i] = vi
        p[i] = pi - lr * vi


@register("adagrad_update_1d", "{f}[::1], {f}[::1], {f}[::1], float64, float64, float64")
def _adagrad_update_1d(p, g, s, lr, eps, weight_decay):
    # p, g, s (n,) -> p, s updated in place
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, p.shape[0], step):
        pi = float(p[i])
        gi = float(g[i]) + weight_decay * pi
        si = float(s[i]) + gi * gi
        s[i] = si
        p[i] = pi - lr * gi / (math.sqrt(si) + eps)


@register("rmsprop_update_1d", "{f}[::1], {f}[::1], {f}[::1], float64, float64, float64, float64")
def _rmsprop_update_1d(p, g, s, lr, alpha, eps, weight_decay):
    # p, g, s (n,) -> p, s updated in place
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, p.shape[0], step):
        pi = float(p[i])
        gi = float(g[i]) + weight_decay * pi
        si = alpha * float(s[i]) + (1.0 - alpha) * gi * gi
        s[i] = si
        p[i] = pi - lr * gi / (math.sqrt(si) + eps)


@register(
    "adam_update_1d",
    "{f}[::1], {f}[::1], {f}[::1], {f}[::1], float64, float64, float64, float64, float64, float64, float64",
)
def _adam_update_1d(p, g, m, v, lr, beta1, beta2, eps, bc1, bc2, weight_decay):
    # p, g, m, v (n,), bias corrections bc1 = 1 - beta1^step, bc2 = 1 - beta2^step -> p, m, v in place
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, p.shape[0], step):
        pi = float(p[i])
        gi = float(g[i]) + weight_decay * pi
        mi = beta1 * float(m[i]) + (1.0 - beta1) * gi
        vi = beta2 * float(v[i]) + (1.0 - beta2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = pi - lr * (mi / bc1) / (math.sqrt(vi / bc2) + eps)


def _launch(kernel, p, arrays, scalars):
    if p.size == 0:
        return
    pf = flat(p)
    blocks, threads = grid_1d(pf.shape[0])
    kernel[blocks, threads](pf, *(flat(a) for a in arrays), *(float(s) for s in scalars))


def sgd_update_(p, g, v, lr, momentum, weight_decay):
    # p, g, v (any shape, same size) -> None; updates p and v in place
    _launch(_sgd_update_1d, p, (g, v), (lr, momentum, weight_decay))


def adagrad_update_(p, g, s, lr, eps, weight_decay):
    # p, g, s (any shape, same size) -> None; updates p and s in place
    _launch(_adagrad_update_1d, p, (g, s), (lr, eps, weight_decay))


def rmsprop_update_(p, g, s, lr, alpha, eps, weight_decay):
    # p, g, s (any shape, same size) -> None; updates p and s in place
    _launch(_rmsprop_update_1d, p, (g, s), (lr, alpha, eps, weight_decay))


def adam_update_(p, g, m, v, lr, beta1, beta2, eps, step, weight_decay):
    # p, g, m, v (any shape, same size), step >= 1 -> None; updates p, m and v in place
    bc1 = 1.0 - float(beta1) ** int(step)
    bc2 = 1.0 - float(beta2) ** int(step)
    _launch(_adam_update_1d, p, (g, m, v), (lr, beta1, beta2, eps, bc1, bc2, weight_decay))
