"""The methods of the protocol (METHOD section 7): a registry of small classes.

Each method says what it needs (a landmark, the transferability scores of every connected
source) and how it runs for one target and draw: :meth:`Method.run` gets a
:class:`MethodUnit`, the runner's view of that target and draw (its selection, its pool, its
stored transfers), and stores one record of kind ``method`` per variant (``sample_size`` in
the sample-size study). :data:`METHOD_REGISTRY` maps each name of ``protocol.methods`` to its
class, in the order of the configuration's default list; the configuration's method lists and
:data:`LANDMARK_METHODS` derive from it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from seqtransfer.baselines.measure import transferability_from_leep
from seqtransfer.baselines.train import run_mst, run_mtl, run_scratch
from seqtransfer.core.errors import ConfigError
from seqtransfer.data.splits import TargetSplit
from seqtransfer.pipeline.workspace import Workspace
from seqtransfer.pipeline.zoo import ZooModel
from seqtransfer.selection.run import Selection

if TYPE_CHECKING:  # the configuration derives its method lists from this module
    from seqtransfer.experiment.config import ExperimentConfig


class MethodUnit(Protocol):
    """One target and draw as a method sees it (the runner's :class:`~seqtransfer.experiment.runner.TargetDraw`).

    ``n_train`` is the protocol's 3 labelled target cases, or the sample-size study's number.
    """

    target: str
    draw: int
    n_train: int
    #: landmark and optimal path of the target (``[selection]``), None when none can be chosen
    selection: Selection | None
    #: the target's sources (its ``max_sources`` pool)
    connected: list[str]
    #: LogME, LEEP and NCE of each connected source (empty unless some method needs them)
    scores: dict[str, dict[str, Any]]

    @property
    def config(self) -> ExperimentConfig: ...

    @property
    def workspace(self) -> Workspace: ...

    @property
    def split(self) -> TargetSplit | None:
        """The target's split for ``n_train`` cases; None: the protocol's own."""
        ...

    def predictions(self, method: str) -> Path | None:
        """Where a run saves its predictions (None: nowhere)."""
        ...

    def zoo_models(self, sources: list[str]) -> list[ZooModel]: ...

    def zoo_record(self) -> dict[str, Any]:
        """The zoo configuration as the store's specifications hold it."""
        ...

    def finetune_record(self) -> dict[str, Any]:
        """The draw's fine-tuning recipe as the store's specifications hold it."""
        ...

    def select(self, lam: float | None = None, transferability: dict[str, float] | None = None) -> Selection:
        """Landmark and optimal path with another lambda or the ``leep`` landmark score.

        Raises:
            SelectionError: no landmark can be chosen.
        """
        ...

    def path_from(self, landmark: str) -> list[str]:
        """The optimal path (``[selection]``) from a given landmark."""
        ...

    def ranked_by(self, score: str) -> list[str]:
        """The connected sources, best first by a transferability score of :attr:`scores`."""
        ...

    def transfer(self, method: str, path: list[str], variant: str = "", frozen: bool = True) -> None:
        """Store a method run that is one transfer along ``path`` (``frozen=False``: the whole
        network fine-tuned)."""
        ...

    def record(self, method: str, spec: dict[str, Any], work: Callable[[], dict[str, Any]]) -> None:
        """Store a method run: ``spec`` decides its result, ``work`` computes it."""
        ...


class Method:
    """A method of the protocol: what it needs, and how it runs for one target and draw.

    Attributes:
        name: its name in ``protocol.methods`` and in the stored records.
        needs_landmark: skipped for a target whose landmark cannot be chosen (ours and its ablations).
        needs_scores: needs LogME / LEEP / NCE of every connected source.
        sample_size: the sample-size study can run it at another number of labelled cases.
        own_stage: runs in a stage of its own after every target and draw (nothing per target and draw).
    """

    name: ClassVar[str]
    needs_landmark: ClassVar[bool] = False
    needs_scores: ClassVar[bool] = False
    sample_size: ClassVar[bool] = False
    own_stage: ClassVar[bool] = False

    def run(self, unit: MethodUnit) -> None:
        """Run (or find stored) every variant of the method for one target and draw.

        Raises:
            SelectionError: the method cannot choose its landmark for this target.
        """
        raise NotImplementedError


def _chosen(unit: MethodUnit) -> Selection:
    """The target's selection; a method that needs a landmark only runs with one."""
    if unit.selection is None:
        raise RuntimeError(f"{unit.target} draw {unit.draw}: a method that needs a landmark ran without one")
    return unit.selection


def _top_k(unit: MethodUnit) -> list[str]:
    """MST's and MTL's sources: the top-k by their own criterion (LogME), not by the method under test."""
    return unit.ranked_by("logme")[: unit.config.protocol.top_k]


def transferability_of(all_scores: dict[str, dict[str, Any]]) -> dict[str, float]:
    """T = exp(LEEP) of each source on the target's labelled cases (an undefined LEEP: 0)."""
    return {s: transferability_from_leep(r.get("leep")) for s, r in all_scores.items()}


class Ours(Method):
    """The landmark and the optimal path (eq. 6-9)."""

    name = "ours"
    needs_landmark = True
    sample_size = True

    def run(self, unit: MethodUnit) -> None:
        unit.transfer(self.name, _chosen(unit).path)


class LandmarkDirect(Method):
    """w/o STPS: the landmark, transferred directly."""

    name = "landmark_direct"
    needs_landmark = True
    sample_size = True

    def run(self, unit: MethodUnit) -> None:
        unit.transfer(self.name, [_chosen(unit).landmark, unit.target])


class Lambda(Method):
    """The optimal path for each lambda of ``protocol.lambdas`` (variant: the lambda)."""

    name = "lambda"
    needs_landmark = True

    def run(self, unit: MethodUnit) -> None:
        for lam in unit.config.protocol.lambdas:
            unit.transfer(self.name, unit.select(lam=lam).path, f"{lam:g}")


class RandomLandmark(Method):
    """w/o LSI: random landmarks of the pool, each with its optimal path (variant: the draw's index)."""

    name = "random_landmark"

    def run(self, unit: MethodUnit) -> None:
        rng = np.random.default_rng([unit.config.seed, unit.draw, 17])
        for i in range(unit.config.protocol.random_landmarks):
            landmark = unit.connected[int(rng.integers(len(unit.connected)))]
            unit.transfer(self.name, unit.path_from(landmark), str(i))


class ScoreBaseline(Method):
    """The best source by a transferability score, transferred directly."""

    score: ClassVar[str]
    needs_scores = True
    sample_size = True

    def run(self, unit: MethodUnit) -> None:
        unit.transfer(self.name, [unit.ranked_by(self.score)[0], unit.target])


class ScoreLandmark(Method):
    """STPS from a baseline's landmark: the best source by its score, then the optimal path (Table II)."""

    score: ClassVar[str]
    needs_scores = True
    sample_size = True

    def run(self, unit: MethodUnit) -> None:
        unit.transfer(self.name, unit.path_from(unit.ranked_by(self.score)[0]))


class LogME(ScoreBaseline):
    """The best source by LogME, transferred directly."""

    name = score = "logme"


class LEEP(ScoreBaseline):
    """The best source by LEEP, transferred directly."""

    name = score = "leep"


class LogMEPath(ScoreLandmark):
    """LogME's landmark, then the optimal path."""

    name, score = "logme_stps", "logme"


class LEEPPath(ScoreLandmark):
    """LEEP's landmark, then the optimal path."""

    name, score = "leep_stps", "leep"


class OursLEEP(Method):
    """The landmark score with O replaced by exp(LEEP) (eq. 7), then the optimal path."""

    name = "ours_leep"
    needs_scores = True
    sample_size = True

    def run(self, unit: MethodUnit) -> None:
        unit.transfer(self.name, unit.select(transferability=transferability_of(unit.scores)).path)


class Unfrozen(Method):
    """w/o frozen encoder: ours' path, the whole network fine-tuned (EWC on every parameter)."""

    name = "unfrozen"
    needs_landmark = True

    def run(self, unit: MethodUnit) -> None:
        unit.transfer(self.name, _chosen(unit).path, frozen=False)


class Scratch(Method):
    """A network trained from a random initialisation on the target's cases only."""

    name = "scratch"
    sample_size = True

    def run(self, unit: MethodUnit) -> None:
        config, split = unit.config, unit.split
        steps, aug = config.protocol.scratch_steps, config.finetune.augment
        save = unit.predictions("scratch")
        spec: dict[str, Any] = {
            "network": config.network.to_dict(),
            "steps": steps,
            "seed": config.seed,
            "augment": aug,
        }
        unit.record(
            self.name,
            spec,
            lambda: run_scratch(
                unit.workspace,
                unit.target,
                unit.draw,
                config.network,
                steps,
                config.seed,
                save_dir=save,
                augment=aug,
                split=split,
            ),
        )


class MST(Method):
    """The frozen encoders of the top-k sources by LogME fused, the decoder trained on the target."""

    name = "mst"
    needs_scores = True
    sample_size = True

    def run(self, unit: MethodUnit) -> None:
        top, f, split = _top_k(unit), unit.config.finetune, unit.split
        save = unit.predictions("mst")
        spec: dict[str, Any] = {"sources": top, "zoo": unit.zoo_record(), "finetune": unit.finetune_record()}
        unit.record(
            self.name,
            spec,
            lambda: run_mst(
                unit.workspace,
                unit.target,
                unit.draw,
                unit.zoo_models(top),
                f.steps,
                f.lr,
                unit.config.seed,
                f.augment,
                save_dir=save,
                split=split,
            ),
        )


class MTL(Method):
    """Multi-task learning of the target with the top-k sources by LogME."""

    name = "mtl"
    needs_scores = True

    def run(self, unit: MethodUnit) -> None:
        top, config = _top_k(unit), unit.config
        steps, aug = config.protocol.scratch_steps, config.finetune.augment
        save = unit.predictions("mtl")
        spec = {
            "sources": top,
            "zoo": unit.zoo_record(),
            "steps": steps,
            "network": config.network.to_dict(),
            "augment": aug,
        }
        unit.record(
            self.name,
            spec,
            lambda: run_mtl(
                unit.workspace,
                unit.target,
                unit.draw,
                unit.zoo_models(top),
                config.network,
                steps,
                config.seed,
                save_dir=save,
                augment=aug,
            ),
        )


class Calibrated(Method):
    """Ours with alpha and beta fitted leave-one-site-out on the measured direct transfers.

    Runs in a stage of its own once every direct transfer is measured
    (:func:`~seqtransfer.experiment.runner.run_calibrated`).
    """

    name = "calibrated"
    own_stage = True

    def run(self, unit: MethodUnit) -> None:
        return None


#: every method by name, in the order of ``protocol.methods``' default
METHOD_REGISTRY: dict[str, type[Method]] = {
    m.name: m
    for m in (
        Ours,
        LogME,
        LEEP,
        MST,
        MTL,
        Scratch,
        LandmarkDirect,
        RandomLandmark,
        Lambda,
        Calibrated,
        LogMEPath,
        LEEPPath,
        Unfrozen,
        OursLEEP,
    )
}

#: the methods skipped for a target whose landmark cannot be chosen: ours and its ablations
#: (the baselines, their STPS paths, MST and MTL rank the sources by their own score)
LANDMARK_METHODS = frozenset(name for name, m in METHOD_REGISTRY.items() if m.needs_landmark)


def methods_in(names: Collection[str], key: str = "protocol.methods") -> list[Method]:
    """The methods of ``names``, in the registry's order.

    Raises:
        ConfigError: an unknown name (``key`` names the setting).
    """
    unknown = [n for n in names if n not in METHOD_REGISTRY]
    if unknown:
        raise ConfigError(
            f"{key}: unknown method(s) {', '.join(map(str, unknown))}; known: {', '.join(METHOD_REGISTRY)}"
        )
    return [m() for name, m in METHOD_REGISTRY.items() if name in names]
