"""Schedules on SQLite: validation, due claims, missed fires collapse into one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from registry import InvalidSchedule, Registry, ScheduleNotFound

T0 = datetime(2025, 1, 1, 0, 0, 30, tzinfo=UTC)


def test_invalid_cron_and_promote_mode_are_refused(registry: Registry) -> None:
    with pytest.raises(InvalidSchedule, match=r"'61 \* \* \* \*' is not a valid cron expression"):
        registry.runs.add_schedule("digits", "61 * * * *", actor="ann")
    with pytest.raises(InvalidSchedule, match="gate, never, always"):
        registry.runs.add_schedule("digits", "0 3 * * *", promote="sometimes", actor="ann")
    assert registry.runs.schedules() == []


def test_add_list_remove(registry: Registry) -> None:
    schedule = registry.runs.add_schedule(
        "digits",
        "0 3 * * *",
        dataset={"uri": "file:///d"},
        params={"epochs": 1},
        actor="ann",
        now=T0,
    )
    assert schedule.next_fire_at == datetime(2025, 1, 1, 3, tzinfo=UTC)
    assert schedule.dataset == {"uri": "file:///d"} and schedule.promote == "gate"
    registry.runs.add_schedule("other", "*/5 * * * *", actor="ann", now=T0)
    assert [s.model for s in registry.runs.schedules()] == ["digits", "other"]
    assert registry.runs.schedules("digits") == [schedule]
    registry.runs.remove_schedule(schedule.id, actor="ann")
    assert [s.model for s in registry.runs.schedules()] == ["other"]
    with pytest.raises(ScheduleNotFound, match="maas schedule list"):
        registry.runs.remove_schedule(schedule.id, actor="ann")


def test_claim_due_fires_once_per_due_time(registry: Registry) -> None:
    schedule = registry.runs.add_schedule("digits", "*/5 * * * *", actor="ann", now=T0)
    assert registry.runs.claim_due(T0) == []
    due = datetime(2025, 1, 1, 0, 5, tzinfo=UTC)
    [(claimed, at)] = registry.runs.claim_due(due + timedelta(seconds=1))
    assert claimed.id == schedule.id and at == due
    assert claimed.next_fire_at == datetime(2025, 1, 1, 0, 10, tzinfo=UTC)
    assert claimed.last_fired_at == due
    assert claimed.job_id(at) == f"schedule-{schedule.id}-20250101T000500Z"
    assert registry.runs.claim_due(due + timedelta(seconds=2)) == []


def test_missed_fires_fire_once_after_downtime(registry: Registry) -> None:
    registry.runs.add_schedule("digits", "*/5 * * * *", actor="ann", now=T0)
    back = datetime(2025, 1, 1, 2, 7, tzinfo=UTC)  # 25 slots were missed
    [(claimed, at)] = registry.runs.claim_due(back)
    assert at == datetime(2025, 1, 1, 2, 5, tzinfo=UTC)  # the latest missed slot stands for all
    assert claimed.next_fire_at == datetime(2025, 1, 1, 2, 10, tzinfo=UTC)
    assert registry.runs.claim_due(back) == []


def test_naive_now_is_taken_as_utc(registry: Registry) -> None:
    registry.runs.add_schedule("digits", "*/5 * * * *", actor="ann", now=T0)
    naive = datetime(2025, 1, 1, 0, 6, tzinfo=UTC).replace(tzinfo=None)
    [(_, at)] = registry.runs.claim_due(naive)
    assert at == datetime(2025, 1, 1, 0, 5, tzinfo=UTC)
