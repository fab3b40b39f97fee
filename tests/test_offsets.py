"""Commit points never pass an unanswered record."""

from __future__ import annotations

import random

import pytest

from workers.offsets import OffsetTracker


def test_commit_point_waits_for_the_first_unanswered_record() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in range(5):
        tracker.track("p0", offset)
    tracker.done("p0", 1)
    tracker.done("p0", 2)
    assert tracker.commit_points() == {}
    tracker.done("p0", 0)
    assert tracker.commit_points() == {"p0": 3}
    assert tracker.in_flight() == 2


def test_points_are_handed_out_once_until_they_move() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("p0", 10)
    tracker.done("p0", 10)
    points = tracker.commit_points()
    assert points == {"p0": 11}
    tracker.mark_committed(points)
    assert tracker.commit_points() == {}
    tracker.track("p0", 11)
    tracker.done("p0", 11)
    assert tracker.commit_points() == {"p0": 12}


def test_partitions_are_independent_and_can_be_filtered() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("a", 0)
    tracker.track("b", 0)
    tracker.track("b", 1)
    tracker.done("b", 0)
    assert tracker.commit_points(["a"]) == {}
    assert tracker.commit_points(["b"]) == {"b": 1}
    assert tracker.in_flight(["b"]) == 1


def test_forgotten_partitions_ignore_late_answers() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("a", 0)
    tracker.forget(["a"])
    tracker.done("a", 0)
    assert tracker.commit_points() == {}
    assert tracker.in_flight() == 0


def test_out_of_order_offsets_are_refused() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("a", 5)
    with pytest.raises(ValueError, match="arrived after"):
        tracker.track("a", 5)


def test_random_completion_order_never_commits_past_a_gap() -> None:
    rng = random.Random(7)
    tracker: OffsetTracker[str] = OffsetTracker()
    offsets = list(range(500))
    for offset in offsets:
        tracker.track("p", offset)
    rng.shuffle(offsets)
    answered: set[int] = set()
    for offset in offsets:
        tracker.done("p", offset)
        answered.add(offset)
        point = tracker.commit_points().get("p")
        if point is not None:
            assert all(o in answered for o in range(point))
            assert point not in answered or point == 500
    assert tracker.commit_points() == {"p": 500}
