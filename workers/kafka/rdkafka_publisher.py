"""Publishing answers through librdkafka: the :class:`~workers.kafka.publisher.Publisher`
contract, on ``confluent_kafka.Producer``.

librdkafka batches, compresses and sends in its own threads and reports each record's
fate to a delivery callback, which runs in a thread of this publisher's own that polls
the producer. A whole poll's answers (:meth:`RdkafkaPublisher.send_many`) are handed to
librdkafka at once and share one asyncio future, resolved from that thread once the
last of them is acknowledged (one hop back to the event loop per batch, not per
record). A record that failed is tried again by itself with backoff, and its error
becomes aiokafka's (``MessageSizeTooLargeError`` for a record too large, ...), so
that :class:`~workers.kafka.publisher.PublishFailed`, the dead-letter path and the
retriable flag read the same on both transports. Dead letters, rejections and the size
checks are the base class's.

The cluster's topic list (``client``) still comes from an aiokafka client the caller
passes in: it is asked every few seconds, never per record.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, cast

import confluent_kafka
import structlog
from aiokafka import AIOKafkaClient, AIOKafkaProducer
from aiokafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    ProducerFenced,
    for_code,
)

from workers.errors import WorkerError
from workers.kafka.publisher import (
    RECORD_OVERHEAD,
    Headers,
    Outgoing,
    Publisher,
    PublishFailed,
    PublishSettings,
)

log = structlog.get_logger(__name__)

_POLL_S = 0.05  # the delivery thread's longest wait for a report
_QUEUE_FULL_WAIT_S = 0.005
_FLUSH_S = 10.0
# Another producer took this one's transactional id (exactly-once).
FENCED = frozenset(
    {
        confluent_kafka.KafkaError._FENCED,
        confluent_kafka.KafkaError.PRODUCER_FENCED,
        confluent_kafka.KafkaError.INVALID_PRODUCER_EPOCH,
    }
)


def kafka_error(error: confluent_kafka.KafkaError) -> KafkaError:
    """librdkafka's ``error`` as the aiokafka error the shared code classifies."""
    code = error.code()
    exc: KafkaError
    if code in FENCED or error.fatal():  # another producer took the transactional id
        exc = ProducerFenced()
    elif code == confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE:  # also librdkafka's own check
        exc = MessageSizeTooLargeError(error.str())
    elif code == confluent_kafka.KafkaError._MSG_TIMED_OUT:
        exc = KafkaTimeoutError(error.str())
    elif code > 0:
        exc = for_code(code)(error.str())
    else:
        exc = KafkaError(error.str())
        exc.retriable = error.retriable()
    return exc


class _Acks:
    """The acknowledgements of one hand-over of records: :attr:`future` holds, once the
    last came, each record's error (None: acknowledged)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.errors: list[KafkaError | None] = [None] * count
        self.future: asyncio.Future[list[KafkaError | None]] = loop.create_future()
        self._loop = loop
        self._left = count
        self._lock = threading.Lock()

    def report(self, index: int, error: confluent_kafka.KafkaError | None, _: Any) -> None:
        """librdkafka's delivery callback (in the delivery thread)."""
        self.settle(index, None if error is None else kafka_error(error))

    def settle(self, index: int, error: KafkaError | None) -> None:
        self.errors[index] = error
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(self.errors)


