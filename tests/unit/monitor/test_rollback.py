"""Rollback on labelled accuracy against a real (SQLite) registry: judged only with
enough labelled rows on both sides, only on a significant drop, with the numbers in
the history; the restored version is never rolled forward again; a second monitor
that decides the same finds the alias moved and does nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from registry.drafts import Draft
from registry.labelled import QualityWindow
from registry.quality import Joined
from registry.registry import Registry
from workers.monitor.rollback import AccuracyPolicy, check_accuracy, one_sided_p

START = datetime(2026, 1, 1, tzinfo=UTC)


def labelled(registry: Registry, version: int, rows: int, correct: int, tag: str) -> None:
    joined = [
        Joined(
            None,
            f"{tag}-{i}",
            0,
            QualityWindow(
                "digits",
                version,
                START,
                3600,
                "classifier",
                rows=1,
                correct=int(i < correct),
                confusion={"1": {"1" if i < correct else "2": 1}},
            ),
        )
        for i in range(rows)
    ]
    registry.quality.add_joined(joined)


@pytest.fixture
def promoted(registry: Registry, digits_artifact: Path) -> Registry:
    registry.models.register("digits", Draft(digits_artifact, promote=True), actor="t")
    registry.models.register("digits", Draft(digits_artifact, promote=True), actor="t")
    return registry


def test_a_significantly_worse_promoted_version_is_rolled_back_with_its_numbers(
    promoted: Registry,
) -> None:
    policy = AccuracyPolicy(min_labelled=200)
    labelled(promoted, 1, 400, 360, "old")  # 0.90
    labelled(promoted, 2, 150, 100, "new")
    assert (
        check_accuracy(promoted.models, promoted.quality, "digits", policy=policy, actor="m")
        is None
    )
    labelled(promoted, 2, 100, 60, "more")  # 160 of 250: 0.64

    move = check_accuracy(promoted.models, promoted.quality, "digits", policy=policy, actor="m")

    assert move is not None
    assert (move.version, move.previous_version, move.automatic) == (1, 2, True)
    history = promoted.models.alias_history("digits")[-1]
    assert "labelled accuracy 0.6400 over 250 rows vs 0.9000 over 400 rows" in history.reason
    assert "p=" in history.reason
    # The known-good version is never rolled forward; a second monitor changes nothing.
    assert (
        check_accuracy(promoted.models, promoted.quality, "digits", policy=policy, actor="n")
        is None
    )


def test_a_drop_within_noise_or_the_allowed_drop_is_kept(promoted: Registry) -> None:
    labelled(promoted, 1, 400, 360, "old")  # 0.90
    labelled(promoted, 2, 300, 264, "new")  # 0.88: not significant at 0.01
    policy = AccuracyPolicy(min_labelled=200)
    assert (
        check_accuracy(promoted.models, promoted.quality, "digits", policy=policy, actor="m")
        is None
    )
    labelled(promoted, 2, 300, 240, "worse")  # 504/600 = 0.84: significant, within 0.1
    lenient = AccuracyPolicy(min_labelled=200, max_accuracy_drop=0.1)
    assert (
        check_accuracy(promoted.models, promoted.quality, "digits", policy=lenient, actor="m")
        is None
    )
    assert check_accuracy(promoted.models, promoted.quality, "digits", policy=policy, actor="m")


def test_the_same_rows_counted_twice_count_once(promoted: Registry) -> None:
    labelled(promoted, 1, 10, 7, "a")
    labelled(promoted, 1, 10, 7, "a")
    windows = promoted.quality.windows("digits", 1)
    assert [(w.rows, w.correct) for w in windows] == [(10, 7)]


def test_one_sided_p_agrees_with_the_textbook_z_test() -> None:
    # 0.64 of 250 vs 0.90 of 400: z = -8.3, so p is tiny; equal proportions: p = 0.5
    assert one_sided_p(160, 250, 360, 400) < 1e-10
    assert one_sided_p(90, 100, 90, 100) == pytest.approx(0.5)
    assert one_sided_p(95, 100, 90, 100) > 0.5
