"""The experiment tests' datasets: a 4-site tumour collection and a lesion collection."""

import pytest


@pytest.fixture
def datasets(dataset_factory):
    """``(tumour, lesion)`` dataset folders: 76 tumour cases over sites A-D (19 each: 3 draws of 3
    training cases and 10 test cases per target), 19 single-site lesion cases, 16^3 voxels."""
    sites = {f"case_{i:03d}": "ABCD"[i % 4] for i in range(76)}
    tum = dataset_factory(
        "Dataset001_Tum", n_cases=76, channels=("T1",), labels=("tumour",), shape=(16, 16, 16), sites=sites, seed=1
    )
    les = dataset_factory(
        "Dataset002_Les", n_cases=19, channels=("T1",), labels=("lesion",), shape=(16, 16, 16), seed=2
    )
    return tum, les
