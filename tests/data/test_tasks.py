import json
from pathlib import Path

import numpy as np
import pytest

from seqtransfer.core.errors import DatasetError
from seqtransfer.data.dataset import parse_dataset
from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig
from seqtransfer.data.tasks import find_objective_groups, load_objective_groups, split_tasks, task_name


def test_split_into_site_modality_objective_tasks(dataset_factory) -> None:
    sites = {f"case_{i:03d}": ("16" if i < 3 else "20") for i in range(5)}
    root = dataset_factory(n_cases=5, channels=("T1", "FLAIR"), labels=("NCR", "ED", "ET"), sites=sites)
    dataset, _ = parse_dataset(root)
    tasks = split_tasks([dataset], {"NCR": "lesion", "ED": "lesion"})
    assert len(tasks) == 2 * 2 * 3
    by_name = {t.name: t for t in tasks}
    t = by_name["16-FLAIR-NCR"]
    assert (t.site, t.modality, t.objective, t.group, t.channel, t.label_values) == (
        "16",
        "FLAIR",
        "NCR",
        "lesion",
        1,
        (1,),
    )
    assert [c.case_id for c in t.cases] == ["case_000", "case_001", "case_002"]
    assert by_name["20-T1-ET"].n_cases == 2 and by_name["20-T1-ET"].group == "ET"


def test_names_are_sanitised() -> None:
    assert task_name("site A", "T1-ce", "white/matter") == "site_A-T1_ce-white_matter"


def test_colliding_task_names_across_datasets_are_refused(dataset_factory) -> None:
    a, _ = parse_dataset(dataset_factory("Dataset001_A", sites={f"case_{i:03d}": "X" for i in range(4)}))
    b, _ = parse_dataset(dataset_factory("Dataset002_B", sites={f"case_{i:03d}": "X" for i in range(4)}))
    with pytest.raises(DatasetError, match="distinct names"):
        split_tasks([a, b])


def test_objective_group_file(tmp_path: Path, dataset_factory) -> None:
    root = dataset_factory()
    (tmp_path / "objective_groups.json").write_text(json.dumps({"tumour": "lesion"}))
    assert find_objective_groups([root]) == (tmp_path / "objective_groups.json").resolve()
    assert load_objective_groups(tmp_path / "objective_groups.json") == {"tumour": "lesion"}
    (tmp_path / "bad.json").write_text(json.dumps(["tumour"]))
    with pytest.raises(DatasetError, match="bad.json"):
        load_objective_groups(tmp_path / "bad.json")


def test_tasks_sharing_images_or_labels_share_cached_arrays(dataset_factory, tmp_path: Path) -> None:
    root = dataset_factory(n_cases=3, channels=("T1", "T2"), labels=("a", "b"))
    dataset, _ = parse_dataset(root)
    tasks = split_tasks([dataset])
    assert len(tasks) == 4
    cache = PreprocessCache(tmp_path / "cache", PreprocessConfig(size=8))
    for task in tasks:
        for case in task.cases:
            image, label = cache.task_volume(case, task.channel, task.label_values)
            assert image.shape == (8, 8, 8) and label.shape == (8, 8, 8)
    # 4 tasks x 3 cases read, but each case was preprocessed exactly once
    assert cache.computed == 3
    entries = list((tmp_path / "cache" / "preprocessed").glob("*/*"))
    assert len(entries) == 3
    # tasks of one modality see the same image array; of one objective the same labels
    t1a, t1b = (t for t in tasks if t.modality == "T1")
    case = t1a.cases[0]
    img_a, lab_a = cache.task_volume(case, t1a.channel, t1a.label_values)
    img_b, lab_b = cache.task_volume(case, t1b.channel, t1b.label_values)
    assert np.shares_memory(img_a, img_b)
    assert not np.array_equal(lab_a, lab_b)
    # a fresh cache object on the same folder recomputes nothing
    again = PreprocessCache(tmp_path / "cache", PreprocessConfig(size=8))
    again.ensure(c for t in tasks for c in t.cases)
    assert again.computed == 0


def test_modality_names_match_case_insensitively_and_through_aliases(dataset_factory, tmp_path) -> None:
    import json

    from seqtransfer.core.errors import DatasetError
    from seqtransfer.data.dataset import parse_dataset
    from seqtransfer.data.tasks import find_modality_aliases, load_modality_aliases, modality_key, split_tasks
    from seqtransfer.graph.build import edge_allowed

    a = parse_dataset(dataset_factory("Dataset001_A", n_cases=2, channels=("T2", "FLAIR"), labels=("x",)))[0]
    b = parse_dataset(dataset_factory("Dataset002_B", n_cases=2, channels=("t2w", "flair"), labels=("y",)))[0]
    plain = {t.name: t for t in split_tasks([a, b])}
    assert plain["B-flair-y"].modality_key == plain["A-FLAIR-x"].modality_key == "flair"
    assert edge_allowed(plain["B-flair-y"], plain["A-FLAIR-x"])
    assert not edge_allowed(plain["B-t2w-y"], plain["A-T2-x"])  # other names, other groups: no edge
    (tmp_path / "modality_aliases.json").write_text(json.dumps({"T2W": "t2"}))
    found = find_modality_aliases([a.root, b.root])
    assert found == tmp_path / "modality_aliases.json"
    aliased = {t.name: t for t in split_tasks([a, b], None, load_modality_aliases(found))}
    assert edge_allowed(aliased["B-t2w-y"], aliased["A-T2-x"]) and aliased["B-t2w-y"].name == "B-t2w-y"
    assert modality_key(" T2-weighted ", {"t2-WEIGHTED": "T2"}) == "t2"
    (tmp_path / "bad.json").write_text(json.dumps({"T2w": 3}))
    with pytest.raises(DatasetError, match="bad.json"):
        load_modality_aliases(tmp_path / "bad.json")
