"""Errors raised by the clients, one root. Service errors carry the contract's error code.

    ClientError
    ├── ServiceError            the service answered with an error Result (``code``)
    ├── BrokerUnavailable       no broker could be reached (also a ConnectionError)
    │   └── BrokerRefused       a broker refused us for good: credentials, SASL, TLS
    ├── KafkaSettingsError      a ``MAAS_KAFKA_*`` setting no client honours (ValueError)
    ├── JobTimeout              no answer in time (also a TimeoutError)
    ├── TopicNotFound           a topic to read has no partitions
    └── JobTooLarge             a job over the producer's record size (ValueError)

The wire contract's errors (:mod:`producer.contract.errors`) are a tree of their own:
the contract imports nothing of the clients'.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from producer.contract.messages import Result


class ClientError(Exception):
    """Root of the client errors."""


class ServiceError(ClientError):
    """The service answered with an error Result; ``code`` is its error code."""

    def __init__(self, code: str, message: str, *, result: Result | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.result = result


class BrokerUnavailable(ClientError, ConnectionError):
    """No Kafka broker could be reached (or it refused us); the message says what to check."""


class BrokerRefused(BrokerUnavailable):
    """A broker answered and refused the connection for good: credentials, the SASL
    mechanism or TLS. Trying again later cannot help; the message says what to fix."""


class KafkaSettingsError(ClientError, ValueError):
    """A ``MAAS_KAFKA_*`` setting no Kafka client could honour; the message names it."""


class JobTimeout(ClientError, TimeoutError):
    """No answer arrived in time."""

    def __init__(self, job_id: str, timeout_s: float, bootstrap_servers: str) -> None:
        super().__init__(
            f"no result for job {job_id!r} within {timeout_s:g}s; check that a worker is "
            f"running (`maas worker`) against {bootstrap_servers}, that the model is "
            "registered (`maas models list`), and that the reply topic is the one workers "
            "answer on"
        )
        self.job_id = job_id
        self.timeout_s = timeout_s


class TopicNotFound(ClientError):
    """A topic to read has no partitions in the brokers' metadata."""

    def __init__(self, topic: str, waited_s: float) -> None:
        super().__init__(
            f"topic {topic!r} has no partitions after {waited_s:g}s of waiting; create it "
            "first (clients and workers create the service's topics when they start)"
        )
        self.topic = topic


class JobTooLarge(ClientError, ValueError):
    """A job is bigger than the producer sends in one record (its max_request_size)."""

    def __init__(self, job_id: str, size: int, detail: str) -> None:
        super().__init__(
            f"job {job_id!r} is {size} bytes, more than the producer sends in one record "
            f"({detail}); send fewer rows per job (maas score: --rows-per-job), or raise "
            "the limits together: the producer's max_request_size "
            "(MAAS_KAFKA_MAX_REQUEST_SIZE), the broker's message.max.bytes and `maas worker "
            "--max-job-bytes` (see docs/serving.md)"
        )
        self.job_id = job_id
        self.size = size
