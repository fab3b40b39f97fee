"""Batches of a fast model infer on the event loop; the others, and the first, in a thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from workers.batching.batcher import BatchConfig, DynamicBatcher
from workers.batching.inline import InlineRule
from workers.errors import InferenceError

Tensors = dict[str, np.ndarray]


class Recording:
    """Echoes ``x`` as ``y`` and records which thread ran each batch, and its rows;
    raises while ``fail`` is set."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []  # (thread id, rows)
        self.fail = False

    def __call__(self, inputs: Tensors) -> Tensors:
        self.calls.append((threading.get_ident(), len(inputs["x"])))
        if self.fail:
            raise RuntimeError("the model broke")
        return {"y": inputs["x"]}

    def on_loop(self) -> list[bool]:
        main = threading.get_ident()
        return [thread == main for thread, _ in self.calls]


def rows(n: int) -> Tensors:
    return {"x": np.ones((n, 2), dtype=np.float32)}


@pytest.fixture
def model() -> Recording:
    return Recording()


def batcher(model: Recording, limit_ms: float) -> DynamicBatcher:
    config = BatchConfig(max_batch_size=64, max_delay_ms=0, inline_infer_ms=limit_ms)
    return DynamicBatcher(model, config, name="inline")


async def test_after_a_fast_first_batch_batches_as_large_run_on_the_loop(
    model: Recording,
) -> None:
    # A limit no thread hop reaches, however loaded the machine: the batches are fast.
    served = batcher(model, limit_ms=60_000)
    try:
        for n in (1, 1, 3, 2, 3):
            answer = await served.submit(rows(n))
            assert answer.outputs["y"].shape == (n, 2)
    finally:
        await served.aclose()
    # The first batch goes to the executor; so does the first of a larger size.
    assert model.on_loop() == [False, True, False, True, True]


async def test_with_no_limit_every_batch_runs_in_a_thread(model: Recording) -> None:
    served = batcher(model, limit_ms=0)
    try:
        for _ in range(4):
            await served.submit(rows(1))
    finally:
        await served.aclose()
    assert model.on_loop() == [False] * 4


async def test_a_model_that_raises_on_the_loop_fails_its_batch_only(model: Recording) -> None:
    served = batcher(model, limit_ms=60_000)
    try:
        await served.submit(rows(1))
        model.fail = True
        with pytest.raises(InferenceError, match="the model broke"):
            await served.submit(rows(1))
        model.fail = False
        answer = await served.submit(rows(1))
    finally:
        await served.aclose()
    assert answer.outputs["y"].shape == (1, 2)
    assert model.on_loop() == [False, True, True]


def test_the_rule_learns_the_largest_fast_batch() -> None:
    rule = InlineRule(limit_ms=1.0)
    assert not rule.inline(1)  # nothing known yet: the first batch goes to a thread
    rule.took(4, 0.0002)
    assert rule.inline(1) and rule.inline(4) and not rule.inline(5)
    rule.took(2, 0.0001)  # a smaller fast batch does not shrink what is known
    assert rule.inline(4)


def test_a_slow_batch_sends_its_size_and_larger_back_to_a_thread() -> None:
    rule = InlineRule(limit_ms=1.0)
    rule.took(8, 0.0002)
    rule.took(5, 0.003)  # the model slowed down
    assert rule.inline(4) and not rule.inline(5) and not rule.inline(8)
    rule.took(1, 0.002)
    assert not rule.inline(1)


def test_a_zero_limit_never_runs_inline() -> None:
    rule = InlineRule(limit_ms=0.0)
    rule.took(1, 0.0)
    assert not rule.inline(1)


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="inline_infer_ms must be >= 0"):
        BatchConfig(inline_infer_ms=-1)
