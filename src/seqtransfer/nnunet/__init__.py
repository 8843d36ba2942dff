"""nnU-Net v2 on both ends: export a selected path to nnU-Net, import nnU-Net's trained models.

* :mod:`seqtransfer.nnunet.export`: ``seqtransfer export nnunet`` writes one nnU-Net raw
  dataset per step of a selected path and a script that aligns their plans on the target's,
  trains each step from the previous one (``-pretrained_weights``) and predicts the target.
* :mod:`seqtransfer.nnunet.importer`: ``seqtransfer zoo import nnunet`` turns trained nnU-Net
  ``3d_fullres`` models into zoo models of the graph's sources.

Neither module imports nnU-Net: the export writes files and a script for it, the import reads
its checkpoints and JSON files. The names below load their module on first use.
"""

from __future__ import annotations

from seqtransfer.core.lazy import lazy_getattr

_LAZY: dict[str, str] = {
    "ExportPlan": "seqtransfer.nnunet.export",
    "export_nnunet": "seqtransfer.nnunet.export",
    "plan_export": "seqtransfer.nnunet.export",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
