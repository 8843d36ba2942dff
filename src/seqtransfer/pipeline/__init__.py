"""Orchestration of the building blocks: zoo models, sequential transfers, scoring, prediction.

This layer combines :mod:`seqtransfer.data`, :mod:`seqtransfer.training`,
:mod:`seqtransfer.evaluation`, :mod:`seqtransfer.graph` and :mod:`seqtransfer.selection`;
none of those imports it.
"""
