"""A new target with a handful of labels: from datasets to predictions (``seqtransfer adapt``).

:func:`plan_adapt` checks everything and writes nothing; :func:`adapt` runs the plan
(graph, zoo, selection, fine-tuning on every labelled case, predictions, report).
"""

from seqtransfer.adapt.merge import merge_labels, region_values
from seqtransfer.adapt.run import AdaptConfig, AdaptPlan, adapt, plan_adapt

__all__ = ["AdaptConfig", "AdaptPlan", "adapt", "merge_labels", "plan_adapt", "region_values"]
