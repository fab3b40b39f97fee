"""The sync and asyncio SDKs against the real broker and a real worker."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import pytest

from producer import AsyncClient, Client, JobTimeout, Result, ServiceError
from producer.kafka import KafkaSettings, Topics
from workers.recipes.demo import digits_samples

if TYPE_CHECKING:
    from tests.kafka_helpers import Broker
    from tests.serving_fixtures import ServedDigits

pytestmark = pytest.mark.both_brokers


def test_predict_returns_the_models_outputs_and_version(served_digits: ServedDigits) -> None:
    pixels, _ = digits_samples(4)
    with Client(served_digits.kafka, timeout_s=30) as client:
        result = client.predict("digits", {"x": pixels.tolist()}, metadata={"trace": "t1"})
    assert result.ok and result.version == served_digits.version
    assert result.metadata == {"trace": "t1"}
    assert result.outputs is not None
    direct = ort.InferenceSession(str(served_digits.artifact)).run(None, {"x": pixels})
    np.testing.assert_allclose(result.outputs["probabilities"], direct[0], rtol=1e-5, atol=1e-6)
    assert result.outputs["label"] == direct[1].tolist()


@pytest.mark.parametrize(
    ("model", "inputs", "code"),
    [
        ("nope", {"x": [[0.0] * 64]}, "MODEL_NOT_FOUND"),
        ("digits", {"x": [[0.0] * 63]}, "INVALID_INPUT"),
    ],
)
def test_error_results_raise_service_error_with_the_code(
    served_digits: ServedDigits, model: str, inputs: dict[str, list[object]], code: str
) -> None:
    with Client(served_digits.kafka) as client, pytest.raises(ServiceError) as caught:
        client.predict(model, inputs)
    assert caught.value.code == code
    assert caught.value.result is not None and caught.value.result.status == "error"


def test_submit_returns_a_handle_and_version_pins(served_digits: ServedDigits) -> None:
    pixels, _ = digits_samples(1)
    with Client(served_digits.kafka) as client:
        handle = client.submit("digits", {"x": pixels.tolist()}, version=99, job_id="pin-99")
        reply = handle.result(30)
    assert handle.job_id == reply.job_id == "pin-99"
    assert reply.error is not None and reply.error.code == "VERSION_NOT_FOUND"


def test_many_concurrent_jobs_are_all_answered_and_matched(served_digits: ServedDigits) -> None:
    pixels, _ = digits_samples(200)
    jobs = [(f"many-{i}", {"x": [row.tolist()]}) for i, row in enumerate(pixels)]
    with Client(served_digits.kafka) as client:
        replies = {r.job_id: r for r in client.submit_many(jobs, "digits", max_in_flight=64)}
    assert set(replies) == {job_id for job_id, _ in jobs}
    direct = ort.InferenceSession(str(served_digits.artifact)).run(None, {"x": pixels})[1]
    outputs = [replies[f"many-{i}"] for i in range(200)]
    labels = [r.outputs["label"][0] for r in outputs if isinstance(r, Result) and r.outputs]
    assert labels == direct.tolist()


async def test_async_client_predicts(served_digits: ServedDigits) -> None:
    pixels, _ = digits_samples(2)
    async with AsyncClient(served_digits.kafka) as client:
        result = await client.predict("digits", {"x": pixels.tolist()})
        with pytest.raises(ServiceError) as caught:
            await client.predict("nope", {"x": pixels.tolist()})
    assert result.version == served_digits.version
    assert caught.value.code == "MODEL_NOT_FOUND"


def test_no_worker_means_a_quick_helpful_timeout(broker: Broker) -> None:
    lonely = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, topics=Topics(f"n{uuid.uuid4().hex[:8]}.")
    )
    with Client(lonely, timeout_s=0.5) as client:
        started = time.monotonic()
        with pytest.raises(JobTimeout) as caught:
            client.predict("digits", {"x": [[0.0] * 64]}, job_id="lost")
        assert time.monotonic() - started < 3
        with pytest.raises(JobTimeout):
            list(client.submit_many([("a", {"x": [[0.0] * 64]})], "digits"))
    assert "lost" in str(caught.value) and "maas worker" in str(caught.value)
