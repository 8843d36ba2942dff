"""seqtransfer: graph-guided sequential transfer for medical image segmentation.

The package follows the pipeline in the order data flows:
``data`` (read, verify, tasks, preprocess, benchmark) -> ``affinity`` -> ``graph`` ->
``selection`` (landmark, path) -> ``training`` -> ``evaluation`` -> ``baselines`` ->
``experiment`` -> ``report`` -> ``cli``.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _metadata_version

try:  # the number is written only in pyproject.toml; the installed metadata carries it
    __version__ = _metadata_version("seqtransfer")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
