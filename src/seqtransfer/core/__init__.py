"""General infrastructure below every other layer.

Typed errors, atomic writes, shared configuration helpers, thread limits and the executors
(local processes and Ray) that run independent jobs. Nothing here imports another part of
``seqtransfer``.
"""
