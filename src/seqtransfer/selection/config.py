"""The selection's parameters (eq. 8-9): lambda, L_max and C_search, one frozen dataclass.

The ``select`` command, the experiment file's ``[selection]`` table and the library's
defaults (:data:`~seqtransfer.selection.path.DEFAULT_LAMBDA` and its siblings) all read them
from :class:`SelectionConfig`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from seqtransfer.core.config import config_from_mapping, require

__all__ = ["SelectionConfig"]


@dataclass(frozen=True)
class SelectionConfig:
    """Landmark and path selection of ``ours`` (eq. 8).

    Attributes:
        lam: lambda of eq. 8, the weight of the mean step affinity, in [0, 1]; 0.4 is the
            paper's best (Table III).
        max_length: L_max, the most transfer steps of a path (>= 1; METHOD section 5).
        c_search: C_search of eq. 8, the cost of one transfer step in units of w (>= 0); see
            :data:`~seqtransfer.selection.path.DEFAULT_C_SEARCH` for why 0.1.
    """

    lam: float = 0.4
    max_length: int = 5
    c_search: float = 0.1

    def __post_init__(self) -> None:
        require(
            [
                (math.isfinite(self.lam) and 0.0 <= self.lam <= 1.0, f"lam must be in [0, 1], got {self.lam}"),
                (self.max_length >= 1, f"max_length must be >= 1, got {self.max_length}"),
                (
                    math.isfinite(self.c_search) and self.c_search >= 0,
                    f"c_search must be a finite number >= 0, got {self.c_search}",
                ),
            ]
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SelectionConfig:
        """Build from a ``[selection]`` table.

        Raises:
            ConfigError: an unknown key or an invalid value.
        """
        return config_from_mapping(cls, data, "selection")
