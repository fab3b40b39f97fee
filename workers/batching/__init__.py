"""The dynamic batcher: rows from many jobs packed into one inference call. Kafka-free.

Owns when a batch goes and which jobs it holds (:mod:`~workers.batching.policy`), a job's
rows in and out (:mod:`~workers.batching.jobs`), and the batcher itself, which answers
every waiter whatever happens (:mod:`~workers.batching.batcher`). It knows nothing of
Kafka, the registry or a model's format: a runtime's ``infer`` is all it calls.
"""
