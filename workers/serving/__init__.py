"""The prediction worker: consume → batch → infer → reply, honest about offsets.

Owns the loop (:mod:`~workers.serving.loop`) with what one run of it serves with
(:mod:`~workers.serving.session`), the edge where a poll's records become
jobs or refusals (:mod:`~workers.serving.edge`), answering one job
(:mod:`~workers.serving.handler`), how answers reach the broker and offsets are
committed (:mod:`~workers.serving.delivery`, and exactly-once in
:mod:`~workers.serving.transactions`) with the offset bookkeeping
(:mod:`~workers.serving.offsets`), flow control (:mod:`~workers.serving.flow`), the
loaded versions and hot swap (:mod:`~workers.serving.models`), metric windows and
automatic rollback (:mod:`~workers.serving.metrics`, :mod:`~workers.serving.rollback`),
probes (:mod:`~workers.serving.probes`) and running N processes
(:mod:`~workers.serving.pool`). It uses batching, runtime, tenancy and kafka; nothing in
training imports it, and it imports nothing of training.
"""
