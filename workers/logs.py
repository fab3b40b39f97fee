"""structlog configuration, done once at the entrypoint of every maas process.

The Kafka client libraries (kafka-python, aiokafka) log at warning and error level
what maas reports itself, once and in its own words (an unreachable broker, a
connection reset), and some noise of their own that is no fault of the user's
(kafka-python's "Unhandled exception in task ... Invalid file descriptor" as a client
closes, its "Task ... ran for 0.178s ... blocking the event loop"). Their records
reach the terminal only at ``--log-level debug``, from warning level up.

Other libraries' log lines through the standard library are rate-limited
(:class:`RateLimit`): while a broker is down a client may log each failed connection
attempt, a hundred lines a second; one line every few seconds says as much.
"""

from __future__ import annotations

import logging
import math
import sys
import time

import structlog

KAFKA_LIBRARIES = ("kafka", "aiokafka")

RATE_LIMIT_S = 10.0


class RateLimit(logging.Filter):
    """Lets each kind of log record (its logger and message template) through at most
    once every ``every_s`` seconds; the next one let through says how many were held
    back meanwhile."""

    def __init__(self, every_s: float = RATE_LIMIT_S) -> None:
        super().__init__()
        self._every_s = every_s
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # last shown, held since

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        shown, held = self._seen.get(key, (-math.inf, 0))
        if now - shown < self._every_s:
            self._seen[key] = (shown, held + 1)
            return False
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.getMessage()} ({held} more like this in {now - shown:.0f} s)"
            record.args = ()
        return True


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
    handler.addFilter(RateLimit())
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
