"""What :func:`~seqtransfer.benchmark.make_benchmark` generates: :class:`BenchmarkConfig`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqtransfer.core.config import recorded_dict
from seqtransfer.core.errors import ConfigError

#: the new hospital's labelled cases (imagesTr) and unlabelled ones (imagesTs) by default
NEW_TARGET_LABELLED = 3
NEW_TARGET_UNLABELLED = 10


@dataclass(frozen=True)
class BenchmarkConfig:
    """What :func:`make_benchmark` generates.

    Attributes:
        seed: root of every random stream; same seed, same bytes.
        size: edge in voxels of the isotropic cubic grid of the tumour and tissue collections
            (the lesion sites' shapes follow from their spacings). At least 16.
        cases: cases per site (every collection). At least 4.
        tumour_sites: number of sites of the tumour collection (``inst1`` ...). At least 2.
        deep_grey: also write the optional ``Dataset505_DeepGreyLike`` (off by default).

    Use :meth:`to_dict`, not ``dataclasses.asdict``, to record a configuration: it leaves out
    the opt-in collections when they are off, so a record is the same as before they existed.

    Raises:
        ConfigError: a value is not an integer (a flag not a bool) or is below its minimum.
    """

    seed: int = 0
    size: int = 48
    cases: int = 24
    tumour_sites: int = 6
    deep_grey: bool = False

    def __post_init__(self) -> None:
        minimum = {"seed": 0, "size": 16, "cases": 4, "tumour_sites": 2}
        for name, low in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"benchmark {name} must be an integer, got {value!r}")
            if value < low:
                raise ConfigError(f"benchmark {name} must be >= {low}, got {value}")
        if not isinstance(self.deep_grey, bool):
            raise ConfigError(f"benchmark deep_grey must be true or false, got {self.deep_grey!r}")

    def to_dict(self) -> dict[str, object]:
        """The configuration as recorded (markers, ``dataset.json``, README).

        ``deep_grey`` appears only when it is on: a configuration without the optional
        collection gives the dict it gave before the option existed, so the saved markers of
        existing runs (``RUN_DIR/benchmark/benchmark.json``) still match and their benchmark
        is not regenerated.
        """
        return recorded_dict(self, "deep_grey")
