"""bench/loadgen.py, the HTTP bench's load generator, against a real gateway and worker:
every request it sends is answered, and each answer is the model's own label.

MLServer, the bench's other server, is not needed here (it is bench-only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import pytest

from bench.loadgen import Outcome, Target, closed_loop, infer_request, open_loop, workload_rows

if TYPE_CHECKING:
    from tests.gateway_fixtures import GatewayStack

pytestmark = pytest.mark.broker

ROWS = 24


def _labels(stack: GatewayStack, rows: list[list[float]]) -> list[int]:
    session = ort.InferenceSession(str(stack.artifact))
    _, labels = session.run(None, {"x": np.asarray(rows, dtype=np.float32)})
    return [int(label) for label in labels]


def _check(outcome: Outcome, labels: list[int]) -> None:
    assert outcome.sent > 0 and outcome.errors == {}, outcome.refusal
    assert outcome.answered == outcome.sent == len(outcome.answers)
    for index, answer in outcome.answers.items():
        assert answer == [labels[index % len(labels)]], index


@pytest.mark.parametrize("encoding", ["json", "binary"])
async def test_closed_loop_is_answered_with_the_models_labels(
    gateway_stack: GatewayStack, encoding: str
) -> None:
    rows = workload_rows("digits", ROWS)
    target = Target(gateway_stack.http, "digits", "label")
    requests = [infer_request(target, row, i, encoding) for i, row in enumerate(rows)]
    outcome = await closed_loop(gateway_stack.http, requests, 4, 1.0, warmup_s=0.5, keep=True)
    _check(outcome, _labels(gateway_stack, rows))
    assert outcome.rows_per_s > 0 and outcome.p50_ms is not None


async def test_open_loop_sends_at_its_rate_and_is_answered(gateway_stack: GatewayStack) -> None:
    rows = workload_rows("digits", ROWS)
    target = Target(gateway_stack.http, "digits", "label")
    requests = [infer_request(target, row, i, "json") for i, row in enumerate(rows)]
    outcome = await open_loop(gateway_stack.http, requests, 20.0, 1.0, warmup_s=0.5, keep=True)
    assert outcome.sent == 30  # 20 a second for 1.5 s, whatever the answers do
    _check(outcome, _labels(gateway_stack, rows))


async def test_a_refused_request_is_counted_not_answered(gateway_stack: GatewayStack) -> None:
    target = Target(gateway_stack.http, "no-such-model", "label")
    requests = [infer_request(target, [0.0] * 64, 0, "json")]
    outcome = await closed_loop(gateway_stack.http, requests, 1, 0.3, warmup_s=0.0)
    assert outcome.answered == 0 and outcome.sent == outcome.errors["404"]
    assert "no-such-model" in outcome.refusal
