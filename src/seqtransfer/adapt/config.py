"""How a new target is adapted: the one configuration of ``seqtransfer adapt`` (torch-free, so
that the CLI reads its defaults from it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from seqtransfer.core.errors import ConfigError
from seqtransfer.graph.config import GraphConfig
from seqtransfer.pipeline.config import FinetuneConfig, ZooConfig
from seqtransfer.selection.config import SelectionConfig


@dataclass(frozen=True)
class AdaptConfig:
    """How a new target is adapted.

    Attributes:
        zoo: how source models are trained (when the graph lacks them).
        finetune: the fine-tuning recipe of every path step (its ``draw`` is unused).
        graph: the graph's parameters when a new graph is built (ignored with ``graph_dir``).
        spacing: the training grid (None: the cube of the patch edge; ``"median"`` or mm).
        lam: lambda of eq. 8.
        max_length: most transfer steps.
        c_search: cost of one more step.
        estimate: leave-one-out Dice estimate (n trainings more).
        max_sources: 0: every connected source competes; N: only the target's N nearest by w
            (a scaled-down run, like the demo; fewer source models to train).
        score: the landmark score: ``leep`` (eq. 7 with O replaced by exp(LEEP) of each source
            model on the target's labelled cases; the default: it chose better landmarks than
            the paper's in the selection study, ``benchmarks/selection_study.md``) or ``paper``
            (eq. 7).
    """

    zoo: ZooConfig = field(default_factory=ZooConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    spacing: tuple[float, float, float] | str | None = None
    lam: float = SelectionConfig.lam
    max_length: int = SelectionConfig.max_length
    c_search: float = SelectionConfig.c_search
    estimate: bool = False
    max_sources: int = 0
    score: str = "leep"

    def __post_init__(self) -> None:
        from seqtransfer.selection.landmark import SCORES

        if self.max_sources < 0:
            raise ConfigError(f"max_sources must be >= 0, got {self.max_sources}")
        if self.score not in SCORES:
            raise ConfigError(f"score must be one of {', '.join(SCORES)}, got {self.score!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (saved in ``adapt.json``)."""
        return {
            "zoo": self.zoo.to_dict(),
            "finetune": asdict(self.finetune),
            "graph": self.graph.to_dict(),
            "spacing": list(self.spacing) if isinstance(self.spacing, tuple) else self.spacing,
            "lambda": self.lam,
            "max_length": self.max_length,
            "c_search": self.c_search,
            "estimate": self.estimate,
            "score": self.score,
            "max_sources": self.max_sources,
        }
