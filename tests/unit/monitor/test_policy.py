"""Policy conditions: what users write, validated at once with one clear error."""

from __future__ import annotations

import pytest

from workers.drift import Condition, InvalidPolicy, parse_condition


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("drift > 0.25 for 3 windows", Condition("drift", ">", 0.25, 3)),
        ("accuracy < 0.9", Condition("accuracy", "<", 0.9, 1)),
        ("  f1<=0.8 for 1 window ", Condition("f1", "<=", 0.8, 1)),
        ("rmse >= 4", Condition("rmse", ">=", 4.0, 1)),
    ],
)
def test_conditions_parse(text: str, expected: Condition) -> None:
    assert parse_condition(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("drift is high", "cannot read the condition"),
        ("latency > 3", "unknown metric 'latency'"),
        ("drift > 0.2 for 0 windows", "1 to 1000 windows"),
        ("drift > 0.2 for 3 weeks", "cannot read the condition"),
        ("", "cannot read the condition"),
    ],
)
def test_bad_conditions_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidPolicy, match=message):
        parse_condition(text)


def test_a_condition_holds_only_over_its_whole_run_of_windows() -> None:
    condition = parse_condition("drift > 0.25 for 3 windows")
    assert condition.trigger == "drift" and parse_condition("accuracy < 0.9").trigger == "quality"
    assert not condition.holds([0.3, 0.3])
    assert condition.holds([0.1, 0.3, 0.4, 0.5])
    assert not condition.holds([0.3, 0.3, 0.2])
    assert not condition.holds([0.3, None, 0.3, 0.3][:3])
    assert str(condition) == "drift > 0.25 for 3 windows"
