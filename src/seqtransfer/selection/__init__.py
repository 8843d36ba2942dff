"""Source selection: the landmark source (paper eq. 6-7) and the transfer path (eq. 8-9).

``landmark`` ranks the sources connected to a target and picks the start of the transfer;
``path`` finds the exact optimal chain of sources from that landmark to the target.
"""

from seqtransfer.selection.config import SelectionConfig
from seqtransfer.selection.errors import SelectionError
from seqtransfer.selection.landmark import (
    LandmarkScore,
    default_w_c,
    density,
    informativeness,
    landmark_scores,
    select_landmark,
)
from seqtransfer.selection.path import (
    DEFAULT_C_SEARCH,
    DEFAULT_LAMBDA,
    DEFAULT_MAX_LENGTH,
    PathResult,
    is_feasible,
    optimal_path,
    path_objective,
)

__all__ = [
    "DEFAULT_C_SEARCH",
    "DEFAULT_LAMBDA",
    "DEFAULT_MAX_LENGTH",
    "LandmarkScore",
    "PathResult",
    "SelectionConfig",
    "SelectionError",
    "default_w_c",
    "density",
    "informativeness",
    "is_feasible",
    "landmark_scores",
    "optimal_path",
    "path_objective",
    "select_landmark",
]
