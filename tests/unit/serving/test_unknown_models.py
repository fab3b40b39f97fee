"""Unknown model names are cheap (issue 28, item 7; workers/serving/unknown.py): a flood
of jobs naming distinct unregistered models is answered MODEL_NOT_FOUND without a
registry lookup per job, while the valid jobs beside them are answered; the names
remembered as unknown are bounded per tenant, and a model registered after a miss is
served."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from producer.contract.messages import PredictJob, decode_predict
from registry.drafts import Draft
from registry.entities import ModelVersion
from registry.registry import Registry
from tests.kafka_helpers import job
from workers.batching.batcher import BatchConfig
from workers.runtime.loader import RuntimeSettings
from workers.serving.handler import JobHandler
from workers.serving.metrics import MetricsRecorder
from workers.serving.models import ModelCache
from workers.serving.unknown import UnknownNames

FLOOD = 20_000
POLL = 1000  # jobs per poll, as the loop hands them to the handler


@pytest.fixture
def queries(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """The registry's model store's calls, counted by method."""
    counted: Counter[str] = Counter()
    for name in ("resolve", "get_version", "model_names"):
        real = getattr(registry.models, name)

        def call(*args: Any, _real: Any = real, _name: str = name) -> Any:
            counted[_name] += 1
            return _real(*args)

        monkeypatch.setattr(registry.models, name, call)
    return counted


@pytest.fixture
def tiny(make_onnx: Any) -> Path:
    """A small ONNX model (x: 4 features), quicker to build than digits."""
    path: Path = make_onnx()
    return path


@pytest.fixture
def served(registry: Registry, tiny: Path) -> ModelVersion:
    return registry.models.register("digits", Draft(tiny, promote=True), actor="test")


@pytest.fixture
async def models(registry: Registry, served: ModelVersion) -> AsyncIterator[ModelCache]:
    cache = ModelCache(
        registry.models, runtime=RuntimeSettings(), batch=BatchConfig(max_delay_ms=2)
    )
    yield cache
    await cache.aclose()


@pytest.fixture
def handler(models: ModelCache) -> JobHandler:
    return JobHandler(models, MetricsRecorder(lambda windows: None, worker="t"), worker="t")


def predict(job_id: str, model: str, **fields: Any) -> PredictJob:
    return decode_predict(job(job_id, {"x": [[0.1, 0.2, 0.3, 0.4]]}, model=model, **fields))


async def test_a_flood_of_unknown_names_costs_no_lookup_each_and_valid_jobs_are_answered(
    handler: JobHandler, models: ModelCache, queries: Counter[str]
) -> None:
    codes: Counter[str] = Counter()
    polls = 0
    for first in range(0, FLOOD, POLL):
        jobs = [predict(f"u-{i}", f"typo-{i}") for i in range(first, first + POLL)]
        jobs += [predict(f"v-{first}-{i}", "digits") for i in range(10)]  # valid, beside them
        for outcome in await handler.answer_many(jobs, time.time(), tenant="acme"):
            assert not hasattr(outcome, "job"), outcome  # a Result, never a Retry
            codes[outcome.error.code if outcome.error else "ok"] += 1  # type: ignore[union-attr]
        polls += 1

    assert codes == {"MODEL_NOT_FOUND": FLOOD, "ok": polls * 10}
    # No lookup per unknown name: one read of the names per poll at most, and the
    # valid model's alias looked up at most once per poll (cached for alias_ttl_s).
    assert queries["model_names"] <= polls
    assert queries["resolve"] <= polls
    assert queries["get_version"] == 0
    assert models.unknown.count("acme") == 1024  # remembered, bounded
    assert models.unknown.count(None) == 0  # another tenant's share untouched


async def test_a_name_asked_again_is_answered_from_memory(
    handler: JobHandler, queries: Counter[str]
) -> None:
    first = await handler.answer(predict("a", "nope"), time.time())
    reads = queries["model_names"]
    again = await handler.answer(predict("b", "nope", version=3), time.time())
    for outcome in (first, again):
        assert outcome.error is not None  # type: ignore[union-attr]
        assert outcome.error.code == "MODEL_NOT_FOUND"  # type: ignore[union-attr]
        assert "maas models list" in outcome.error.message  # type: ignore[union-attr]
    assert queries["model_names"] == reads  # no read, no lookup
    assert queries["resolve"] == queries["get_version"] == 0


async def test_a_model_registered_after_a_miss_is_served(
    handler: JobHandler,
    models: ModelCache,
    registry: Registry,
    tiny: Path,
) -> None:
    missed = await handler.answer(predict("a", "late"), time.time())
    assert missed.error is not None and missed.error.code == "MODEL_NOT_FOUND"  # type: ignore[union-attr]

    registry.models.register("late", Draft(tiny, promote=True), actor="test")
    models.invalidate("late")  # the control event `maas models register` publishes
    served = await handler.answer(predict("b", "late"), time.time())
    assert served.error is None, served.error  # type: ignore[union-attr]


async def test_a_model_registered_without_an_event_is_found_by_the_next_read(
    handler: JobHandler, registry: Registry, tiny: Path
) -> None:
    await handler.answer(predict("a", "quiet"), time.time())  # not remembered for acme
    registry.models.register("quiet", Draft(tiny, promote=True), actor="test")
    await asyncio.sleep(0.3)  # past the names' min_refresh_s
    # The default tenant remembers the miss (for ttl_s); acme asks a fresh read.
    [served] = await handler.answer_many([predict("b", "quiet")], time.time(), tenant="acme")
    assert served.error is None, served.error  # type: ignore[union-attr]


def test_unknown_names_are_bounded_per_tenant_expire_and_are_forgotten() -> None:
    unknown = UnknownNames(per_tenant=3, ttl_s=60.0)
    for i in range(10):
        unknown.add("noisy", f"typo-{i}")
    unknown.add(None, "typo-0")
    assert unknown.count("noisy") == 3  # the least recently asked dropped first
    assert ("noisy", "typo-9") in unknown and ("noisy", "typo-0") not in unknown
    assert (None, "typo-0") in unknown  # one tenant's flood never evicts another's
    unknown.forget("typo-0")
    assert (None, "typo-0") not in unknown

    expired = UnknownNames(ttl_s=0.0)
    expired.add(None, "gone")
    time.sleep(0.01)
    assert (None, "gone") not in expired
    assert expired.count(None) == 0
