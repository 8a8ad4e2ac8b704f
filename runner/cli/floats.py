"""Float options that must be finite: click's FLOAT and FloatRange accept inf and nan.

`--lr inf` used to pass click (inf > 0) and be refused later as "--lr must be > 0,
got inf", and `--lr nan` passed every comparison. Every float option of nbnets
takes one of these types instead, which refuse inf, -inf and nan before any range
check: `Error: Invalid value for '--lr': must be a finite number, got inf`.
Their names, metavars and range texts in --help are click's own.
"""

from __future__ import annotations

import math

import click


def _finite(value, param, ctx, fail) -> float:
    number = click.FLOAT.convert(value, param, ctx)
    if not math.isfinite(number):
        fail(f"must be a finite number, got {value}", param, ctx)
    return number


class FiniteFloat(click.types.FloatParamType):
    """click's FLOAT without inf and nan."""

    def convert(self, value, param, ctx):
        return _finite(value, param, ctx, self.fail)


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange without inf and nan (checked before the range)."""

    def convert(self, value, param, ctx):
        return super().convert(_finite(value, param, ctx, self.fail), param, ctx)


FINITE = FiniteFloat()
