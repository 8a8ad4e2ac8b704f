"""Feed-forward layers. Every computation goes through numbanets.functional.

    Conv2D(in_channels, maps, kernel_size, stride=1, padding=0, groups=1, bias=True, *, rng, dtype)
        x (N, C, H, W) -> y (N, F, OH, OW); params w (F, C/groups, KH, KW), b (F,)
    MaxPool2D(kernel_size, stride=None, padding=0)   x (N, C, H, W) -> y (N, C, OH, OW)
    GlobalAvgPool2D()    x (N, C, H, W) -> y (N, C): the mean of every feature map (the `gap` token)
    Linear(in_features, out_features, bias=True, *, rng, dtype)
        x (N, D) -> y (N, O); params w (O, D), b (O,)
    Flatten()        x (N, ...) -> y (N, prod(...))
    Activation(name) element-wise identity / tanh / sigmoid / relu; ReLU(), Tanh(), Sigmoid()
    Dropout(p, *, rng)   inverted dropout: zero with probability p, scale the rest by 1/(1-p);
                         identity in eval mode
    Sequential(*layers)  children "0", "1", ...; backward runs them in reverse

`output_shape(input_shape)` gives the output size for an input shape with or
without the batch dimension ((C, H, W) or (N, C, H, W)), from numbanets.shapes.
"""

from __future__ import annotations

import math

import numpy as np

from numbanets import functional as F
from numbanets import shapes
from numbanets.device import to_device
from numbanets.nn import init
from numbanets.nn.arrays import add_, device_of, mul
from numbanets.nn.module import Module

__all__ = ["Conv2D", "MaxPool2D", "GlobalAvgPool2D", "Linear", "Flatten", "Activation", "ReLU", "Tanh", "Sigmoid",
           "Dropout", "Sequential"]


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _spatial(input_shape, channels, layer):
    """(batch prefix, C, spatial sizes) of an input shape (C, H, W) or (N, C, H, W)."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (3, 4):
        raise ValueError(f"{layer} input shape must be (C, H, W) or (N, C, H, W), got {shape}")
    prefix, c, sizes = shape[:-3], shape[-3], shape[-2:]
    if channels is not None and c != channels:
        raise ValueError(f"{layer} expects {channels} input channels, got shape {shape}")
    return prefix, c, sizes


class Conv2D(Module):
    def __init__(self, in_channels, maps, kernel_size, stride=1, padding=0, groups=1, bias=True, *,
                 rng, dtype=np.float32):
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.maps = _positive_int(maps, "maps")
        self.kernel_size = shapes.as_pair(kernel_size, "kernel_size", 2)
        self.stride = shapes.as_pair(stride, "stride", 2)
        self.padding = padding if isinstance(padding, str) else shapes.as_pair(padding, "padding", 2)
        self.groups = _positive_int(groups, "groups")
        if in_channels % groups or maps % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and maps={maps}")
        kh, kw = self.kernel_size
        fan_in = in_channels // groups * kh * kw
        self.add_param("w", init.fan_in_uniform(rng, (maps, in_channels // groups, kh, kw), fan_in, dtype))
        if bias:
            self.add_param("b", init.fan_in_uniform(rng, (maps,), fan_in, dtype))
        self.x = None

    def output_shape(self, input_shape):
        prefix, _, sizes = _spatial(input_shape, self.in_channels, "Conv2D")
        out, _, _ = shapes.conv_output_shape(sizes, self.kernel_size, self.stride, self.padding)
        return prefix + (self.maps,) + tuple(out)

    def forward(self, x):
        self.x = x
        return F.conv2d(x, self.params["w"], self.params.get("b"), self.stride, self.padding, self.groups)

    def backward(self, dy):
        dx, dw, db = F.conv2d_backward(dy, self._saved("x"), self.params["w"], self.stride, self.padding,
                                       self.groups)
        self._release("x")
        add_(self.grads["w"], dw)
        if "b" in self.params:
            add_(self.grads["b"], db)
        return dx

    def __repr__(self):
        return (f"Conv2D({self.in_channels}, {self.maps}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding!r}, groups={self.groups}, bias={'b' in self.params})")


class MaxPool2D(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = shapes.as_pair(kernel_size, "kernel_size", 2)
        self.stride = self.kernel_size if stride is None else shapes.as_pair(stride, "stride", 2)
        self.padding = padding if isinstance(padding, str) else shapes.as_pair(padding, "padding", 2)
        self.indices = None
        self.x_shape = None

    def output_shape(self, input_shape):
        prefix, c, sizes = _spatial(input_shape, None, "MaxPool2D")
        out, _, _ = shapes.conv_output_shape(sizes, self.kernel_size, self.stride, self.padding)
        return prefix + (c,) + tuple(out)

    def forward(self, x):
        y, self.indices = F.max_pool2d(x, self.kernel_size, self.stride, self.padding)
        self.x_shape = tuple(x.shape)
        return y

    def backward(self, dy):
        dx = F.max_pool2d_backward(dy, self._saved("indices"), self.x_shape)
        self._release("indices")
        return dx

    def __repr__(self):
        return f"MaxPool2D(kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding!r})"


class GlobalAvgPool2D(Module):
    """Global average pooling: every feature map to its mean, (N, C, H, W) -> (N, C), no parameters."""

    def __init__(self):
        super().__init__()
        self.x_shape = None

    def output_shape(self, input_shape):
        prefix, c, _ = _spatial(input_shape, None, "GlobalAvgPool2D")
        return prefix + (c,)

    def forward(self, x):
        y = F.gap_forward(x)
        self.x_shape = tuple(x.shape)
        return y

    def backward(self, dy):
        dx = F.gap_backward(dy, self._saved("x_shape"))
        self._release("x_shape")
        return dx

    def __repr__(self):
        return "GlobalAvgPool2D()"


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True, *, rng, dtype=np.float32):
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        self.add_param("w", init.fan_in_uniform(rng, (out_features, in_features), in_features, dtype))
        if bias:
            self.add_param("b", init.fan_in_uniform(rng, (out_features,), in_features, dtype))
        self.x = None

    def output_shape(self, input_shape):
        shape = tuple(int(s) for s in input_shape)
        if not shape or shape[-1] != self.in_features:
            raise ValueError(f"Linear expects {self.in_features} input features, got shape {shape}")
        return shape[:-1] + (self.out_features,)

    def forward(self, x):
        self.x = x
        return F.linear(x, self.params["w"], self.params.get("b"))

    def backward(self, dy):
        dx, dw, db = F.linear_backward(dy, self._saved("x"), self.params["w"])
        self._release("x")
        add_(self.grads["w"], dw)
        if "b" in self.params:
            add_(self.grads["b"], db)
        return dx

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={'b' in self.params})"


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1*d2*...); backward restores the shape."""

    def __init__(self):
        super().__init__()
        self.x_shape = None

    def output_shape(self, input_shape):
        """For a shape with the batch dimension (N, ...) -> (N, prod(...))."""
        shape = tuple(int(s) for s in input_shape)
        return (shape[0], math.prod(shape[1:]))

    def forward(self, x):
        self.x_shape = tuple(x.shape)
        return x.reshape((x.shape[0], math.prod(x.shape[1:])))

    def backward(self, dy):
        return dy.reshape(self.x_shape)

    def __repr__(self):
        return "Flatten()"


