"""What a worker tells ``/readyz`` and ``/metrics`` beyond its counters.

:func:`worker_probe` is the worker's :data:`workers.health.Probe`: run in its event loop
every few seconds, it samples the gauges that only make sense at scrape time (jobs in
flight, queue depth per model version, lag per partition) and says why the worker is
not ready, or None. Only worker processes import this module, so only they export
these gauges.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from prometheus_client import Gauge

from workers.health import Probe
from workers.serving.loop import Worker

IN_FLIGHT = Gauge("maas_in_flight_jobs", "Jobs polled and not yet answered and acknowledged")
QUEUED = Gauge(
    "maas_queued_rows", "Rows waiting in a model version's batcher", ["model", "version"]
)
LAG = Gauge(
    "maas_consumer_lag",
    "Records of a partition this worker owns that it has not fetched yet",
    ["topic", "partition"],
)
_POSITION_WAIT_S = 1.0


class _WorkerGauges:
    """Sets the worker's gauges; forgets the label sets that went away (a revoked
    partition, an unloaded version) so that no stale series stays behind."""

    def __init__(self) -> None:
        self._queued: set[tuple[str, str]] = set()
        self._lag: set[tuple[str, str]] = set()

    async def sample(self, worker: Worker) -> None:
        IN_FLIGHT.set(worker.tracker.in_flight())
        queued = {
            (loaded.version.model, str(loaded.version.version)): loaded.batcher.queued_rows
            for loaded in worker.models.loaded()
        }
        self._queued = _replace(QUEUED, self._queued, queued)
        lags = {} if worker.consumer is None else await _lags(worker.consumer)
        self._lag = _replace(LAG, self._lag, lags)


def _replace(
    gauge: Gauge, before: set[tuple[str, str]], now: dict[tuple[str, str], int]
) -> set[tuple[str, str]]:
    for labels in before - now.keys():
        gauge.remove(*labels)
    for labels, value in now.items():
        gauge.labels(*labels).set(value)
    return set(now)


async def _lags(consumer: AIOKafkaConsumer) -> dict[tuple[str, str], int]:
    """Per owned partition: the log's end (as of the last fetch) minus the position."""
    lags: dict[tuple[str, str], int] = {}
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        position = await _position(consumer, tp)
        if highwater is not None and position is not None:
            lags[(tp.topic, str(tp.partition))] = max(highwater - position, 0)
    return lags


async def _position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    try:
        position: int = await asyncio.wait_for(consumer.position(tp), _POSITION_WAIT_S)
    except (TimeoutError, IllegalStateError, KafkaError):
        return None  # being reset or revoked right now: the next sample has it
    return position


def worker_probe(worker: Worker) -> Probe:
    """Ready: the worker owns partitions and the models it is pinned to (--model) load."""
    gauges = _WorkerGauges()

    async def probe() -> str | None:
        await gauges.sample(worker)
        consumer = worker.consumer
        if consumer is None or not consumer.assignment():
            return "no partitions assigned yet (joining the group, or more workers than partitions)"
        for model in worker.settings.models:
            try:
                await worker.models.get(await worker.models.resolve(model, None, "production"))
            except Exception as exc:
                return f"model {model} cannot be served: {exc}"
        return None

    return probe
