"""numbanets: Numba kernels for classic deep learning, with their backward passes."""

__version__ = "0.1.0"
