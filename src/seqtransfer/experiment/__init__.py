"""Experiments: configuration, the run store and the protocol runner (METHOD section 7)."""

from seqtransfer.experiment.config import ExperimentConfig, config_from_dict, load_config
from seqtransfer.experiment.store import RunStore, run_key

__all__ = ["ExperimentConfig", "RunStore", "config_from_dict", "load_config", "run_key"]
