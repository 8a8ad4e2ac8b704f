"""Fused, in-place optimizer updates on the CPU (`numba.njit`), one pass over raveled arrays.

p: parameter, g: its gradient (read only), state arrays as named; all the same
shape and dtype, C-contiguous. Weight decay is L2 on the gradient:
g' = g + weight_decay * p. Scalars are computed in float64 and stored in the
arrays' dtype.

    sgd      v = momentum*v + g' ;                     p -= lr*v
    adagrad  s = s + g'^2 ;                            p -= lr*g'/(sqrt(s)+eps)
    rmsprop  s = alpha*s + (1-alpha)*g'^2 ;            p -= lr*g'/(sqrt(s)+eps)
    adam     m = b1*m + (1-b1)*g' ; v = b2*v + (1-b2)*g'^2 ;
             p -= lr * (m/(1-b1^step)) / (sqrt(v/(1-b2^step)) + eps)     step starts at 1

These match torch.optim.SGD (dampening 0, no nesterov), Adagrad (lr_decay 0),
RMSprop (not centered, no momentum) and Adam (not amsgrad).
"""

import math

import numpy as np
from numba import njit

from numbanets.kernels.cpu.jit import JIT_OPTIONS

__all__ = ["sgd_update_", "adagrad_update_", "rmsprop_update_", "adam_update_"]


@njit(**JIT_OPTIONS)  # no zero-division branch: the loop vectorises
def sgd_update_(p, g, v, lr, momentum, weight_decay):
    # p, g, v (any shape, same size) -> None; updates p and v in place
    pf = p.reshape(p.size)
    gf = g.ravel()
    vf = v.reshape(v.size)
    for i in range(pf.size):
        pi = np.float64(pf[i])
        gi = np.float64(gf[i]) + weight_decay * pi
        vi = momentum * np.float64(vf[i]) + gi
        vf[i] = vi
        pf[i] = pi - lr * vi


@njit(**JIT_OPTIONS)  # no zero-division branch: the loop vectorises
def adagrad_update_(p, g, s, lr, eps, weight_decay):
    # p, g, s (any shape, same size) -> None; updates p and s in place
    pf = p.reshape(p.size)
    gf = g.ravel()
    sf = s.reshape(s.size)
    for i in range(pf.size):
        pi = np.float64(pf[i])
        gi = np.float64(gf[i]) + weight_decay * pi
        si = np.float64(sf[i]) + gi * gi
        sf[i] = si
        pf[i] = pi - lr * gi / (math.sqrt(si) + eps)


@njit(**JIT_OPTIONS)  # no zero-division branch: the loop vectorises
def rmsprop_update_(p, g, s, lr, alpha, eps, weight_decay):
    # p, g, s (any shape, same size) -> None; updates p and s in place
    pf = p.reshape(p.size)
    gf = g.ravel()
    sf = s.reshape(s.size)
    for i in range(pf.size):
        pi = np.float64(pf[i])
        gi = np.float64(gf[i]) + weight_decay * pi
        si = alpha * np.float64(sf[i]) + (1.0 - alpha) * gi * gi
        sf[i] = si
        pf[i] = pi - lr * gi / (math.sqrt(si) + eps)


@njit(**JIT_OPTIONS)  # no zero-division branch: the loop vectorises
def adam_update_(p, g, m, v, lr, beta1, beta2, eps, step, weight_decay):
    # p, g, m, v (any shape, same size), step >= 1 -> None; updates p, m and v in place
    pf = p.reshape(p.size)
    gf = g.ravel()
    mf = m.reshape(m.size)
    vf = v.reshape(v.size)
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    for i in range(pf.size):
        pi = np.float64(pf[i])
        gi = np.float64(gf[i]) + weight_decay * pi
        mi = beta1 * np.float64(mf[i]) + (1.0 - beta1) * gi
        vi = beta2 * np.float64(vf[i]) + (1.0 - beta2) * gi * gi
        mf[i] = mi
        vf[i] = vi
        pf[i] = pi - lr * (mi / bc1) / (math.sqrt(vi / bc2) + eps)
