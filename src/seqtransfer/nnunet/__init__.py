"""nnU-Net v2 on both ends: export a selected path to nnU-Net, import nnU-Net's trained models.

* :mod:`seqtransfer.nnunet.export`: ``seqtransfer export nnunet`` writes one nnU-Net raw
  dataset per step of a selected path and a script that aligns their plans on the target's,
  trains each step from the previous one (``-pretrained_weights``) and predicts the target.
* :mod:`seqtransfer.nnunet.importer`: ``seqtransfer zoo import nnunet`` turns trained nnU-Net
  ``3d_fullres`` models into zoo models of the graph's sources, through
  :mod:`seqtransfer.nnunet.results` (the trained models, folds and validation Dice of a results
  folder) and :mod:`seqtransfer.nnunet.architecture` (nnU-Net's ``PlainConvUNet`` as DynUNet).

Neither module imports nnU-Net: the export writes files and a script for it, the import reads
its checkpoints and JSON files. The names below load their module on first use.
"""

from __future__ import annotations

from seqtransfer.core.lazy import lazy_getattr

_LAZY: dict[str, str] = {
    # the export: a path as nnU-Net datasets and a script
    "ExportPlan": "seqtransfer.nnunet.export",
    "export_nnunet": "seqtransfer.nnunet.export",
    "plan_export": "seqtransfer.nnunet.export",
    # the import: results folders, the network mapping, the zoo models
    "ImportReport": "seqtransfer.nnunet.importer",
    "ImportedModel": "seqtransfer.nnunet.importer",
    "NotImported": "seqtransfer.nnunet.importer",
    "import_nnunet": "seqtransfer.nnunet.importer",
    "ImportedNetwork": "seqtransfer.nnunet.architecture",
    "PlainUNetPlan": "seqtransfer.nnunet.architecture",
    "import_network": "seqtransfer.nnunet.architecture",
    "load_nnunet_checkpoint": "seqtransfer.nnunet.architecture",
    "map_weights": "seqtransfer.nnunet.architecture",
    "network_axes": "seqtransfer.nnunet.architecture",
    "plain_unet_plan": "seqtransfer.nnunet.architecture",
    "NotImportable": "seqtransfer.nnunet.results",
    "TrainedModel": "seqtransfer.nnunet.results",
    "ValidationSummary": "seqtransfer.nnunet.results",
    "choose_fold": "seqtransfer.nnunet.results",
    "find_trained_models": "seqtransfer.nnunet.results",
    "parse_fold": "seqtransfer.nnunet.results",
    "read_validation": "seqtransfer.nnunet.results",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
