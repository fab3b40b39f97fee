"""The join without a broker: both orders of arrival, duplicates, unmatched labels,
overflow, bad feedback refused with a reason, and the sums a window derives from."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from producer.contract.messages import CaptureRecord, DecodeError, Feedback, decode_feedback
from registry.labelled import QualityWindow
from workers.monitor.join import JoinSettings, JoinState, Refused
from workers.monitor.scoring import contribution

DAY_MS = 86_400_000


def capture(
    job_id: str, labels: list[object], ts_ms: int = 1_000, version: int = 1
) -> CaptureRecord:
    return CaptureRecord(
        job_id=job_id, model="m", version=version, status="ok", ts_ms=ts_ms,
        outputs={"label": labels, "probabilities": [[0.1, 0.9]] * len(labels)},
    )  # fmt: skip


def test_a_label_joins_its_capture_whichever_comes_first() -> None:
    state = JoinState(JoinSettings())
    assert state.capture(capture("a", [3, 4])) == []
    joined = state.feedback(None, Feedback(job_id="a", labels=[3, 5]), 2_000)
    assert not isinstance(joined, Refused)
    assert [(r.row, r.prediction, r.label) for r in joined] == [(0, 3, 3), (1, 4, 5)]
    assert state.feedback(None, Feedback(job_id="b", row=0, label=1), 2_000) == []
    joined = state.capture(capture("b", [1]))
    assert not isinstance(joined, Refused)
    assert [(r.job_id, r.labelled_ms - r.answered_ms) for r in joined] == [("b", 1_000)]


def test_duplicates_are_counted_and_the_first_label_wins() -> None:
    state = JoinState(JoinSettings())
    state.capture(capture("a", [3]))
    first = state.feedback(None, Feedback(job_id="a", row=0, label=3), 2_000)
    again = state.feedback(None, Feedback(job_id="a", row=0, label=9), 3_000)
    assert len(first) == 1  # type: ignore[arg-type]
    assert again == []
    assert state.counts["duplicate"] == 1


def test_a_tenant_cannot_label_another_tenants_job() -> None:
    state = JoinState(JoinSettings())
    state.capture(capture("a", [3]))
    refused = state.feedback("acme", Feedback(job_id="a", row=0, label=3), 2_000)
    assert isinstance(refused, Refused)
    assert refused.audit == "feedback-for-another-tenants-job"
    assert state.feedback(None, Feedback(job_id="a", row=0, label=3), 2_000) != []


def test_labels_without_a_capture_expire_as_unmatched_and_memory_is_bounded() -> None:
    state = JoinState(JoinSettings(window_ms=DAY_MS, max_pending=3))
    state.feedback(None, Feedback(job_id="lost", labels=[1, 2]), 1_000)
    state.capture(capture("late", [1], ts_ms=2 * DAY_MS))
    assert state.counts["unmatched"] == 2
    for i in range(10):
        state.capture(capture(f"c{i}", [1], ts_ms=2 * DAY_MS))
    assert len(state) == 3
    assert state.counts["overflow"] == 8


@pytest.mark.parametrize(
    ("feedback", "reason"),
    [
        (Feedback(job_id="a", labels=[1, 2, 3]), "3 labels but the job had 2 rows"),
        (Feedback(job_id="a", row=5, label=1), "row 5 but the job had 2 rows"),
        (Feedback(job_id="a", labels=[1.5, 2]), "not a class"),
    ],
)
def test_feedback_that_cannot_be_scored_is_refused_with_the_reason(
    feedback: Feedback, reason: str
) -> None:
    state = JoinState(JoinSettings())
    state.capture(capture("a", [1, 2]))
    refused = state.feedback(None, feedback, 2_000)
    assert isinstance(refused, Refused)
    assert reason in refused.reason


def test_a_regressor_label_must_be_a_number() -> None:
    state = JoinState(JoinSettings())
    state.capture(capture("r", [0.5]))
    assert isinstance(state.feedback(None, Feedback(job_id="r", row=0, label="x"), 2), Refused)
    joined = state.feedback(None, Feedback(job_id="r", row=0, label=2.0), 2)
    assert not isinstance(joined, Refused)
    window = contribution(joined[0], 3600).window
    assert (window.kind, window.mae, window.rmse) == ("regressor", 1.5, 1.5)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"schema": "maas.feedback/v1", "job_id": "a"}',
        b'{"schema": "maas.feedback/v1", "job_id": "a", "labels": []}',
        b'{"schema": "maas.feedback/v1", "job_id": "a", "labels": [[1]]}',
        b'{"schema": "maas.feedback/v1", "job_id": "a", "labels": [1], "row": 0, "label": 1}',
        b'{"schema": "maas.result/v1", "job_id": "a", "labels": [1]}',
        b"\xff",
    ],
)
def test_malformed_feedback_does_not_decode(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_feedback(raw)


def test_window_sums_give_accuracy_macro_scores_and_delays() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    window = QualityWindow("m", 1, start, 3600, "classifier")
    pairs = [("a", "a"), ("a", "b"), ("b", "b"), ("b", "b"), ("c", "a")]
    for label, prediction in pairs:
        window = window.plus(
            QualityWindow(
                "m", 1, start, 3600, "classifier", rows=1, correct=int(label == prediction),
                confusion={label: {prediction: 1}}, delays={"30": 1},
            )
        )  # fmt: skip
    assert window.rows == 5
    assert window.accuracy == pytest.approx(3 / 5)
    precision, recall, f1 = window.macro()  # type: ignore[misc]
    # sklearn: precision_recall_fscore_support(y, p, average="macro", zero_division=0)
    # = (0.38888888888888884, 0.5, 0.43333333333333335)
    assert precision == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    assert recall == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert f1 == pytest.approx((0.5 + 0.8 + 0) / 3)
    assert window.delay_ms(0.5) == pytest.approx(1000.0)
