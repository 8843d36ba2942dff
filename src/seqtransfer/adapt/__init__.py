"""A new target with a handful of labels: from datasets to predictions (``seqtransfer adapt``).

:func:`plan_adapt` checks everything and writes nothing; :func:`adapt` runs the plan
(graph, zoo, selection, fine-tuning on every labelled case, predictions, report).
:class:`AdaptConfig` (:mod:`seqtransfer.adapt.config`) is light: importing it loads no torch.
The names below load their module on first use.
"""

from __future__ import annotations

from seqtransfer.core.lazy import lazy_getattr

_LAZY = {
    "AdaptConfig": "seqtransfer.adapt.config",
    "AdaptPlan": "seqtransfer.adapt.run",
    "adapt": "seqtransfer.adapt.run",
    "plan_adapt": "seqtransfer.adapt.run",
    "merge_labels": "seqtransfer.adapt.merge",
    "region_values": "seqtransfer.adapt.merge",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
