"""Optimizers over a Module's parameters: SGD (momentum), Adagrad, RMSprop, Adam.

    opt = Adam(model, lr=1e-3)
    model.zero_grad(); ...backward...; clip_grad_norm(model.gradients(), 5.0); opt.step()
    opt.lr *= 0.97                       # the learning rate is a plain attribute
    state = opt.state_dict(); opt.load_state_dict(state)   # exact resume

Each optimizer keeps per-parameter state arrays of the parameter's shape, dtype
and device (build it after `model.to(device)`), and `step()` runs one fused,
in-place update kernel per parameter, chosen by array type like
numbanets.functional does (numpy -> numbanets.kernels.cpu.optim, device arrays
-> numbanets.kernels.cuda.optim). Updates (g' = g + weight_decay * p):

    SGD      v = momentum v + g' ;                      p -= lr v
    Adagrad  s = s + g'^2 ;                             p -= lr g' / (sqrt(s) + eps)
    RMSprop  s = alpha s + (1 - alpha) g'^2 ;           p -= lr g' / (sqrt(s) + eps)
    Adam     m = b1 m + (1 - b1) g' ; v = b2 v + (1 - b2) g'^2 ;
             p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps),  t = 1, 2, ...

matching torch.optim's SGD (no dampening, no nesterov), Adagrad, RMSprop (not
centered) and Adam (not amsgrad). state_dict() is a flat dict of host numpy
arrays: "step" and "lr" (0-d) and "<slot>.<parameter name>" per state array.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from numbanets import functional
from numbanets.device import to_host
from numbanets.functional import clip_grad_norm
from numbanets.nn.arrays import copy_from_host, host_copy, zeros_like
from numbanets.nn.module import Module

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "OPTIMIZERS", "make_optimizer",
           "update_kernels", "clip_grad_norm"]


def update_kernels(p, g):
    """The optim kernel module of the backend p and g live on (TypeError when they differ)."""
    return functional.backend_of(param=p, grad=g).optim


def _number(value, name, low=0.0, high=None, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    bad = value <= low if low_open else value < low
    if bad or (high is not None and value >= high) or value != value:
        where = f"{'>' if low_open else '>='} {low:g}" + ("" if high is None else f" and < {high:g}")
        raise ValueError(f"{name} must be {where}, got {value!r}")
    return value


class Optimizer:
    """Base class: holds the module, lr, the step count and the state arrays per parameter."""

    slots: tuple = ()

    def __init__(self, module, lr, weight_decay=0.0):
        if not isinstance(module, Module):
            raise TypeError(f"an optimizer needs a numbanets.nn.Module, got {type(module).__name__}")
        self.module = module
        self.lr = _number(lr, "lr")
        self.weight_decay = _number(weight_decay, "weight_decay")
        self.steps = 0
        self.state = OrderedDict(
            (name, OrderedDict((slot, zeros_like(p)) for slot in self.slots))
            for name, p, _ in module.named_parameters()
        )

    def step(self) -> None:
        """One update of every parameter from its current gradient."""
        self.steps += 1
        for name, p, g in self.module.named_parameters():
            if name not in self.state:
                raise ValueError(f"parameter {name!r} appeared after the optimizer was built")
            self._update(update_kernels(p, g), p, g, self.state[name])

    def _update(self, kernels, p, g, state) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """{"step": 0-d int64, "lr": 0-d float64, "<slot>.<param>": host copy} (numpy arrays)."""
        out = OrderedDict(step=np.array(self.steps, dtype=np.int64), lr=np.array(self.lr, dtype=np.float64))
        for name, slots in self.state.items():
            for slot, a in slots.items():
                out[f"{slot}.{name}"] = host_copy(a)
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore step count, lr and state arrays (in place); ValueError names the first bad key."""
        if not isinstance(state, dict):
            raise TypeError(f"optimizer state must be a dict of arrays, got {type(state).__name__}")
        expected = OrderedDict(step=None, lr=None)
        for name, slots in self.state.items():
            for slot, a in slots.items():
                expected[f"{slot}.{name}"] = a
        for key in expected:
            if key not in state:
                raise ValueError(f"optimizer state_dict is missing {key!r}")
        for key in state:
            if key not in expected:
                raise ValueError(f"optimizer state_dict has unexpected key {key!r} ({type(self).__name__} "
                                 f"state keys: step, lr, {', '.join(self.slots)}.<parameter>)")
        scalars = {}
        for key in ("step", "lr"):
            value = np.asarray(state[key])
            if value.size != 1 or not np.issubdtype(value.dtype, np.number):
                raise ValueError(f"optimizer state_dict[{key!r}] must be a single number, got {value!r}")
            scalars[key] = value.reshape(()).item()
        if scalars["step"] < 0 or scalars["step"] != int(scalars["step"]):
            raise ValueError(f"optimizer state_dict['step'] must be a whole number >= 0, got {scalars['step']!r}")
        lr = _number(scalars["lr"], "optimizer state_dict['lr']")
        for key, a in expected.items():
            if a is None:
                continue
            value = state[key]
            shape, dtype = tuple(getattr(value, "shape", ())), np.dtype(getattr(value, "dtype", object))
            if shape != tuple(a.shape) or dtype != np.dtype(a.dtype):
                raise ValueError(f"optimizer state_dict[{key!r}] is {dtype} {shape}, "
                                 f"expected {np.dtype(a.dtype)} {tuple(a.shape)}")
        for key, a in expected.items():
            if a is not None:
                copy_from_host(a, to_host(state[key]))
        self.steps = int(scalars["step"])
        self.lr = lr

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr:g}, steps={self.steps})"


