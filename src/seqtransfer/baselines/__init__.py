"""Baselines the method is compared with (METHOD section 7): transferability scores."""

from seqtransfer.baselines.scores import leep, logme, nce

__all__ = ["leep", "logme", "nce"]
