"""``verified_tasks``: verify datasets and split them into tasks, with the maps found beside them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqtransfer.core.errors import DatasetError
from seqtransfer.data.verify import verified_tasks


def test_the_maps_beside_the_datasets_are_used_unless_others_are_given(dataset_factory, tmp_path: Path) -> None:
    tum = dataset_factory("Dataset001_Tum", n_cases=4, channels=("T2w",), labels=("tumour",), shape=(8, 8, 8), seed=1)
    les = dataset_factory("Dataset002_Les", n_cases=4, channels=("T2",), labels=("lesion",), shape=(8, 8, 8), seed=2)
    found = verified_tasks([tum, les])
    assert found.groups_file is None and found.aliases_file is None
    assert {t.group for t in found.tasks} == {"tumour", "lesion"} and {t.modality for t in found.tasks} == {"T2w", "T2"}
    (tmp_path / "objective_groups.json").write_text(json.dumps({"tumour": "lesions", "lesion": "lesions"}))
    (tmp_path / "modality_aliases.json").write_text(json.dumps({"T2w": "T2"}))
    found = verified_tasks([tum, les])
    assert (
        found.groups_file == tmp_path / "objective_groups.json"
        and found.aliases_file == tmp_path / "modality_aliases.json"
    )
    assert {t.group for t in found.tasks} == {"lesions"} and len({t.modality_key for t in found.tasks}) == 1
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"tumour": "a", "lesion": "b"}))
    assert {t.group for t in verified_tasks([tum, les], groups=other).tasks} == {"a", "b"}


def test_a_broken_map_or_dataset_is_refused(dataset_factory, tmp_path: Path) -> None:
    tum = dataset_factory("Dataset001_Tum", n_cases=4, shape=(8, 8, 8), seed=1)
    (tmp_path / "bad.json").write_text("[")
    with pytest.raises(DatasetError, match="invalid JSON"):
        verified_tasks([tum], groups=tmp_path / "bad.json")
    with pytest.raises(DatasetError):
        verified_tasks([tmp_path / "missing"])
