"""The optimizers through make_optimizer against their published update rules, in float64, without torch.

The rules are written here from the papers / torch.optim's documented algorithms (not from
numbanets.optim or its kernels), one scalar formula per element, so momentum SGD, Adagrad, RMSprop and
Adam have a value check even where the torch parity tests (test_optim.py) cannot run:

    SGD      (Polyak momentum, torch form)  v = mu v + g' ;  p -= lr v
    Adagrad  (Duchi et al. 2011)            s = s + g'^2 ;  p -= lr g' / (sqrt(s) + eps)
    RMSprop  (Tieleman & Hinton 2012)       s = a s + (1 - a) g'^2 ;  p -= lr g' / (sqrt(s) + eps)
    Adam     (Kingma & Ba 2015, Alg. 1)     m = b1 m + (1-b1) g' ; v = b2 v + (1-b2) g'^2 ;
                                            p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

with g' = g + weight_decay * p (L2 added to the gradient). Six steps with a learning-rate change after
the third; every parameter after every step to 1e-13.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from gradcheck import assert_close

from numbanets import nn, optim


def _rule(name, kw):
    """A per-element update closure (p, g, state, lr, t) -> new p, from the published rule."""
    wd = kw.get("weight_decay", 0.0)
    if name == "sgd":
        mu = kw.get("momentum", 0.0)

        def step(p, g, st, lr, t):
            g = g + wd * p
            st["v"] = mu * st.get("v", 0.0) + g
            return p - lr * st["v"]
    elif name == "adagrad":
        eps = kw.get("eps", 1e-8)

        def step(p, g, st, lr, t):
            g = g + wd * p
            st["s"] = st.get("s", 0.0) + g * g
            return p - lr * g / (math.sqrt(st["s"]) + eps)
    elif name == "rmsprop":
        a, eps = kw.get("alpha", 0.95), kw.get("eps", 1e-8)

        def step(p, g, st, lr, t):
            g = g + wd * p
            st["s"] = a * st.get("s", 0.0) + (1 - a) * g * g
            return p - lr * g / (math.sqrt(st["s"]) + eps)
    else:
        (b1, b2), eps = kw.get("betas", (0.9, 0.999)), kw.get("eps", 1e-8)

        def step(p, g, st, lr, t):
            g = g + wd * p
            st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
            st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g * g
            m_hat, v_hat = st["m"] / (1 - b1 ** t), st["v"] / (1 - b2 ** t)
            return p - lr * m_hat / (math.sqrt(v_hat) + eps)
    return step


CASES = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.5, "weight_decay": 0.01}),
    ("adagrad", {}),
    ("adagrad", {"eps": 1e-3, "weight_decay": 0.02}),
    ("rmsprop", {}),
    ("rmsprop", {"alpha": 0.8, "eps": 1e-4, "weight_decay": 0.01}),
    ("adam", {}),
    ("adam", {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.03}),
]


@pytest.mark.parametrize("name, kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_steps_follow_the_published_rule(rng, name, kw):
    model = nn.Sequential(nn.Linear(3, 4, rng=rng, dtype=np.float64), nn.Tanh(),
                          nn.Linear(4, 2, rng=rng, dtype=np.float64))
    lr = 0.05
    opt = optim.make_optimizer(name, model, lr, **kw)
    rule = _rule(name, kw)
    expected = [p.copy() for p in model.parameters()]
    states = [[{} for _ in range(p.size)] for p in expected]
    for t in range(1, 7):
        if t == 4:  # a learning-rate change between steps (lr decay)
            opt.lr = lr = 0.025
        grads = [rng.standard_normal(p.shape) for p in expected]
        for g, new in zip(model.gradients(), grads):
            g[...] = new
        opt.step()
        for k, (e, g) in enumerate(zip(expected, grads)):
            flat_e, flat_g = e.reshape(-1), g.reshape(-1)
            for i in range(flat_e.size):
                flat_e[i] = rule(float(flat_e[i]), float(flat_g[i]), states[k][i], lr, t)
        for (n, p, _), e in zip(model.named_parameters(), expected):
            assert p.dtype == np.float64
            assert_close(p, e, rtol=1e-13, atol=1e-14, name=f"{name} {n} after step {t}")
    assert opt.steps == 6
