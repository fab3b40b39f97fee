"""The defaults of the settings that ``maas worker``'s flags show, as plain constants.

Standard library only, so that ``maas worker --help`` shows them without importing the
serving loop, the runtimes, numpy or the Kafka clients. The settings dataclasses
(:class:`~workers.serving.loop.WorkerSettings`, :class:`~workers.serving.pool.PoolSettings`,
:class:`~workers.batching.policy.BatchConfig`, :class:`~workers.runtime.base.RuntimeSettings`)
take their defaults from here, so each default is still written once.
"""

from __future__ import annotations

from typing import Final

# aiokafka's (and Kafka's) default max.request.size, and so the largest record the
# default broker (message.max.bytes 1048588) takes.
MAX_RECORD_BYTES: Final = 1024 * 1024

GROUP_ID: Final = "maas-workers"  # the consumer group's base name
MAX_IN_FLIGHT: Final = 4096  # jobs; polling pauses above it, resumes at half
EXACTLY_ONCE: Final = False
COMMIT_INTERVAL_S: Final = 0.2  # at-least-once: answered offsets committed at most this often
TRANSPORT: Final = "aiokafka"  # or "librdkafka": the Kafka client library of the hot path
PROCESSES: Final = 1  # consumer processes in a pool

DEVICE: Final = "auto"  # where models run: auto, cpu or cuda
INTRA_OP_THREADS: Final = 0  # 0: the runtime's choice

MAX_BATCH_SIZE: Final = 64  # rows
MAX_DELAY_MS: Final = 5.0
# A batch runs on the event loop, not in a thread, once batches as large took less than
# this (ms): for a small model the thread hop costs more than the inference.
INLINE_INFER_MS: Final = 0.5
MAX_JOB_ROWS: Final = 4096
