"""Commit points never pass an unanswered record."""

from __future__ import annotations

import random

import pytest

from workers.serving.offsets import OffsetTracker


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


def test_a_held_record_stops_the_commit_point_and_is_read_again_once() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in range(5):
        tracker.track("p", offset)
    for offset in (0, 1, 3):
        tracker.done("p", offset)
    assert tracker.hold("p", 2, limit=3) == 1
    assert tracker.commit_points() == {"p": 2}  # not past the held record
    assert tracker.in_flight() == 2  # 3 and 4 behind it; not the held one, to be read again
    assert tracker.held("p") == 2  # where to seek

    # Read again from 2 on: only the held record is answered again; 3 is answered and
    # 4 in flight already; 5 is new and tracked.
    assert tracker.seen("p", 2) and not tracker.seen("p", 5)
    assert [tracker.reread("p", o) for o in (2, 3, 4, 5)] == [True, False, False, True]
    assert tracker.held("p") is None and tracker.in_flight() == 4
    for offset in (2, 4, 5):
        tracker.done("p", offset)
    assert tracker.commit_points() == {"p": 6}


def test_a_record_is_held_at_most_limit_times() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("p", 7)
    assert [tracker.hold("p", 7, limit=2) for _ in range(2)] == [1, 2]
    assert tracker.reread("p", 7)
    assert tracker.hold("p", 7, limit=2) is None  # to be answered now
    tracker.done("p", 7)
    assert tracker.commit_points() == {"p": 8}
    assert tracker.held("p") is None


def test_a_held_record_answered_after_all_is_not_read_again() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("p", 0)
    tracker.track("p", 1)
    tracker.hold("p", 0, limit=1)
    tracker.hold("p", 1, limit=1)
    tracker.done("p", 0)  # dead-lettered after all
    assert tracker.held("p") == 1


def test_holding_a_forgotten_partition_leaves_the_record_to_its_next_owner() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.track("p", 0)
    tracker.forget(["p"])
    assert tracker.hold("p", 0, limit=1) == 1
    assert tracker.held("p") is None and tracker.commit_points() == {}


def test_resume_at_is_the_first_held_record_else_after_the_last_received() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    assert tracker.resume_at("p") is None  # nothing received: the caller asks the group
    for offset in range(4):
        tracker.track("p", offset)
    assert tracker.resume_at("p") == 4  # in flight or not, they were received
    for offset in range(4):
        tracker.done("p", offset)
    assert tracker.resume_at("p") == 4
    tracker.track("p", 4)
    tracker.track("p", 5)
    tracker.hold("p", 4, limit=3)
    assert tracker.resume_at("p") == 4  # read the held record again
