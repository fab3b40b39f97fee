"""What ``maas`` reports in one line instead of a traceback, and the exit codes it uses.

A user's mistake (a flag, a file, a database URL) or a service that is not there (a
broker, a database) is not a bug in maas: the command prints ``error: <message>`` on
stderr, the message saying what to fix, and exits with a code below. Anything else
is a bug and keeps its traceback, for the bug report.

Exit codes, for every command:

- ``0``: done.
- ``1``: failed, and the message says why: a domain error of the registry, the
  clients, the broker or the workers; a file that cannot be read; an error
  Result (``maas submit``); rows that failed (``maas score``).
- ``2``: the command line does not parse (argparse prints the usage and the flag at
  fault). ``maas submit`` and ``maas score`` also exit 2 when no answer came in time,
  the broker included: run the same command again once the service is up. A broker
  that refuses the credentials or the TLS handshake is exit 1: a rerun cannot help.
- ``130``: interrupted (Ctrl-C).

The package's own errors, one root::

    CommandError       the command cannot run as given (a file, an input)
    └── BrokerError    the embedded broker could not be started
"""

from __future__ import annotations

import sys

from producer.errors import ClientError
from registry.errors import RegistryError
from workers.errors import WorkerError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NO_ANSWER = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """The command cannot run as given: a file it names is missing or unreadable, an
    input it reads is malformed. Reported in one line; exit 1."""


class BrokerError(CommandError, RuntimeError):
    """The embedded broker could not be started (:mod:`maas.broker`)."""


def kafka_errors() -> tuple[type[Exception], ...]:
    """The Kafka client libraries' own error roots (imported only when needed)."""
    import warnings

    from aiokafka.errors import KafkaError as AsyncKafkaError

    with warnings.catch_warnings():  # kafka-python 3.0 reads its schemas with a deprecated API
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka.errors import KafkaError

    return (AsyncKafkaError, KafkaError)


def no_answer_errors() -> tuple[type[Exception], ...]:
    """What a client meets when no answer comes: a timeout, a broker that is down or
    refuses it (``maas submit`` and ``maas score`` exit 2 on these)."""
    return (ClientError, *kafka_errors())


def user_errors() -> tuple[type[Exception], ...]:
    """Errors that are reported in one line: the domain errors of each package, the
    Kafka libraries' (a broker that refuses or cannot be reached) and the operating
    system's (a file or a port)."""
    domain = (CommandError, RegistryError, ClientError, BrokerError, WorkerError)
    return (*domain, *kafka_errors(), OSError)


def describe(exc: BaseException) -> str:
    """One line for ``exc``: its message, or its class when it has none."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{':' if where else ''}{where}"
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, kafka_errors()):
        text = f"Kafka: {text}"
    return text.splitlines()[0]


def report(exc: BaseException) -> None:
    print(f"error: {describe(exc)}", file=sys.stderr)
