"""The experiment configuration (``seqtransfer run CONFIG.toml``), one frozen dataclass per concern.

A TOML file with the sections below; every key is optional (defaults in brackets)::

    seed = 0                      # seed of every split, draw and training

    [data]
    datasets = ["/data/Dataset501_X", ...]   # nnU-Net raw dataset folders, or:
    benchmark = true                          # generate the embedded benchmark in RUN_DIR
    benchmark_size = 48                       # its grid edge [48]
    benchmark_cases = 24                      # cases per site [24]
    benchmark_tumour_sites = 6                # tumour-like sites [6]
    benchmark_deep_grey = false               # also the deep-grey collection (Dataset505) [false]
    groups = "objective_groups.json"          # objective-group map (default: found beside)
    modalities = "modality_aliases.json"      # modality alias map {"T2w": "T2"} (default: found beside)

    [protocol]
    targets = []                  # target tasks; empty: the paper's protocol targets
    targets_per_collection = 0    # keep only the first N targets of each collection (0: all)
    draws = 3                     # seeded draws of the target's 3 training cases
    methods = ["ours", "logme", "leep", "mst", "mtl", "scratch", "landmark_direct",
               "random_landmark", "lambda", "calibrated", "logme_stps", "leep_stps", "unfrozen", "ours_leep"]
    lambdas = [0.0, 0.3, 0.4, 0.5, 1.0]
    random_landmarks = 10         # draws of the random landmark ("w/o LSI")
    top_k = 3                     # sources fused by MST / trained with by MTL (the top-k by LogME)
    max_sources = 0               # 0: every connected source; N: only the N nearest by w
                                  # (a scaled-down protocol, e.g. the demo; it restricts
                                  # every method's choice, so say so when reporting)
    quality_draws = 1             # draws for which every source's direct transfer is measured
    score_voxels = 500            # voxels per class per case for LogME / LEEP / NCE
    scratch_steps = 300           # training steps of scratch and MTL
    calibration_trials = 30       # optuna trials of the leave-one-site-out calibration
    n_train = [3]                 # labelled target cases of the sample-size study, e.g. [2, 3, 5, 10]
                                  # (3 is the protocol itself; other sizes train on nested cases
                                  # of each draw and are scored on the first test set)
    sample_size_methods = ["ours", "logme", "leep", "mst", "scratch"]   # run at every n_train

    [selection]                   # SelectionConfig (seqtransfer.selection.config)
    lam = 0.4                     # lambda of eq. 8 for "ours", in [0, 1]
    max_length = 5                # L_max, most transfer steps (>= 1)
    c_search = 0.1                # C_search of eq. 8, in units of w (>= 0)

    [graph]     # GraphConfig (seqtransfer.graph.config)
    [network]   # NetworkConfig (seqtransfer.training.config: preset, filters, patch_size, architecture, ...)
    [zoo]       # ZooConfig (seqtransfer.pipeline.config): steps [300], max_train [60], augment [true]
    [finetune]  # FinetuneConfig (seqtransfer.pipeline.config):
                # steps [150], lr [0.01], lambda_ewc [0.25], augment [true]
                # (augment also applies to scratch, MST and MTL: every training on the target)

Each section is, or is built from, the library's configuration dataclass of its concern, so
a default is written once: ``[selection]`` is :class:`~seqtransfer.selection.config.SelectionConfig`,
``[finetune]`` is :class:`~seqtransfer.pipeline.config.FinetuneConfig` (its recipe keys; the
seed is the experiment's, the draw the protocol's), ``[zoo]`` holds the settings of a
:class:`~seqtransfer.pipeline.config.ZooConfig` an experiment chooses (the network is
``[network]``, the seed the experiment's). Every table is read by
:func:`~seqtransfer.core.config.config_from_mapping`.

The resolved configuration (every default filled in) is saved next to the results.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from seqtransfer.core.config import config_from_mapping, require
from seqtransfer.core.errors import ConfigError
from seqtransfer.experiment.methods import METHOD_REGISTRY
from seqtransfer.graph.config import GraphConfig
from seqtransfer.pipeline.config import FinetuneConfig, ZooConfig
from seqtransfer.selection.config import SelectionConfig
from seqtransfer.training.config import NetworkConfig

#: every method of the protocol (:data:`~seqtransfer.experiment.methods.METHOD_REGISTRY`),
#: the default of ``protocol.methods``
METHODS = tuple(METHOD_REGISTRY)

#: the methods the sample-size study can run at another number of labelled target cases
SAMPLE_SIZE_METHODS = tuple(name for name, method in METHOD_REGISTRY.items() if method.sample_size)


@dataclass(frozen=True)
class DataConfig:
    """Where the datasets come from."""

    datasets: tuple[str, ...] = ()
    benchmark: bool = False
    benchmark_size: int = 48
    benchmark_cases: int = 24
    benchmark_tumour_sites: int = 6
    benchmark_deep_grey: bool = False
    groups: str | None = None
    modalities: str | None = None

    def __post_init__(self) -> None:
        require(
            [
                (bool(self.datasets) != bool(self.benchmark), "data: give either datasets or benchmark = true"),
                (all(isinstance(d, str) and d for d in self.datasets), "data.datasets must be a list of folder paths"),
                (self.benchmark_size >= 16, "data.benchmark_size must be >= 16"),
                (
                    self.benchmark_cases >= 19,
                    "data.benchmark_cases must be >= 19 (3 draws of 3 training cases + 10 test cases per target)",
                ),
                (self.benchmark_tumour_sites >= 2, "data.benchmark_tumour_sites must be >= 2"),
            ]
        )


@dataclass(frozen=True)
class ProtocolConfig:
    """What is compared (METHOD section 7)."""

    targets: tuple[str, ...] = ()
    targets_per_collection: int = 0
    draws: int = 3
    methods: tuple[str, ...] = METHODS
    lambdas: tuple[float, ...] = (0.0, 0.3, 0.4, 0.5, 1.0)
    random_landmarks: int = 10
    top_k: int = 3
    max_sources: int = 0
    quality_draws: int = 1
    score_voxels: int = 500
    scratch_steps: int = 300
    calibration_trials: int = 30
    n_train: tuple[int, ...] = (3,)
    sample_size_methods: tuple[str, ...] = ("ours", "logme", "leep", "mst", "scratch")

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        sizes_ok = all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in self.n_train)
        require(
            [
                (
                    not unknown,
                    f"protocol.methods: unknown method(s) {', '.join(map(str, unknown))}; known: {', '.join(METHODS)}",
                ),
                (len(set(self.methods)) == len(self.methods), "protocol.methods lists a method twice"),
                (self.targets_per_collection >= 0, "protocol.targets_per_collection must be >= 0"),
                (1 <= self.draws <= 3, "protocol.draws must be in 1..3 (the target split has 3 draws)"),
                (
                    all(isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= 1.0 for v in self.lambdas),
                    "protocol.lambdas must be in [0, 1]",
                ),
                (self.random_landmarks >= 1, "protocol.random_landmarks must be >= 1"),
                (self.top_k >= 1, "protocol.top_k must be >= 1"),
                (self.max_sources == 0 or self.max_sources >= 2, "protocol.max_sources must be 0 (all) or >= 2"),
                (0 <= self.quality_draws <= self.draws, "protocol.quality_draws must be in 0..draws"),
                (self.score_voxels >= 1, "protocol.score_voxels must be >= 1"),
                (self.scratch_steps >= 1, "protocol.scratch_steps must be >= 1"),
                (self.calibration_trials >= 1, "protocol.calibration_trials must be >= 1"),
                (
                    "calibrated" not in self.methods or self.quality_draws >= 1,
                    "protocol: the calibrated method needs quality_draws >= 1 (measured transfers)",
                ),
                (
                    sizes_ok and len(set(self.n_train)) == len(self.n_train),
                    "protocol.n_train must list distinct integers >= 1",
                ),
                (3 in self.n_train, "protocol.n_train must include 3, the protocol's own training cases"),
                (
                    all(m in SAMPLE_SIZE_METHODS for m in self.sample_size_methods),
                    f"protocol.sample_size_methods: each must be one of {', '.join(SAMPLE_SIZE_METHODS)}",
                ),
                (
                    all(m in self.methods for m in self.sample_size_methods) or self.n_train == (3,),
                    "protocol.sample_size_methods must also be in protocol.methods "
                    "(their 3-case runs are the study's n = 3)",
                ),
                (
                    len(set(self.sample_size_methods)) == len(self.sample_size_methods),
                    "protocol.sample_size_methods lists a method twice",
                ),
            ]
        )


_ZOO = ZooConfig()


@dataclass(frozen=True)
class ZooSection:
    """The ``[zoo]`` table: the settings of :class:`ZooConfig` an experiment chooses.

    Its defaults are :class:`ZooConfig`'s; the network is ``[network]`` and the seed the
    experiment's (:meth:`zoo_config` joins them), and ZooConfig validates the values.
    """

    steps: int = _ZOO.train.steps
    max_train: int = _ZOO.max_train
    augment: bool = _ZOO.train.augment

    def __post_init__(self) -> None:
        self.zoo_config(NetworkConfig(), 0)

    def zoo_config(self, network: NetworkConfig, seed: int) -> ZooConfig:
        """How the experiment trains its source models."""
        return _ZOO.with_recipe(
            network=network, steps=self.steps, max_train=self.max_train, augment=self.augment, seed=seed
        )


#: what ``[finetune]`` may set: the recipe (the seed is the experiment's, the draw the protocol's)
FINETUNE_KEYS = ("steps", "lr", "lambda_ewc", "augment")


#: training cases of a target in one protocol draw (the paper's 3)
PROTOCOL_TRAIN_CASES = 3


@dataclass(frozen=True)
class ExperimentConfig:
    """The whole experiment."""

    seed: int = 0
    data: DataConfig = field(default_factory=lambda: DataConfig(benchmark=True))
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    zoo: ZooSection = field(default_factory=ZooSection)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)

    def __post_init__(self) -> None:
        require(
            [
                (
                    isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0,
                    "seed must be a non-negative integer",
                )
            ]
        )
        # one split of each target: the graph's affinity cases are draw d's training cases of
        # the split the transfers and the test sets use, never a test case
        require(
            [
                (
                    self.graph.seed == self.seed,
                    f"graph.seed ({self.graph.seed}) must equal seed ({self.seed}): the graph draws each "
                    "target's cases from the split of the transfers and test sets",
                ),
                (
                    self.finetune.seed == self.seed,
                    f"finetune.seed ({self.finetune.seed}) must equal seed ({self.seed}): "
                    "one seed for every draw and training",
                ),
                (
                    self.graph.target_cases == PROTOCOL_TRAIN_CASES,
                    f"graph.target_cases ({self.graph.target_cases}) must be {PROTOCOL_TRAIN_CASES}, "
                    "the training cases of a protocol draw",
                ),
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration, JSON/TOML-ready."""
        out = asdict(self)
        out["graph"] = self.graph.to_dict()
        out["network"] = self.network.to_dict()
        return out


