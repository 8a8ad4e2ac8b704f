"""Module: parameters, their gradients, child modules; forward stores, backward accumulates.

    m.params     {name: array}  this module's own parameters
    m.grads      {name: array}  same keys, shapes and dtypes; zero after construction
    m.children   {name: Module} sub-modules in order ("0", "1", ... in Sequential)

    y  = m.forward(x)     keeps on `m` what backward needs
    dx = m.backward(dy)   ADDS this call's parameter gradients into m.grads (+=), and releases the
                          activations forward kept (one backward per forward, as in torch; Dropout
                          keeps its mask)

Gradients from several forward/backward pairs accumulate until `zero_grad()`. Dotted
names ("0.w", "rnn.l1.w_hh") address parameters across the tree in a stable
order: a module's own parameters first (in insertion order), then its children.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from numbanets.device import to_device, to_host
from numbanets.nn.arrays import copy_from_host, device_of, fill_zero, host_copy, zeros_like

__all__ = ["Module"]


class Module:
    def __init__(self):
        self.params: dict = OrderedDict()
        self.grads: dict = OrderedDict()
        self.children: dict = OrderedDict()
        self.training = True

    # ----------------------------------------------------------------- building
    def add_param(self, name: str, value):
        """Register parameter `name` (with a zero gradient of its shape); returns it."""
        if "." in name:
            raise ValueError(f"parameter names must not contain '.', got {name!r}")
        self.params[name] = value
        self.grads[name] = zeros_like(value)
        return value

    def add_module(self, name: str, module: "Module") -> "Module":
        """Register a child module under `name`; returns it."""
        if not isinstance(module, Module):
            raise TypeError(f"child {name!r} must be a Module, got {type(module).__name__}")
        if "." in name:
            raise ValueError(f"module names must not contain '.', got {name!r}")
        self.children[name] = module
        return module

    # ----------------------------------------------------------------- passes
    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def _saved(self, attr: str):
        """What forward saved in self.<attr> for backward; a clear error when there is none."""
        saved = getattr(self, attr)
        if saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward needs a forward first "
                               "(each backward releases what its forward saved)")
        return saved

    def _release(self, attr: str) -> None:
        """Drop self.<attr> once backward has used it: like torch's autograd, a backward frees its forward's
        activations, so the layers already passed free theirs while the rest of the backward runs (a lower
        peak). A second backward needs a new forward; a backward that raised keeps them for a retry."""
        setattr(self, attr, None)

    # ----------------------------------------------------------------- the tree
    def modules(self):
        """This module and all its descendants, depth first, parents before children."""
        yield self
        for child in self.children.values():
            yield from child.modules()

    def named_parameters(self, prefix: str = ""):
        """(dotted_name, param, grad) over the whole tree in a stable order."""
        for name, p in self.params.items():
            yield prefix + name, p, self.grads[name]
        for cname, child in self.children.items():
            yield from child.named_parameters(f"{prefix}{cname}.")

    def parameters(self) -> list:
        return [p for _, p, _ in self.named_parameters()]

    def gradients(self) -> list:
        return [g for _, _, g in self.named_parameters()]

    def num_parameters(self) -> int:
        return int(sum(int(np.prod(p.shape)) for p in self.parameters()))

    def zero_grad(self) -> None:
        for _, _, g in self.named_parameters():
            fill_zero(g)

    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    @property
    def device(self) -> str:
        """"cuda" when the parameters are device arrays, else "cpu" (also for no parameters)."""
        for _, p, _ in self.named_parameters():  # the first one decides: no list of them all
            return device_of(p)
        return "cpu"

    def to(self, device: str) -> "Module":
        """Move every parameter and gradient to "cpu" or "cuda" (in place); returns self.

        Build optimizers after moving: they keep state arrays on the parameters' device.
        """
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        move = to_device if device == "cuda" else to_host
        for m in self.modules():
            for name in m.params:
                m.params[name] = move(m.params[name])
                m.grads[name] = move(m.grads[name])
        return self

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """{dotted_name: numpy copy of the parameter} (host arrays, whatever the device)."""
        return OrderedDict((name, host_copy(p)) for name, p, _ in self.named_parameters())

    def load_state_dict(self, state: dict) -> None:
        """Copy `state` into the parameters in place; every key, shape and dtype must match.

        ValueError names the first missing, unexpected or mismatched key; nothing
        is changed unless everything matches.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict of arrays, got {type(state).__name__}")
        own = OrderedDict((name, p) for name, p, _ in self.named_parameters())
        for name in own:
            if name not in state:
                raise ValueError(f"state_dict is missing parameter {name!r}")
        for name in state:
            if name not in own:
                raise ValueError(f"state_dict has unexpected key {name!r} (the model has {', '.join(own)})")
        for name, p in own.items():
            value = state[name]
            shape = tuple(getattr(value, "shape", ()))
            dtype = np.dtype(getattr(value, "dtype", type(value)))
            if shape != tuple(p.shape):
                raise ValueError(f"state_dict[{name!r}] has shape {shape}, the model needs {tuple(p.shape)}")
            if dtype != np.dtype(p.dtype):
                raise ValueError(f"state_dict[{name!r}] has dtype {dtype}, the model needs {np.dtype(p.dtype)}")
        for name, p in own.items():
            copy_from_host(p, to_host(state[name]))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.children.items())
        return f"{type(self).__name__}({inner})"