class SGD(Optimizer):
    slots = ("momentum",)

    def __init__(self, module, lr, momentum=0.0, weight_decay=0.0):
        self.momentum = _number(momentum, "momentum", 0.0, 1.0)
        super().__init__(module, lr, weight_decay)

    def _update(self, k, p, g, s):
        k.sgd_update_(p, g, s["momentum"], float(self.lr), self.momentum, self.weight_decay)


class Adagrad(Optimizer):
    slots = ("sum",)

    def __init__(self, module, lr, eps=1e-8, weight_decay=0.0):
        self.eps = _number(eps, "eps")
        super().__init__(module, lr, weight_decay)

    def _update(self, k, p, g, s):
        k.adagrad_update_(p, g, s["sum"], float(self.lr), self.eps, self.weight_decay)


class RMSprop(Optimizer):
    slots = ("square_avg",)

    def __init__(self, module, lr, alpha=0.95, eps=1e-8, weight_decay=0.0):
        self.alpha = _number(alpha, "alpha", 0.0, 1.0)
        self.eps = _number(eps, "eps")
        super().__init__(module, lr, weight_decay)

    def _update(self, k, p, g, s):
        k.rmsprop_update_(p, g, s["square_avg"], float(self.lr), self.alpha, self.eps, self.weight_decay)


class Adam(Optimizer):
    slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, module, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair of numbers, got {betas!r}") from None
        self.betas = (_number(b1, "betas[0]", 0.0, 1.0), _number(b2, "betas[1]", 0.0, 1.0))
        self.eps = _number(eps, "eps")
        super().__init__(module, lr, weight_decay)

    def _update(self, k, p, g, s):
        b1, b2 = self.betas
        k.adam_update_(p, g, s["exp_avg"], s["exp_avg_sq"], float(self.lr), b1, b2, self.eps, int(self.steps),
                       self.weight_decay)


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam}


def make_optimizer(name, module, lr, **kw) -> Optimizer:
    """An optimizer by name: "sgd", "adagrad", "rmsprop" or "adam" (keyword options as the classes)."""
    key = name.lower() if isinstance(name, str) else name
    if key not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")
    return OPTIMIZERS[key](module, lr, **kw)
