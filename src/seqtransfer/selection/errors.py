"""The error a user can cause when choosing a landmark source or a transfer path."""

from __future__ import annotations

from seqtransfer.core.errors import SeqTransferError


class SelectionError(SeqTransferError):
    """The graph or the names given cannot support a selection.

    Raised, with a one-line message, for a target or landmark that is not in the graph, a
    target with no edge to any source, a missing or invalid node attribute (``n_train``,
    ``dice``) or edge ``weight``, or a missing objective performance O.
    """
