"""The error of the environment variables the CPU kernels read when they load.

    SettingError    NUMBANETS_BLAS or NUMBANETS_RECURRENT_GEMM holds a value numbanets does not know

An ImportError (the kernel module cannot load with it), of its own class so that `nbnets` reports it as
one line with exit code 2, as it does bad options; a light module, so the CLI can name it without
loading a BLAS.
"""

__all__ = ["SettingError"]


class SettingError(ImportError):
    """An environment variable numbanets reads when a kernel module loads has a value it does not know."""
