import pytest

from seqtransfer.core.errors import ConfigError
from seqtransfer.data.splits import sample_cases, sample_size_split, source_split, target_split

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
    train, held = source_split("s", IDS, max_train=20)  # 5 must stay out for O: 19 train
    assert len(train) == 19 and len(held) == 5 and not set(train) & set(held)
    train, held = source_split("s", IDS, max_train=12)
    assert len(train) == 12 and len(held) == 12
    train, held = source_split("s", IDS[:5], max_train=60)  # under 10 cases: half held out
    assert len(train) == 3 and len(held) == 2
    train, held = source_split("s", IDS, max_train=20, min_test=1)  # an explicit minimum still works
    assert len(train) == 20 and len(held) == 4
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
        task = split_tasks(
            [parse_dataset(dataset_factory(f"Dataset0{n:02d}_T{n}", n_cases=n, channels=("T1",), labels=("x",)))[0]]
        )[0]
        cases = affinity_cases(task, config, is_target=True)
        assert len(cases) == expected and len({c.case_id for c in cases}) == expected
        assert cases == affinity_cases(task, config, is_target=True)  # seeded
    with pytest.raises(ConfigError, match="target_draw must be 0"):
        affinity_cases(task, GraphConfig(target_draw=1), is_target=True)
    big = split_tasks(
        [parse_dataset(dataset_factory("Dataset099_Big", n_cases=20, channels=("T1",), labels=("x",)))[0]]
    )[0]
    from seqtransfer.data.splits import target_split

    assert [c.case_id for c in affinity_cases(big, config, is_target=True)] == list(
        target_split(big.split_key, [c.case_id for c in big.cases]).draws[0]
    )


def test_o_rests_on_at_least_five_held_out_cases_or_a_fifth() -> None:
    from seqtransfer.data.splits import held_out_count

    ids = [f"c{i:02d}" for i in range(24)]
    train, test = source_split("s", ids)  # max_train 60: before, 23 trained and O was one case's Dice
    assert len(test) == 5 and len(train) == 19 and not set(train) & set(test)
    assert [held_out_count(n) for n in (2, 3, 4, 6, 10, 24, 60, 100)] == [1, 1, 2, 3, 5, 5, 12, 20]
    train, test = source_split("s", ids, max_train=12)  # the demo's zoo: 12 train, the other 12 held out
    assert len(train) == 12 and len(test) == 12
    with pytest.raises(ConfigError, match="at least 2"):
        source_split("s", ids[:1])


def test_the_protocol_refuses_two_splits_of_one_target() -> None:
    from seqtransfer.experiment.config import config_from_dict

    with pytest.raises(ConfigError, match="graph.seed"):
        config_from_dict({"seed": 1, "graph": {"seed": 0}})
    with pytest.raises(ConfigError, match="target_cases"):
        config_from_dict({"graph": {"target_cases": 5}})
    assert config_from_dict({"seed": 3}).graph.seed == 3


def test_affinity_cases_never_meet_the_test_sets(dataset_factory) -> None:
    from types import SimpleNamespace

    import networkx as nx

    from seqtransfer.data.dataset import parse_dataset
    from seqtransfer.data.tasks import split_tasks
    from seqtransfer.experiment.config import ExperimentConfig
    from seqtransfer.experiment.runner import check_target_splits

    task = split_tasks(
        [parse_dataset(dataset_factory("Dataset001_T", n_cases=20, channels=("T1",), labels=("x",)))[0]]
    )[0]
    split = target_split(task.split_key, [c.case_id for c in task.cases], seed=0)
    graph = nx.Graph()
    graph.add_node(task.name, affinity_cases=list(split.draws[1]))
    ctx = SimpleNamespace(
        targets=[task.name],
        tasks={task.name: task},
        config=ExperimentConfig(),
        workspaces={1: SimpleNamespace(graph=graph)},
        sample_workspaces={},
    )
    check_target_splits(ctx)  # the draw's own training cases: fine
    graph.nodes[task.name]["affinity_cases"] = [*split.draws[1][:2], split.test_sets[0][0]]
    with pytest.raises(RuntimeError, match="test cases"):
        check_target_splits(ctx)
    # the sample-size study's graphs: draw 2 of 5 cases, and nothing else
    graph.nodes[task.name]["affinity_cases"] = list(split.draws[1])
    sample = sample_size_split(task.split_key, [c.case_id for c in task.cases], 5, seed=0)
    other = nx.Graph()
    other.add_node(task.name, affinity_cases=list(sample.draws[2]))
    ctx.sample_workspaces[(5, 2)] = SimpleNamespace(graph=other)
    check_target_splits(ctx)
    other.nodes[task.name]["affinity_cases"] = [*sample.draws[2][:4], sample.test_sets[0][0]]
    with pytest.raises(RuntimeError, match="n=5 draw 2"):
        check_target_splits(ctx)


def test_sample_size_draws_are_nested_outside_the_first_test_set_and_three_is_the_protocol() -> None:
    ids = [f"c{i:02d}" for i in range(24)]
    protocol = target_split("site", ids, seed=4)
    splits = {n: sample_size_split("site", ids, n, seed=4) for n in (1, 2, 3, 5, 10, 14)}
    for n, split in splits.items():
        assert split.test_sets == (protocol.test_sets[0],)
        for d, cases in enumerate(split.draws):
            assert len(cases) == n == len(set(cases))
            assert not set(cases) & set(protocol.test_sets[0])
            if n <= 3:
                assert set(cases) <= set(protocol.draws[d])
    assert splits[3].draws == protocol.draws
    for d in range(3):  # nested: a draw's n cases are among its m > n cases
        for small, large in ((1, 2), (2, 3), (3, 5), (5, 10), (10, 14)):
            assert set(splits[small].draws[d]) <= set(splits[large].draws[d])
    assert splits[14].draws[0] == splits[14].draws[1]  # all 14 cases outside the test set
    assert sample_size_split("site", ids, 5, seed=4) == splits[5]  # seeded
    assert sample_size_split("site", ids, 5, seed=5) != splits[5]
    with pytest.raises(ConfigError, match="15 training case"):
        sample_size_split("site", ids, 15, seed=4)