_SECTIONS: dict[str, tuple[type, tuple[str, ...] | None]] = {
    "data": (DataConfig, None),
    "protocol": (ProtocolConfig, None),
    "graph": (GraphConfig, None),
    "network": (NetworkConfig, None),
    "zoo": (ZooSection, None),
    "finetune": (FinetuneConfig, FINETUNE_KEYS),
    "selection": (SelectionConfig, None),
}


def config_from_dict(data: dict[str, Any], origin: str = "configuration") -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from parsed TOML.

    Raises:
        ConfigError: one line naming ``origin`` and the problem.
    """
    try:
        top = {"seed", *_SECTIONS}
        unknown = sorted(set(map(str, data)) - top)
        if unknown:
            shown = ", ".join(k if k.isidentifier() else repr(k) for k in unknown)
            raise ConfigError(f"unknown key(s) {shown}; expected {', '.join(sorted(top))}")
        kwargs: dict[str, Any] = {}
        if "seed" in data:
            kwargs["seed"] = data["seed"]
        seed = data["seed"] if isinstance(data.get("seed"), int) and not isinstance(data.get("seed"), bool) else None
        for name, (cls, keys) in _SECTIONS.items():
            if name not in data:
                continue
            table = data[name]
            if name == "graph" and isinstance(table, dict) and seed is not None:
                table = {"seed": seed, **table}  # one seed for the graph's sampling too (a different one is refused)
            kwargs[name] = config_from_mapping(cls, table, name, keys)
        if seed is not None:  # and for the fine-tuning
            kwargs.setdefault("graph", GraphConfig(seed=seed))
            kwargs["finetune"] = replace(kwargs.get("finetune", FinetuneConfig()), seed=seed)
        return ExperimentConfig(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{origin}: invalid value ({exc})") from exc


def load_config(path: str | Path) -> ExperimentConfig:
    """Read an experiment TOML file.

    Raises:
        ConfigError: missing or unreadable file, invalid TOML, or an invalid configuration.
    """
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{p}: file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: unreadable ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML ({exc})") from exc
    config = config_from_dict(data, str(p))
    if config.data.datasets:  # relative dataset paths are relative to the config file
        resolved = tuple(
            str((p.parent / d).resolve()) if not Path(d).is_absolute() else d for d in config.data.datasets
        )
        groups, modalities = config.data.groups, config.data.modalities
        if groups is not None and not Path(groups).is_absolute():
            groups = str((p.parent / groups).resolve())
        if modalities is not None and not Path(modalities).is_absolute():
            modalities = str((p.parent / modalities).resolve())
        config = replace(config, data=replace(config.data, datasets=resolved, groups=groups, modalities=modalities))
    return config
