"""Shared pytest fixtures: a per-test seeded random generator and an optional torch."""

from __future__ import annotations

import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """np.random.default_rng seeded from the test's node id: fixed per test, independent across tests."""
    seed = zlib.crc32(request.node.nodeid.encode("utf-8"))
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def torch():
    """The torch module, or skip the test when torch is not importable (an optional peer)."""
    try:
        import torch as _torch
    except (ImportError, OSError):
        pytest.skip("torch not installed")
    return _torch
