"""The method registry: the configuration's lists derive from it, and each method asks its
target and draw for what the protocol says (without training anything: a recording unit)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from seqtransfer.core.errors import ConfigError
from seqtransfer.experiment.config import METHODS, SAMPLE_SIZE_METHODS, ExperimentConfig, config_from_dict
from seqtransfer.experiment.methods import LANDMARK_METHODS, METHOD_REGISTRY, methods_in
from seqtransfer.experiment.records import PathResult, StoredStep, TransferRecord
from seqtransfer.pipeline.transfer import StepRecord, TransferResult
from seqtransfer.selection.run import Selection

#: the lists as they were written out before the registry
OLD_METHODS = (
    *("ours", "logme", "leep", "mst", "mtl", "scratch", "landmark_direct", "random_landmark", "lambda", "calibrated"),
    *("logme_stps", "leep_stps", "unfrozen", "ours_leep"),
)
OLD_SAMPLE_SIZE = {"ours", "ours_leep", "landmark_direct", "logme", "leep", "logme_stps", "leep_stps", "mst", "scratch"}


def test_the_configuration_lists_derive_from_the_registry() -> None:
    assert METHODS == OLD_METHODS == tuple(METHOD_REGISTRY)
    assert set(SAMPLE_SIZE_METHODS) == OLD_SAMPLE_SIZE
    assert LANDMARK_METHODS == {"ours", "landmark_direct", "lambda", "unfrozen"}
    assert {n for n, m in METHOD_REGISTRY.items() if m.needs_scores} == {
        "logme",
        "leep",
        "logme_stps",
        "leep_stps",
        "mst",
        "mtl",
        "ours_leep",
    }
    assert [n for n, m in METHOD_REGISTRY.items() if m.own_stage] == ["calibrated"]


def test_an_unknown_method_is_the_one_line_config_error_it_always_was() -> None:
    expected = f"protocol.methods: unknown method(s) magic; known: {', '.join(OLD_METHODS)}"
    with pytest.raises(ConfigError) as info:
        config_from_dict({"data": {"benchmark": True}, "protocol": {"methods": ["ours", "magic"]}})
    assert str(info.value) == f"configuration: {expected}"
    with pytest.raises(ConfigError) as direct:
        methods_in(["ours", "magic"])
    assert str(direct.value) == expected
    assert [m.name for m in methods_in(["scratch", "ours", "logme"])] == [
        "ours",
        "logme",
        "scratch",
    ]  # the registry's order


def _selection(path: list[str]) -> Selection:
    return Selection(
        target=path[-1],
        landmark=path[0],
        path=path,
        objective=1.0,
        step_weights=[],
        direct_weight=1.0,
        lam=0.4,
        c_search=0.1,
        max_length=5,
        w_c=None,
        performance_source="x",
    )


@dataclass
class RecordingUnit:
    """A :class:`~seqtransfer.experiment.methods.MethodUnit` that records what a method asks for."""

    config: ExperimentConfig
    target: str = "t"
    draw: int = 1
    n_train: int = 3
    selection: Selection | None = None
    connected: list[str] = field(default_factory=lambda: ["a", "b", "c"])
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: list[tuple[str, list[str], str, bool]] = field(default_factory=list)
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    selected: list[tuple[float | None, dict[str, float] | None]] = field(default_factory=list)

    @property
    def workspace(self) -> Any:
        return None

    @property
    def split(self) -> None:
        return None

    def predictions(self, method: str) -> Path | None:
        return Path("predictions") / method

    def zoo_models(self, sources: list[str]) -> list[Any]:
        return []

    def zoo_record(self) -> dict[str, Any]:
        return {"zoo": 1}

    def finetune_record(self) -> dict[str, Any]:
        return {"finetune": self.draw}

    def select(self, lam: float | None = None, transferability: dict[str, float] | None = None) -> Selection:
        self.selected.append((lam, transferability))
        return _selection([f"lam{lam}" if transferability is None else "by_leep", self.target])

    def path_from(self, landmark: str) -> list[str]:
        return [landmark, "via", self.target]

    def ranked_by(self, score: str) -> list[str]:
        return sorted(self.connected, key=lambda s: self.scores[s][score], reverse=True)

    def transfer(self, method: str, path: list[str], variant: str = "", frozen: bool = True) -> None:
        self.transfers.append((method, path, variant, frozen))

    def record(self, method: str, spec: dict[str, Any], work: Callable[[], dict[str, Any]]) -> None:
        self.records.append((method, spec))


@pytest.fixture
def unit() -> RecordingUnit:
    config = config_from_dict(
        {"data": {"benchmark": True}, "protocol": {"lambdas": [0.0, 0.5], "random_landmarks": 3, "top_k": 2}}
    )
    scores = {"a": {"logme": 1.0, "leep": -3.0}, "b": {"logme": 3.0, "leep": -1.0}, "c": {"logme": 2.0, "leep": -2.0}}
    return RecordingUnit(config=config, selection=_selection(["b", "a", "t"]), scores=scores)


def _run(name: str, unit: RecordingUnit) -> RecordingUnit:
    METHOD_REGISTRY[name]().run(unit)
    return unit


def test_ours_and_its_ablations_follow_the_selection(unit: RecordingUnit) -> None:
    assert _run("ours", unit).transfers == [("ours", ["b", "a", "t"], "", True)]
    unit.transfers.clear()
    assert _run("landmark_direct", unit).transfers == [("landmark_direct", ["b", "t"], "", True)]
    unit.transfers.clear()
    assert _run("unfrozen", unit).transfers == [("unfrozen", ["b", "a", "t"], "", False)]
    unit.transfers.clear()
    assert _run("lambda", unit).transfers == [
        ("lambda", ["lam0.0", "t"], "0", True),
        ("lambda", ["lam0.5", "t"], "0.5", True),
    ]
    unit.selection = None
    with pytest.raises(RuntimeError, match="without one"):
        _run("ours", unit)


def test_the_score_baselines_take_the_best_source_by_their_own_score(unit: RecordingUnit) -> None:
    for name in ("logme", "leep", "logme_stps", "leep_stps"):
        _run(name, unit)
    assert unit.transfers == [
        ("logme", ["b", "t"], "", True),
        ("leep", ["b", "t"], "", True),
        ("logme_stps", ["b", "via", "t"], "", True),
        ("leep_stps", ["b", "via", "t"], "", True),
    ]
    _run("ours_leep", unit)
    lam, transferability = unit.selected[-1]
    assert lam is None and transferability == pytest.approx(
        {"a": 0.049787, "b": 0.367879, "c": 0.135335}, rel=1e-5
    )  # exp(LEEP)
    assert unit.transfers[-1] == ("ours_leep", ["by_leep", "t"], "", True)


def test_random_landmarks_are_seeded_by_seed_and_draw(unit: RecordingUnit) -> None:
    first = [t[1][0] for t in _run("random_landmark", unit).transfers]
    again = RecordingUnit(config=unit.config, selection=unit.selection)
    assert [t[1][0] for t in _run("random_landmark", again).transfers] == first
    assert [t[2] for t in unit.transfers] == ["0", "1", "2"] and set(first) <= {"a", "b", "c"}


def test_the_trained_baselines_store_the_specifications_they_always_had(unit: RecordingUnit) -> None:
    for name in ("scratch", "mst", "mtl", "calibrated"):  # calibrated runs in its own stage: nothing here
        _run(name, unit)
    config = unit.config
    network, aug = config.network.to_dict(), config.finetune.augment
    assert unit.records == [
        ("scratch", {"network": network, "steps": config.protocol.scratch_steps, "seed": config.seed, "augment": aug}),
        ("mst", {"sources": ["b", "c"], "zoo": {"zoo": 1}, "finetune": {"finetune": 1}}),
        (
            "mtl",
            {
                "sources": ["b", "c"],
                "zoo": {"zoo": 1},
                "steps": config.protocol.scratch_steps,
                "network": network,
                "augment": aug,
            },
        ),
    ]
    assert unit.transfers == []


def _transfer_result(tmp: str) -> TransferResult:
    step = StepRecord(
        node="t",
        train_cases=["x"],
        dice_before=0.1,
        dice_after=0.5,
        test_set_dice_after=[0.4, 0.6],
        encoder_unchanged=True,
        seconds=2.0,
        cached=False,
        folder=f"{tmp}/ft/k",
    )
    return TransferResult(
        *(
            "t",
            ["a", "t"],
            0,
            f"{tmp}/zoo/a",
            0.7,
            0.1,
            [0.1, 0.1],
            0.5,
            [0.4, 0.6],
            f"{tmp}/ft/k",
            ["x"],
            "protocol",
            [["y"], ["z"]],
            {"y": 0.4, "z": 0.6},
        ),
        *([step], {"steps": 2}, {"max_train": 60}, "cpu", f"{tmp}/run"),
    )


def test_a_stored_transfer_keeps_the_layout_it_always_had(tmp_path: Path) -> None:
    result = _transfer_result(str(tmp_path))
    m = result.to_dict()
    # what the runner stored before the typed records, written out by hand
    keep = (
        "target",
        "path",
        "draw",
        "zero_shot_dice",
        "final_dice",
        "final_test_set_dice",
        "target_train_cases",
        "test_sets",
        "run_dir",
        "final_model",
    )
    old = {
        **{k: m[k] for k in keep},
        "steps": [{k: s[k] for k in ("node", "dice_before", "dice_after", "seconds", "cached")} for s in m["steps"]],
    }
    record = TransferRecord.from_result(result)
    assert record.to_dict() == old and TransferRecord.from_dict(old) == record
    method = PathResult.from_transfer(record, Path(result.run_dir) / "predictions")
    old_method = {
        "dice": 0.5,
        "test_set_dice": [0.4, 0.6],
        "path": ["a", "t"],
        "zero_shot_dice": 0.1,
        "steps": old["steps"],
        "predictions": f"{tmp_path}/run/predictions",
    }
    assert method.to_dict() == old_method and PathResult.from_dict(old_method) == method
    assert record.steps == [StoredStep(node="t", dice_before=0.1, dice_after=0.5, seconds=2.0, cached=False)]
    assert TransferResult.from_dict(m) == result and "run_dir" not in result.metrics()
