"""The data types of `nbnets bench`: what a case is, what one implementation's timed call is, where it runs.

A Case holds `make(rng)` -> host inputs (float32) and, per implementation
("numbanets", "numpy", "torch"), a factory `(inputs, ctx) -> Runner`. A
Runner's `run()` is the timed call (an op, or a whole training step), and
`outputs(result)` turns what one call returned into host numpy arrays named the
same in every implementation, so the peers can be checked against numbanets
before they are timed. Both runner.bench.cases (which builds cases) and
runner.bench.measure (which runs them) use these types; neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

IMPLS = ("numbanets", "numpy", "torch")


@dataclass
class Ctx:
    device: str = "cpu"   # where numbanets and torch run ("cpu" or "cuda"); numpy always on the CPU
    torch: Any = None     # the torch module, or None when it is skipped


@dataclass
class Runner:
    run: Callable[[], Any]
    outputs: Callable[[Any], dict]
    timer: str = "cpu"    # "cpu" (perf_counter), "numba-cuda" or "torch-cuda" (CUDA events)
    device: str = "cpu"


@dataclass
class Case:
    name: str
    suite: str            # "kernels" or "train"
    shape: str
    flops: float          # per run (NaN: none counted)
    make: Callable[[np.random.Generator], dict]
    impls: dict = field(default_factory=dict)   # impl -> factory(inputs, ctx) -> Runner

    @property
    def train(self) -> bool:
        return self.suite == "train"
