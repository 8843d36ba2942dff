from __future__ import annotations

import math

import numpy as np
import pytest

from seqtransfer.affinity import affinity, robust_h_scale


def test_formula_scalar() -> None:
    assert affinity(2.0, 0.25) == pytest.approx(0.5 * 2.0 + 0.5 * 0.75)
    assert affinity(3.0, 0.5, alpha=0.2, beta=0.8, h_scale=1.5) == pytest.approx(0.2 * 2.0 + 0.8 * 0.5)
    assert isinstance(affinity(1.0, 1.0), float)


def test_formula_arrays_broadcast() -> None:
    h = np.array([[0.0, 1.0], [2.0, 4.0]])
    r = np.array([1.0, 0.0])
    w = affinity(h, r, alpha=1.0, beta=2.0, h_scale=2.0)
    np.testing.assert_allclose(w, [[0.0, 2.5], [1.0, 4.0]])


def test_zero_weights_are_allowed() -> None:
    assert affinity(5.0, 0.2, alpha=0.0, beta=1.0) == pytest.approx(0.8)
    assert affinity(5.0, 0.2, alpha=1.0, beta=0.0) == pytest.approx(5.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": -0.1},
        {"beta": -1.0},
        {"alpha": math.nan},
        {"beta": math.inf},
        {"h_scale": 0.0},
        {"h_scale": -2.0},
        {"h_scale": math.nan},
    ],
)
def test_invalid_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        affinity(1.0, 0.5, **kwargs)


def test_robust_h_scale_is_the_median_of_positive_finite_values() -> None:
    values = np.array([0.0, 1.0, 2.0, 3.0, 100.0, np.nan, np.inf, -1.0])
    assert robust_h_scale(values) == pytest.approx(2.5)
    assert robust_h_scale(np.array([[4.0, 1.0], [9.0, 0.0]])) == pytest.approx(4.0)


@pytest.mark.parametrize("values", [[], [0.0, 0.0], [np.nan, -3.0]])
def test_robust_h_scale_falls_back_to_one(values: list[float]) -> None:
    assert robust_h_scale(np.asarray(values)) == 1.0
