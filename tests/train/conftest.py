"""Training tests run torch on one thread (`one_torch_thread` in tests/conftest.py); the processes that
torchrun starts get OMP_NUM_THREADS=1 from torchrun."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield
