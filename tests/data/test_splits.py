import pytest

from seqtransfer.data.splits import sample_cases, source_split, target_split
from seqtransfer.errors import ConfigError

IDS = [f"c{i:02d}" for i in range(24)]


def test_target_split_draws_and_test_sets_are_disjoint_and_seeded() -> None:
    split = target_split("D/site", IDS, seed=3)
    train = [c for d in split.draws for c in d]
    assert len(split.draws) == 3 and all(len(d) == 3 for d in split.draws)
    assert len(set(train)) == 9
    assert len(split.test_sets) == 3 and all(len(t) == 10 for t in split.test_sets)
    for test in split.test_sets:
        assert not set(test) & set(train)
    assert split == target_split("D/site", list(reversed(IDS)), seed=3)  # order of input irrelevant
    assert split != target_split("D/site", IDS, seed=4)
    assert split != target_split("D/other", IDS, seed=3)


def test_target_split_needs_enough_cases() -> None:
    with pytest.raises(ConfigError, match="at least 19"):
        target_split("x", IDS[:18])


def test_source_split_caps_training_and_keeps_held_out() -> None:
    train, held = source_split("s", IDS, max_train=20)
    assert len(train) == 20 and len(held) == 4 and not set(train) & set(held)
    train, held = source_split("s", IDS[:5], max_train=60)
    assert len(train) == 4 and len(held) == 1
    with pytest.raises(ConfigError):
        source_split("s", IDS[:1])


def test_sample_cases() -> None:
    assert sample_cases("k", IDS[:3], 5) == tuple(IDS[:3])
    picked = sample_cases("k", IDS, 5, seed=1)
    assert len(picked) == 5 and picked == sample_cases("k", IDS, 5, seed=1)


def test_few_label_targets_use_up_to_target_cases_of_their_labelled_cases(dataset_factory) -> None:
    from seqtransfer.data.dataset import parse_dataset
    from seqtransfer.data.splits import protocol_cases_needed, protocol_split_possible
    from seqtransfer.data.tasks import split_tasks
    from seqtransfer.graph.build import affinity_cases
    from seqtransfer.graph.config import GraphConfig

    assert protocol_cases_needed() == 19 and protocol_split_possible(19) and not protocol_split_possible(18)
    config = GraphConfig(target_cases=3)
    for n, expected in ((1, 1), (2, 2), (3, 3), (12, 3)):
        task = split_tasks([parse_dataset(dataset_factory(f"Dataset0{n:02d}_T{n}", n_cases=n, channels=("T1",), labels=("x",)))[0]])[0]
        cases = affinity_cases(task, config, is_target=True)
        assert len(cases) == expected and len({c.case_id for c in cases}) == expected
        assert cases == affinity_cases(task, config, is_target=True)  # seeded
    with pytest.raises(ConfigError, match="target_draw must be 0"):
        affinity_cases(task, GraphConfig(target_draw=1), is_target=True)
    big = split_tasks([parse_dataset(dataset_factory("Dataset099_Big", n_cases=20, channels=("T1",), labels=("x",)))[0]])[0]
    from seqtransfer.data.splits import target_split

    assert [c.case_id for c in affinity_cases(big, config, is_target=True)] == list(target_split(big.split_key, [c.case_id for c in big.cases]).draws[0])
