"""structlog configuration, done once at the entrypoint of every maas process.

The Kafka client libraries (kafka-python, aiokafka) log at warning and error level
what maas reports itself, once and in its own words (an unreachable broker, a
connection reset), and some noise of their own that is no fault of the user's
(kafka-python's "Unhandled exception in task ... Invalid file descriptor" as a client
closes, its "Task ... ran for 0.178s ... blocking the event loop"). Their records
reach the terminal only at ``--log-level debug``, from warning level up.
"""

from __future__ import annotations

import logging
import sys

import structlog

KAFKA_LIBRARIES = ("kafka", "aiokafka")


class _Stderr:
    """Whatever ``sys.stderr`` is at the time of writing (it may be swapped after setup)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(fmt: str = "auto", level: str = "info") -> None:
    """JSON logs in production, readable ones on a terminal; stdlib logs go the same way."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise SystemExit(f"--log-level: unknown level {level!r}")
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,  # reconfigurable (tests capture logs); not on the hot path
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))
    for library in KAFKA_LIBRARIES:
        logging.getLogger(library).setLevel(
            logging.WARNING if numeric <= logging.DEBUG else logging.CRITICAL
        )
