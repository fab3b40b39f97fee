"""The steady benchmark's pure rules: job ids that carry their send time, and when lag
counts as bounded."""

from __future__ import annotations

from bench.steady.driver import is_bounded, lag_growth
from bench.steady.pacer import job_body, sent_ns, steady_id


def test_a_steady_id_is_32_characters_and_gives_back_its_send_time() -> None:
    job_id = steady_id(12345, 987654321012345)
    assert len(job_id) == 32
    assert sent_ns(job_id) == 987654321012345


def test_other_ids_have_no_send_time() -> None:
    assert sent_ns("steady-warm-up") is None
    assert sent_ns("z" * 32) is None


def test_a_job_body_is_the_contracts_json() -> None:
    assert job_body("a", "digits", '{"x": [[1.0]]}') == (
        b'{"job_id":"a","model":"digits","inputs":{"x": [[1.0]]}}'
    )


def test_a_level_backlog_is_bounded_and_a_growing_one_is_not() -> None:
    level = [(t * 0.2, 30 + (t % 3)) for t in range(60)]
    growing = [(t * 0.2, 30 + 50 * t) for t in range(60)]  # 250 more jobs every second
    assert abs(lag_growth(level)) < 5
    assert is_bounded(lag_growth(level), rate=1000, all_answered=True)
    assert lag_growth(growing) > 900
    assert not is_bounded(lag_growth(growing), rate=1000, all_answered=True)


def test_jobs_left_unanswered_are_never_bounded() -> None:
    assert not is_bounded(0.0, rate=100, all_answered=False)