class Activation(Module):
    """Element-wise activation by name: identity, tanh, sigmoid or relu."""

    def __init__(self, name):
        super().__init__()
        if not isinstance(name, str) or name.lower() not in F.ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(F.ACTIVATIONS)}; got {name!r}")
        self.name = name.lower()
        self.y = None

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x):
        self.y = F.activation(x, self.name)
        return self.y

    def backward(self, dy):
        dx = F.activation_backward(dy, self._saved("y"), self.name)
        self._release("y")
        return dx

    def __repr__(self):
        return f"Activation({self.name!r})"


class ReLU(Activation):
    def __init__(self):
        super().__init__("relu")


class Tanh(Activation):
    def __init__(self):
        super().__init__("tanh")


class Sigmoid(Activation):
    def __init__(self):
        super().__init__("sigmoid")


class Dropout(Module):
    """Inverted dropout: y = x * mask, mask = keep / (1 - p), keep ~ Bernoulli(1 - p).

    The mask is drawn on the host from `rng` (so a seed fixes it on any device)
    and moved to the input's device. Identity in eval mode and for p = 0.
    """

    def __init__(self, p, *, rng):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = rng
        self.mask = None

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self.mask = None
            return x
        keep = self.rng.random(tuple(x.shape)) >= self.p
        mask = keep.astype(np.dtype(x.dtype)) * np.dtype(x.dtype).type(1.0 / (1.0 - self.p))
        self.mask = to_device(mask) if device_of(x) == "cuda" else mask
        return mul(x, self.mask)

    def backward(self, dy):
        return dy if self.mask is None else mul(dy, self.mask)

    def __repr__(self):
        return f"Dropout(p={self.p})"


class Sequential(Module):
    """Layers applied in order; children are named "0", "1", ..."""

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            self.add_module(str(i), layer)

    def __len__(self):
        return len(self.children)

    def __getitem__(self, i):
        return list(self.children.values())[i]

    def __iter__(self):
        return iter(self.children.values())

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self:
            shape = layer.output_shape(shape)
        return shape

    def forward(self, x):
        for layer in self:
            x = layer.forward(x)
        return x

    def backward(self, dy):
        for layer in reversed(list(self.children.values())):
            dy = layer.backward(dy)
        return dy

    def __repr__(self):
        inner = "".join(f"\n  ({k}): {v!r}" for k, v in self.children.items())
        return f"Sequential({inner}\n)"
