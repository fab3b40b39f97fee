"""What the broker can do, asked at start, so that no one has to say it.

Apache Kafka grants an idempotent producer; the embedded broker (Tansu) answers
``InitProducerId`` with an error, and a producer started with idempotence against it
dies in its first send. :func:`probe` asks that one question over one connection; it
also is how every component waits for its broker at start: a broker that does not
answer within the time given, that refuses maas's credentials or whose TLS certificate
does not verify is one :class:`~producer.errors.BrokerUnavailable` naming the bootstrap
servers and what to check (at once for the last two: waiting would not help).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import errors

from producer.aiokafka_internals import collect_hosts, create_conn, init_producer_id_request
from producer.errors import BrokerRefused, BrokerUnavailable

T = TypeVar("T")

# The client options (MAAS_KAFKA_*) that shape a connection: security and timeouts.
_CONNECTION_OPTIONS = frozenset(
    {
        "client_id",
        "request_timeout_ms",
        "security_protocol",
        "ssl_context",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "sasl_kerberos_service_name",
        "sasl_kerberos_domain_name",
        "sasl_oauth_token_provider",
    }
)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What maas needs to know of its broker. ``refusal``: why idempotence is off."""

    idempotence: bool
    refusal: str = ""

    @property
    def transactions(self) -> bool:
        """Transactions need a producer id as idempotence does: the broker that grants
        one (Apache Kafka) has both, the embedded one neither."""
        return self.idempotence

    @property
    def holds_fetches(self) -> bool:
        """The one broker maas meets without idempotence is the embedded one, which holds
        each fetch for about half of its maximum wait even when records are there."""
        return not self.idempotence


async def probe(options: Mapping[str, Any], *, timeout_s: float) -> Capabilities:
    """Ask the brokers in ``options["bootstrap_servers"]`` for a producer id until one
    answers, waiting up to ``timeout_s`` for a broker that is still starting."""
    servers = str(options["bootstrap_servers"])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pause = 0.1
    while True:
        try:
            async with asyncio.timeout(max(deadline - loop.time(), 0.1)):
                return await _ask(servers, options)
        except ssl.SSLError as exc:
            raise BrokerRefused(_tls_failure(servers, exc)) from None
        except (OSError, TimeoutError, errors.KafkaError) as exc:
            if isinstance(exc, errors.KafkaError) and not exc.retriable:
                raise BrokerRefused(_refusal(servers, exc)) from None
            failure = exc
        if loop.time() + pause > deadline:
            raise BrokerUnavailable(
                f"no Kafka broker answered at {servers} within {timeout_s:g}s "
                f"({type(failure).__name__}: {failure}); check MAAS_BOOTSTRAP_SERVERS "
                "(or --bootstrap-servers) and that the broker runs (`maas broker` starts "
                "the embedded one)"
            ) from None
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


def _refusal(servers: str, exc: errors.KafkaError) -> str:
    check = "the MAAS_KAFKA_* security settings"
    if isinstance(exc, errors.SaslAuthenticationFailed | errors.AuthenticationFailedError):
        check = "MAAS_KAFKA_SASL_PLAIN_USERNAME and MAAS_KAFKA_SASL_PLAIN_PASSWORD"
    elif isinstance(exc, errors.UnsupportedSaslMechanismError):
        check = "MAAS_KAFKA_SASL_MECHANISM against the broker's sasl.enabled.mechanisms"
    return (
        f"the Kafka broker at {servers} refused maas's connection ({type(exc).__name__}); "
        f"check {check}"
    )


def _tls_failure(servers: str, exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the TLS certificate of the Kafka broker at {servers} did not verify "
            f"({exc.verify_message}); check MAAS_KAFKA_SSL_CAFILE (the CA that signed it) "
            "and that the broker's certificate names the host maas connects to"
        )
    return (
        f"the TLS handshake with the Kafka broker at {servers} failed ({exc.reason}); check "
        "that MAAS_KAFKA_SECURITY_PROTOCOL matches the broker's listener"
    )


async def _ask(servers: str, options: Mapping[str, Any]) -> Capabilities:
    """One round: the first bootstrap server that accepts a connection answers."""
    connection = {key: value for key, value in options.items() if key in _CONNECTION_OPTIONS}
    connection.setdefault("sasl_mechanism", "PLAIN")  # the clients' default
    failure: Exception = errors.KafkaConnectionError(f"no bootstrap server in {servers!r}")
    for host, port, _ in collect_hosts(servers):
        try:
            conn = await create_conn(host, port, **connection)
        except (OSError, errors.KafkaConnectionError) as exc:
            failure = exc
            continue
        try:
            response = await conn.send(init_producer_id_request())
        except (errors.IncompatibleBrokerVersion, NotImplementedError):
            return Capabilities(idempotence=False, refusal="no InitProducerId")
        finally:
            conn.close()
        error = errors.for_code(response.error_code)
        if error is errors.NoError:
            return Capabilities(idempotence=True)
        if error.retriable:  # e.g. producer ids still loading on a starting broker
            raise error()
        return Capabilities(idempotence=False, refusal=error.__name__)
    raise failure


def run_blocking(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on a private event loop in a thread of its own, so that sync
    callers can use asyncio code whether or not a loop runs in their thread."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(asyncio.run(work()))
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="maas-blocking")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
