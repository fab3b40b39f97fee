"""The evaluation gate: pure decisions over metric mappings."""

from __future__ import annotations

from typing import Any

import pytest

from workers.training.gate import GateDecision, GatePolicy, decide

PROD = {"accuracy": 0.9645, "loss": 0.20}


def test_candidate_that_beats_production_is_promoted() -> None:
    decision = decide("gate", {"accuracy": 0.9712}, PROD, 3, GatePolicy())
    assert decision == GateDecision(
        True,
        "beats production 3 on accuracy (0.9712 vs 0.9645, required margin 0.0000)",
        "accuracy",
        0.9712,
        0.9645,
    )


def test_worse_candidate_is_kept_but_not_promoted() -> None:
    decision = decide("gate", {"accuracy": 0.41}, {"accuracy": 0.97}, 3, candidate_version=5)
    assert not decision.promote
    assert decision.reason == (
        "does not beat production 3 on accuracy (0.4100 vs 0.9700, required margin 0.0000); "
        "kept as version 5 but not promoted"
    )


def test_reason_without_candidate_version() -> None:
    decision = decide("gate", {"accuracy": 0.5}, {"accuracy": 0.9}, 2)
    assert decision.reason.endswith("; registered but not promoted")


def test_a_tie_does_not_promote() -> None:
    assert not decide("gate", {"accuracy": 0.9645}, PROD, 3).promote


@pytest.mark.parametrize(
    ("candidate", "promote"),
    [(0.9745, True), (0.9744, False), (0.9700, False)],
)
def test_min_improvement_is_a_required_margin(candidate: float, promote: bool) -> None:
    policy = GatePolicy(min_improvement=0.01)
    assert decide("gate", {"accuracy": candidate}, PROD, 3, policy).promote is promote


def test_min_improvement_is_inclusive_despite_float_noise() -> None:
    policy = GatePolicy(min_improvement=0.01)
    assert 0.94 - 0.93 < 0.01  # the float trap the gate must not fall into
    assert decide("gate", {"accuracy": 0.94}, {"accuracy": 0.93}, 1, policy).promote


def test_lower_is_better_metrics() -> None:
    policy = GatePolicy(metric="loss", higher_is_better=False)
    better = decide("gate", {"loss": 0.15}, PROD, 3, policy)
    assert better.promote
    assert better.reason == (
        "beats production 3 on loss (lower is better, 0.1500 vs 0.2000, required margin 0.0000)"
    )
    assert not decide("gate", {"loss": 0.25}, PROD, 3, policy).promote


def test_no_production_version_yet_promotes() -> None:
    decision = decide("gate", {"accuracy": 0.1}, None, None)
    assert decision.promote
    assert decision.reason == "no production version yet: promoted"


def test_never_registers_without_promotion() -> None:
    decision = decide("never", {"accuracy": 0.99}, PROD, 3)
    assert not decision.promote
    assert decision.reason == "promote=never: registered without promotion"
    assert not decide("never", {"accuracy": 0.99}, None, None).promote


def test_always_promotes_even_a_worse_candidate() -> None:
    decision = decide("always", {"accuracy": 0.1}, PROD, 3)
    assert decision.promote
    assert decision.reason.startswith("promote=always")
    assert decide("always", {}, PROD, 3).promote


@pytest.mark.parametrize(
    "candidate",
    [{}, {"f1": 0.9}, {"accuracy": float("nan")}, {"accuracy": float("inf")}, {"accuracy": "0.9"}],
)
def test_candidate_without_a_valid_metric_is_not_promoted(candidate: dict[str, Any]) -> None:
    decision = decide("gate", candidate, PROD, 3, candidate_version=4)
    assert not decision.promote
    assert "candidate has no valid 'accuracy' metric" in decision.reason
    assert decision.reason.endswith("kept as version 4 but not promoted")


def test_candidate_without_metric_names_what_it_has() -> None:
    decision = decide("gate", {"f1": 0.9, "loss": 0.1}, PROD, 3)
    assert "(has: f1, loss)" in decision.reason


def test_production_without_the_metric_blocks_the_gate() -> None:
    decision = decide("gate", {"accuracy": 0.99}, {"f1": 0.5}, 3)
    assert not decision.promote
    assert "production 3 has no recorded 'accuracy'" in decision.reason
    assert "promote=always" in decision.reason
    assert not decide("gate", {"accuracy": 0.99}, None, 3).promote


def test_production_metrics_without_a_version_number() -> None:
    decision = decide("gate", {"accuracy": 0.99}, PROD, None)
    assert decision.promote and decision.reason.startswith("beats production on accuracy")


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="promote mode must be one of gate, never, always"):
        decide("sometimes", {}, None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": ""}, "must name a metric"),
        ({"min_improvement": -0.1}, "min_improvement must be a finite number >= 0"),
        ({"min_improvement": float("nan")}, "min_improvement must be a finite number >= 0"),
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GatePolicy(**kwargs)
