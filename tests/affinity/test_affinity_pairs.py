from __future__ import annotations

import numpy as np
import pytest

from seqtransfer.affinity import sample_pairs


def test_all_pairs_when_few() -> None:
    pairs = sample_pairs(3, 4, max_pairs=12)
    expected = [(k, l) for k in range(3) for l in range(4)]
    assert [tuple(p) for p in pairs] == expected


def test_all_pairs_when_unlimited() -> None:
    assert sample_pairs(30, 40, max_pairs=None).shape == (1200, 2)


def test_subset_is_distinct_in_range_and_seeded() -> None:
    a = sample_pairs(20, 30, max_pairs=50, rng=np.random.default_rng(7))
    b = sample_pairs(20, 30, max_pairs=50, rng=np.random.default_rng(7))
    c = sample_pairs(20, 30, max_pairs=50, rng=np.random.default_rng(8))
    assert a.shape == (50, 2)
    assert len({tuple(p) for p in a}) == 50
    assert a[:, 0].max() < 20 and a[:, 1].max() < 30 and a.min() >= 0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_default_rng_is_fixed() -> None:
    np.testing.assert_array_equal(sample_pairs(20, 30, max_pairs=10), sample_pairs(20, 30, max_pairs=10))
    np.testing.assert_array_equal(
        sample_pairs(20, 30, max_pairs=10),
        sample_pairs(20, 30, max_pairs=10, rng=np.random.default_rng(0)),
    )


@pytest.mark.parametrize(("n_i", "n_j", "max_pairs"), [(0, 3, 10), (3, 0, 10), (2, 2, 0)])
def test_invalid(n_i: int, n_j: int, max_pairs: int) -> None:
    with pytest.raises(ValueError):
        sample_pairs(n_i, n_j, max_pairs)
