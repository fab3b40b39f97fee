"""The dynamic batcher with plain asyncio and fake models: no Kafka, no long sleeps."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from workers.batching.batcher import BatchConfig, BatchOutput, DynamicBatcher
from workers.errors import (
    BatcherClosed,
    Expired,
    InferenceError,
    InvalidInput,
    QueueFull,
    TooLarge,
)

Tensors = dict[str, np.ndarray]


class FakeModel:
    """Echoes its input as ``y`` (and ``x * 2`` as ``z``), recording every batch.

    With ``gate`` set, each call blocks until the test opens the gate, so the test
    decides when a batch finishes and can queue more jobs meanwhile.
    """

    def __init__(self, gate: bool = False) -> None:
        self.batches: list[Tensors] = []
        self.started = threading.Event()
        self._gate = threading.Event()
        if not gate:
            self._gate.set()

    def open(self) -> None:
        self._gate.set()

    def __call__(self, inputs: Tensors) -> Tensors:
        self.batches.append(inputs)
        self.started.set()
        self._gate.wait(timeout=5)
        return {"y": inputs["x"], "z": inputs["x"] * 2}

    @property
    def sizes(self) -> list[int]:
        return [len(batch["x"]) for batch in self.batches]


def rows(start: int, n: int, width: int = 2) -> Tensors:
    """``n`` rows whose values identify them: row i is [start+i, start+i, ...]."""
    column = np.arange(start, start + n, dtype=np.float32)[:, None]
    return {"x": np.repeat(column, width, axis=1)}


@pytest.fixture
async def batcher_factory() -> AsyncIterator[Callable[..., DynamicBatcher]]:
    """Build batchers for a test and close them all afterwards."""
    made: list[DynamicBatcher] = []

    def make(model: Callable[[Tensors], Tensors], **config: Any) -> DynamicBatcher:
        batcher = DynamicBatcher(model, BatchConfig(**config), name="test")
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        await batcher.aclose()


async def wait_started(model: FakeModel) -> None:
    """Wait (off the loop) until the gated model has received a batch."""
    assert await asyncio.to_thread(model.started.wait, 5)


async def test_concurrent_jobs_fill_one_batch(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    model = FakeModel()
    batcher = batcher_factory(model, max_batch_size=8, max_delay_ms=1000)
    answers = await asyncio.gather(*(batcher.submit(rows(i, 1)) for i in range(8)))
    assert model.sizes == [8]
    assert all(answer.batch_size == 8 for answer in answers)


async def test_jobs_beyond_max_batch_size_go_to_the_next_batch(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    model = FakeModel()
    batcher = batcher_factory(model, max_batch_size=4, max_delay_ms=20)
    await asyncio.gather(*(batcher.submit(rows(10 * i, 3)) for i in range(3)))
    assert model.sizes == [3, 3, 3]  # never split, 3 + 3 > 4


async def test_lone_job_is_answered_with_its_timing(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    model = FakeModel()
    batcher = batcher_factory(model, max_batch_size=64, max_delay_ms=5)
    answer = await batcher.submit(rows(0, 1))
    assert answer.batch_size == 1
    assert answer.queue_ms >= 0 and answer.infer_ms >= 0
    assert model.sizes == [1]


async def test_a_lone_job_at_light_load_does_not_wait_for_company(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    model = FakeModel()
    batcher = batcher_factory(model, max_batch_size=64, max_delay_ms=900)
    answer = await batcher.submit(rows(0, 1))  # nothing else has arrived for a while
    assert answer.batch_size == 1
    assert answer.queue_ms < 450  # it did not sit out the 900 ms


async def test_without_adaptive_delay_a_lone_job_waits_the_whole_delay(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    model = FakeModel()
    batcher = batcher_factory(model, max_batch_size=64, max_delay_ms=200, adaptive_delay=False)
    answer = await batcher.submit(rows(0, 1))
    assert answer.queue_ms >= 190


async def test_a_steady_stream_waits_for_company(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    """Once rows keep arriving faster than one per delay, jobs wait and share batches."""
    model = FakeModel()
    batcher = batcher_factory(model, max_batch_size=64, max_delay_ms=50)
    pending = []
    for i in range(150):
        pending.append(asyncio.ensure_future(batcher.submit(rows(i, 1))))
        await asyncio.sleep(0.002)
    await asyncio.gather(*pending)
    assert model.sizes[0] == 1  # the first came after a quiet spell: sent at once
    assert max(model.sizes) >= 5
    assert sum(model.sizes) == 150


async def test_preferred_size_dispatches_early(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    model = FakeModel()
    # The delay is far beyond the test timeout: only the preferred size can send it.
    batcher = batcher_factory(
        model, max_batch_size=64, max_delay_ms=600_000, preferred_batch_sizes=(4,)
    )
    answers = await asyncio.gather(*(batcher.submit(rows(i, 2)) for i in range(2)))
    assert [a.batch_size for a in answers] == [4, 4]
    assert model.sizes == [4]


async def test_job_larger_than_max_batch_size_runs_alone(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    model = FakeModel()
    batcher = batcher_factory(model, max_batch_size=4, max_delay_ms=5)
    big, small = await asyncio.gather(batcher.submit(rows(0, 10)), batcher.submit(rows(100, 1)))
    assert big.batch_size == 10 and small.batch_size == 1
    np.testing.assert_array_equal(big.outputs["y"], rows(0, 10)["x"])


async def test_higher_priority_runs_first(batcher_factory: Callable[..., DynamicBatcher]) -> None:
    model = FakeModel(gate=True)
    batcher = batcher_factory(model, max_batch_size=2, max_delay_ms=0)
    first = asyncio.create_task(batcher.submit(rows(0, 2)))
    await wait_started(model)  # the first batch occupies the model; the rest queue up
    low = [asyncio.create_task(batcher.submit(rows(10 + i, 1), priority=0)) for i in range(2)]
    high = [asyncio.create_task(batcher.submit(rows(20 + i, 1), priority=5)) for i in range(2)]
    await asyncio.sleep(0)
    model.open()
    await asyncio.gather(first, *low, *high)
    order = [batch["x"][:, 0].tolist() for batch in model.batches]
    assert order == [[0.0, 1.0], [20.0, 21.0], [10.0, 11.0]]  # FIFO within a priority


async def test_expired_at_submit(batcher_factory: Callable[..., DynamicBatcher]) -> None:
    model = FakeModel()
    batcher = batcher_factory(model)
    with pytest.raises(Expired):
        await batcher.submit(rows(0, 1), deadline=time.time() - 1)
    assert model.batches == [] and batcher.queued_rows == 0


async def test_expired_while_queued(batcher_factory: Callable[..., DynamicBatcher]) -> None:
    model = FakeModel(gate=True)
    batcher = batcher_factory(model, max_batch_size=1, max_delay_ms=0)
    first = asyncio.create_task(batcher.submit(rows(0, 1)))
    await wait_started(model)
    deadline = time.time() + 0.02
    doomed = asyncio.create_task(batcher.submit(rows(1, 1), deadline=deadline))
    survivor = asyncio.create_task(batcher.submit(rows(2, 1)))
    await asyncio.sleep(deadline - time.time() + 0.005)  # it passes while the model is busy
    model.open()
    with pytest.raises(Expired, match="while it waited"):
        await doomed
    await asyncio.gather(first, survivor)
    assert [batch["x"][0, 0] for batch in model.batches] == [0.0, 2.0]


async def test_outputs_split_row_for_row(batcher_factory: Callable[..., DynamicBatcher]) -> None:
    model = FakeModel()
    batcher = batcher_factory(model, max_batch_size=64, max_delay_ms=20)
    sizes = [1, 3, 2, 5, 1, 4]
    starts = [100 * i for i in range(len(sizes))]
    answers = await asyncio.gather(
        *(batcher.submit(rows(start, n)) for start, n in zip(starts, sizes, strict=True))
    )
    assert model.sizes == [sum(sizes)]
    for answer, start, n in zip(answers, starts, sizes, strict=True):
        np.testing.assert_array_equal(answer.outputs["y"], rows(start, n)["x"])
        np.testing.assert_array_equal(answer.outputs["z"], rows(start, n)["x"] * 2)
        assert answer.batch_size == sum(sizes)


async def test_inference_error_answers_every_waiter(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    def broken(inputs: Tensors) -> Tensors:
        raise RuntimeError("CUDA out of memory")

    batcher = batcher_factory(broken, max_batch_size=4, max_delay_ms=20)
    results = await asyncio.gather(
        *(batcher.submit(rows(i, 1)) for i in range(4)), return_exceptions=True
    )
    assert all(isinstance(r, InferenceError) for r in results)
    assert len({id(r) for r in results}) == 1  # one error for the whole batch
    assert "CUDA out of memory" in str(results[0])
    assert isinstance(results[0], BaseException)
    assert isinstance(results[0].__cause__, RuntimeError)
    await batcher.drain()


async def test_wrong_row_count_fails_every_waiter(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    def short(inputs: Tensors) -> Tensors:
        return {"y": inputs["x"][:-1]}

    batcher = batcher_factory(short, max_batch_size=4, max_delay_ms=20)
    results = await asyncio.gather(
        *(batcher.submit(rows(i, 2)) for i in range(2)), return_exceptions=True
    )
    assert all(isinstance(r, InferenceError) for r in results)
    assert "'y' has 3 rows for a batch of 4 rows" in str(results[0])


async def test_queue_full(batcher_factory: Callable[..., DynamicBatcher]) -> None:
    model = FakeModel(gate=True)
    batcher = batcher_factory(
        model, max_batch_size=4, max_delay_ms=0, max_queue_rows=6, max_job_rows=4
    )
    running = asyncio.create_task(batcher.submit(rows(0, 4)))
    await wait_started(model)  # running rows no longer count as queued
    queued = [asyncio.create_task(batcher.submit(rows(10, 3))) for _ in range(2)]
    await asyncio.sleep(0)
    assert batcher.queued_rows == 6
    with pytest.raises(QueueFull, match="max_queue_rows=6"):
        await batcher.submit(rows(20, 1))
    model.open()
    await asyncio.gather(running, *queued)
    assert batcher.queued_rows == 0


async def test_too_large(batcher_factory: Callable[..., DynamicBatcher]) -> None:
    batcher = batcher_factory(FakeModel(), max_job_rows=8)
    with pytest.raises(TooLarge, match="9 rows") as info:
        await batcher.submit(rows(0, 9))
    assert info.value.code == "TOO_LARGE"


async def test_bad_job_inputs_are_rejected(batcher_factory: Callable[..., DynamicBatcher]) -> None:
    batcher = batcher_factory(FakeModel())
    with pytest.raises(InvalidInput, match="same number of rows"):
        await batcher.submit({"x": np.zeros((2, 2)), "w": np.zeros((3, 2))})
    with pytest.raises(InvalidInput, match="at least one row"):
        await batcher.submit({"x": np.zeros((0, 2))})


async def test_incompatible_shapes_are_not_mixed(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    model = FakeModel()
    batcher = batcher_factory(model, max_batch_size=64, max_delay_ms=20)
    jobs = [rows(0, 2, width=3), rows(10, 1, width=5), rows(20, 2, width=3)]
    jobs.append({"x": np.ones((1, 3), dtype=np.float64)})  # same shape, other dtype
    answers = await asyncio.gather(*(batcher.submit(job) for job in jobs))
    assert sorted((b["x"].shape, b["x"].dtype.str) for b in model.batches) == [
        ((1, 3), "<f8"),
        ((1, 5), "<f4"),
        ((4, 3), "<f4"),
    ]
    for answer, job in zip(answers, jobs, strict=True):
        np.testing.assert_array_equal(answer.outputs["y"], job["x"])


async def test_text_inputs_batch_as_object_arrays(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    def lengths(inputs: Tensors) -> Tensors:
        return {"n": np.array([len(t) for t in inputs["text"]])}

    batcher = batcher_factory(lengths, max_batch_size=8, max_delay_ms=20)
    texts = [np.array(["a", "bb"], dtype=object), np.array(["ccc"], dtype=object)]
    answers: list[BatchOutput] = await asyncio.gather(*(batcher.submit({"text": t}) for t in texts))
    assert [a.outputs["n"].tolist() for a in answers] == [[1, 2], [3]]
    assert answers[0].batch_size == 3


async def test_aclose_answers_pending_jobs(batcher_factory: Callable[..., DynamicBatcher]) -> None:
    model = FakeModel(gate=True)
    batcher = batcher_factory(model, max_batch_size=1, max_delay_ms=0)
    running = asyncio.create_task(batcher.submit(rows(0, 1)))
    await wait_started(model)
    queued = [asyncio.create_task(batcher.submit(rows(i, 1))) for i in range(1, 4)]
    await asyncio.sleep(0)
    closing = asyncio.create_task(batcher.aclose())
    await asyncio.sleep(0)  # aclose runs up to its first wait: closed to new jobs
    assert batcher.closed
    model.open()  # the running batch finishes and is answered normally
    await closing
    assert (await running).batch_size == 1
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert all(isinstance(r, BatcherClosed) and r.retriable for r in results)
    with pytest.raises(BatcherClosed):
        await batcher.submit(rows(9, 1))


async def test_cancelled_caller_leaves_the_queue(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    model = FakeModel(gate=True)
    batcher = batcher_factory(model, max_batch_size=1, max_delay_ms=0)
    running = asyncio.create_task(batcher.submit(rows(0, 1)))
    await wait_started(model)
    abandoned = asyncio.create_task(batcher.submit(rows(1, 1)))
    await asyncio.sleep(0)
    abandoned.cancel()
    await asyncio.gather(abandoned, return_exceptions=True)
    assert batcher.queued_rows == 0
    model.open()
    await running
    await batcher.drain()
    assert model.sizes == [1]


async def test_drain_waits_for_everything_queued(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    model = FakeModel()
    batcher = batcher_factory(model, max_batch_size=4, max_delay_ms=5, max_concurrent_batches=2)
    tasks = [asyncio.create_task(batcher.submit(rows(i, 1))) for i in range(10)]
    await asyncio.sleep(0)
    await batcher.drain()
    assert all(task.done() for task in tasks)
    assert sum(model.sizes) == 10


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size must be >= 1"),
        ({"max_delay_ms": -1}, "max_delay_ms must be >= 0"),
        ({"max_batch_size": 8, "preferred_batch_sizes": (16,)}, "outside 1..max_batch_size"),
        ({"max_job_rows": 100, "max_queue_rows": 10}, "must not exceed"),
    ],
)
def test_config_validation(config: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchConfig(**config)  # type: ignore[arg-type]


async def test_preferred_size_takes_the_largest_exact_prefix(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    model = FakeModel(gate=True)
    batcher = batcher_factory(
        model, max_batch_size=64, max_delay_ms=20, preferred_batch_sizes=(2, 4)
    )
    first = asyncio.create_task(batcher.submit(rows(0, 1)))
    await wait_started(model)  # hold the model while five more rows queue up
    queued = [asyncio.create_task(batcher.submit(rows(10 + i, 1))) for i in range(5)]
    await asyncio.sleep(0)
    model.open()
    answers = await asyncio.gather(first, *queued)
    assert model.sizes[1:] == [4, 1]  # 4 at once (preferred), the last one after the delay
    assert [a.batch_size for a in answers[1:]] == [4, 4, 4, 4, 1]


# -- submit_nowait: many jobs queued at once, awaited together --------------------------


async def test_submit_nowait_queues_without_waiting_and_answers_each_job(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    model = FakeModel()
    batcher = batcher_factory(model, max_batch_size=64, max_delay_ms=20)
    sizes = [2, 1, 3]
    futures = [batcher.submit_nowait(rows(100 * i, n)) for i, n in enumerate(sizes)]
    assert not any(future.done() for future in futures)
    assert batcher.queued_rows == sum(sizes) and model.batches == []
    answers = await asyncio.gather(*futures)
    assert model.sizes == [sum(sizes)]  # queued in one go: one batch
    for i, (answer, n) in enumerate(zip(answers, sizes, strict=True)):
        np.testing.assert_array_equal(answer.outputs["y"], rows(100 * i, n)["x"])
        assert answer.batch_size == sum(sizes)
    await batcher.drain()


async def test_submit_nowait_raises_at_admission(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    model = FakeModel()
    batcher = batcher_factory(model, max_job_rows=4)
    with pytest.raises(TooLarge, match="5 rows"):
        batcher.submit_nowait(rows(0, 5))
    with pytest.raises(Expired):
        batcher.submit_nowait(rows(0, 1), deadline=time.time() - 1)
    with pytest.raises(InvalidInput):
        batcher.submit_nowait({"x": np.zeros((0, 2))})
    assert batcher.queued_rows == 0 and model.batches == []


@pytest.mark.parametrize("busy", [False, True], ids=["idle-model", "busy-model"])
async def test_cancelled_submit_nowait_future_is_withdrawn(
    batcher_factory: Callable[..., DynamicBatcher], busy: bool
) -> None:
    """Cancelled before its batch ran (the model idle, or busy with an earlier batch):
    ``infer`` never sees the job's rows and the other jobs are answered."""
    model = FakeModel(gate=busy)
    batcher = batcher_factory(model, max_batch_size=64, max_delay_ms=5)
    running = batcher.submit_nowait(rows(0, 1)) if busy else None
    if busy:
        await wait_started(model)
    kept = batcher.submit_nowait(rows(10, 2))
    withdrawn = batcher.submit_nowait(rows(20, 3))
    last = batcher.submit_nowait(rows(30, 1))
    withdrawn.cancel()
    model.open()
    answers = await asyncio.gather(kept, last)
    await batcher.drain()
    seen = sorted(value for batch in model.batches for value in batch["x"][:, 0].tolist())
    assert seen == [*([0.0] if busy else []), 10.0, 11.0, 30.0]
    np.testing.assert_array_equal(answers[0].outputs["y"], rows(10, 2)["x"])
    np.testing.assert_array_equal(answers[1].outputs["y"], rows(30, 1)["x"])
    assert answers[0].batch_size == answers[1].batch_size == 3
    assert withdrawn.cancelled()
    if running is not None:
        assert (await running).batch_size == 1


async def test_cancelled_submit_nowait_frees_its_queue_rows(
    batcher_factory: Callable[..., DynamicBatcher],
) -> None:
    """Like a cancelled ``submit``: the withdrawn job's rows stop counting against
    max_queue_rows at once, not only when the busy model next takes a batch."""
    model = FakeModel(gate=True)
    batcher = batcher_factory(
        model, max_batch_size=4, max_delay_ms=0, max_queue_rows=4, max_job_rows=4
    )
    running = batcher.submit_nowait(rows(0, 1))
    await wait_started(model)
    withdrawn = batcher.submit_nowait(rows(10, 4))
    withdrawn.cancel()
    await asyncio.sleep(0)
    try:
        assert batcher.queued_rows == 0
        replacement = batcher.submit_nowait(rows(20, 4))  # QueueFull if still counted
    finally:
        model.open()
    assert (await replacement).batch_size == 4
    await running
    assert [batch["x"][0, 0] for batch in model.batches] == [0.0, 20.0]
