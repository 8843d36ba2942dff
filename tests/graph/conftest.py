"""Tasks of two small datasets for the graph tests: a two-site tumour dataset with two channels
and two labels, and a one-site lesion dataset."""

import pytest

from seqtransfer.data.dataset import parse_dataset
from seqtransfer.data.tasks import split_tasks

SHAPE = (16, 16, 16)


@pytest.fixture
def tasks(dataset_factory):
    sites = {f"case_{i:03d}": ("A" if i < 6 else "B") for i in range(12)}
    tum = dataset_factory(
        "Dataset001_Tum",
        n_cases=12,
        channels=("T1", "T2"),
        labels=("tumour", "edema"),
        shape=SHAPE,
        sites=sites,
        seed=1,
    )
    les = dataset_factory("Dataset002_Les", n_cases=20, channels=("FLAIR",), labels=("lesion",), shape=SHAPE, seed=2)
    return split_tasks([parse_dataset(tum)[0], parse_dataset(les)[0]], {"tumour": "lesions", "lesion": "lesions"})
