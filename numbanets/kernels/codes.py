"""Activation codes: the one table shared by the op API and both kernel packages.

Kernels take an activation as a small int (a compiled kernel branches on it);
`numbanets.functional` maps the user's name to it. This module imports nothing,
so `numbanets.kernels.cpu` and `numbanets.kernels.cuda` both use it without
importing each other.

    IDENTITY 0, TANH 1, SIGMOID 2, RELU 3
    ACTIVATION_CODES   name -> code
    ACTIVATIONS        the names, in code order
"""

IDENTITY = 0
TANH = 1
SIGMOID = 2
RELU = 3

ACTIVATION_CODES = {"identity": IDENTITY, "tanh": TANH, "sigmoid": SIGMOID, "relu": RELU}
ACTIVATIONS = tuple(ACTIVATION_CODES)

__all__ = ["IDENTITY", "TANH", "SIGMOID", "RELU", "ACTIVATION_CODES", "ACTIVATIONS"]
