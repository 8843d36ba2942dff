"""Fixtures of the training tests: toy volumes."""

from __future__ import annotations

import numpy as np
import pytest


def cube_cases(n: int, size: int = 16, seed: int = 0, contrast: float = 2.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Learnable toy task: a bright cube (foreground) in Gaussian noise."""
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n):
        label = np.zeros((size, size, size), dtype=np.uint8)
        edge = int(rng.integers(size // 4, size // 2))
        o = rng.integers(1, size - edge - 1, size=3)
        label[o[0] : o[0] + edge, o[1] : o[1] + edge, o[2] : o[2] + edge] = 1
        image = (rng.normal(0.0, 1.0, size=(1, size, size, size)) + contrast * label).astype(np.float32)
        cases.append((image, label))
    return cases


@pytest.fixture
def cubes():
    """``cubes(n, size=16, seed=0)``: toy cases."""
    return cube_cases
