"""Small synthetic volumes for the affinity tests, handed out as fixtures (the suite runs in
importlib mode, where test modules cannot import each other)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def zscored_volumes(
    rng: np.random.Generator, n: int, shape: tuple[int, int, int], shift: float = 0.0
) -> list[np.ndarray]:
    """``n`` float32 volumes: smooth random structure plus noise, roughly z-scored."""
    out = []
    for _ in range(n):
        base = rng.normal(size=shape).cumsum(axis=0) / np.sqrt(shape[0])
        volume = base + 0.3 * rng.normal(size=shape) + shift
        out.append(((volume - volume.mean()) / volume.std() + shift).astype(np.float32))
    return out


@pytest.fixture
def make_zscored_volumes() -> Callable[..., list[np.ndarray]]:
    """:func:`zscored_volumes`."""
    return zscored_volumes
