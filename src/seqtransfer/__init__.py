"""seqtransfer: graph-guided sequential transfer for medical image segmentation.

The package follows the pipeline in the order data flows:
``data`` (read, verify, tasks, preprocess, benchmark) -> ``affinity`` -> ``graph`` ->
``selection`` (landmark, path) -> ``training`` -> ``evaluation`` -> ``baselines`` ->
``experiment`` -> ``report`` -> ``cli``.
"""

__version__ = "0.1.0"
