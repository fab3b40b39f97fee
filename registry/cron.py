"""Cron arithmetic for schedules (UTC), on top of croniter."""

from __future__ import annotations

from datetime import datetime

from croniter import croniter

from registry.errors import InvalidSchedule

FIELDS = "minute hour day-of-month month day-of-week"


def validate(expression: str) -> None:
    """Raise :class:`InvalidSchedule` unless ``expression`` is a valid cron expression of
    five fields (croniter also takes a sixth, seconds, which schedules do not use)."""
    fields = len(expression.split())
    if fields != len(FIELDS.split()) or not croniter.is_valid(expression):
        count = "" if fields == len(FIELDS.split()) else f" (it has {fields} fields)"
        raise InvalidSchedule(
            f"{expression!r} is not a valid cron expression{count}; use five fields "
            f'"{FIELDS}", e.g. "0 3 * * *" for 03:00 UTC daily'
        )


def next_after(expression: str, moment: datetime) -> datetime:
    """The first slot strictly after ``moment``."""
    slot: datetime = croniter(expression, moment).get_next(datetime)
    return slot


def latest_due(expression: str, now: datetime) -> datetime:
    """The latest slot at or before ``now``: the one fire that stands for all missed ones."""
    slot: datetime = croniter(expression, next_after(expression, now)).get_prev(datetime)
    return slot