class RdkafkaPublisher(Publisher):
    """A :class:`Publisher` whose records go through librdkafka (``config``: the
    producer's, :func:`workers.kafka.rdkafka_config.producer`); ``client`` answers the
    cluster's topic list. :meth:`start` on the running loop, :meth:`close` at the end."""

    def __init__(
        self, config: Mapping[str, Any], settings: PublishSettings, client: AIOKafkaClient
    ) -> None:
        # Not Publisher.__init__: its producer is aiokafka's; the rest is shared.
        self._settings = settings
        self.max_record_bytes = settings.max_record_bytes
        self._room = settings.max_record_bytes - RECORD_OVERHEAD
        self._rdkafka = confluent_kafka.Producer(dict(config))
        self._client = client
        self.transactions: object | None = None  # with a transactional id
        self._closing = threading.Event()
        self._thread = threading.Thread(
            target=self._deliver_reports, name="rdkafka-delivery", daemon=True
        )

    @property
    def rdkafka(self) -> confluent_kafka.Producer:
        """The librdkafka producer it sends with (its transactions, with a transactional id)."""
        return self._rdkafka

    @property
    def producer(self) -> AIOKafkaProducer:
        """The transactional calls exactly-once serving makes, in aiokafka's shape: set
        by :attr:`transactions` (:mod:`workers.kafka.rdkafka_transactions`)."""
        if self.transactions is None:
            return _no_aiokafka_producer()
        return cast(AIOKafkaProducer, self.transactions)

    @property
    def client(self) -> AIOKafkaClient:
        return self._client

    def start(self) -> None:
        self._thread.start()

    def _deliver_reports(self) -> None:
        while not self._closing.is_set():
            self._rdkafka.poll(_POLL_S)

    async def close(self) -> None:
        """Wait (bounded) for what is queued to be acknowledged, then stop."""
        left = await asyncio.to_thread(self._rdkafka.flush, _FLUSH_S)
        self._closing.set()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, _FLUSH_S)
        if left:
            log.warning("records not acknowledged at close", records=left)
        await asyncio.to_thread(self._rdkafka.close)

    async def _hand_over(self, messages: Sequence[Outgoing]) -> list[KafkaError | None]:
        """Give ``messages`` to librdkafka; each one's error once all are settled."""
        acks = _Acks(asyncio.get_running_loop(), len(messages))
        for index, message in enumerate(messages):
            await self._produce(message, acks, index)
        return await acks.future

    async def _produce(self, message: Outgoing, acks: _Acks, index: int) -> None:
        def report(error: confluent_kafka.KafkaError | None, record: Any) -> None:
            acks.report(index, error, record)

        while True:
            try:
                self._rdkafka.produce(
                    message.topic,
                    message.value,
                    message.key,
                    headers=list(message.headers) if message.headers else None,
                    on_delivery=report,
                )
                return
            except BufferError:  # librdkafka's queue is full: let it drain
                await asyncio.sleep(_QUEUE_FULL_WAIT_S)
            except confluent_kafka.KafkaException as exc:
                acks.settle(index, kafka_error(exc.args[0]))
                return

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, headers: Headers = ()
    ) -> None:
        """Publish and wait for the ack; raises :class:`PublishFailed` after all retries."""
        settings = self._settings
        delay = settings.backoff_s
        for attempt in range(settings.retries + 1):
            [error] = await self._hand_over([Outgoing(topic, value, key, headers)])
            if error is None:
                return
            retriable = bool(getattr(error, "retriable", True))
            if attempt == settings.retries or not retriable:
                message = f"{type(error).__name__}: {error}"
                raise PublishFailed(message, retriable=retriable) from error
            log.warning(
                "publish failed, retrying", topic=topic, attempt=attempt + 1, error=str(error)
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.max_backoff_s)

    async def send_many(self, messages: Sequence[Outgoing]) -> list[PublishFailed | None]:
        """Publish a whole poll's answers at once; per message, None once acknowledged
        or the :class:`PublishFailed` that ended its retries (one by one)."""
        if not messages:
            return []
        errors = await self._hand_over(messages)
        failed = [index for index, error in enumerate(errors) if error is not None]
        outcome: list[PublishFailed | None] = [None] * len(messages)
        retried = await asyncio.gather(*(self._retry(messages[i]) for i in failed))
        for index, error in zip(failed, retried, strict=True):
            outcome[index] = error
        return outcome


def _no_aiokafka_producer() -> NoReturn:
    raise WorkerError("a librdkafka publisher without a transactional id has no transactions")
