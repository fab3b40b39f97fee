"""A version's reference profile, made from rows: the trainer's training split, a data
file (``maas models baseline NAME VERSION --data FILE``) or captured traffic.

The version's artifact is checked against its sha256 and run on the rows, so the profile
holds its outputs (predicted classes, confidences, scores) beside the inputs. Rows are
bounded by ``limit``: a profile summarises; it never needs the whole data set.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from numpy.typing import NDArray

from producer.contract.messages import DecodeError, decode_capture
from producer.contract.tenancy import monitor_topic_pattern
from producer.kafka import KafkaSettings, detect_capabilities
from registry.artifacts import ArtifactStore
from registry.drift import Reference
from registry.entities import ModelVersion
from workers.drift.profile import ReferenceProfile, build_profile
from workers.errors import WorkerError
from workers.optimize.rows import from_file
from workers.runtime.loader import RuntimeSettings, load_runtime

DEFAULT_ROWS = 10_000
BATCH = 512


def profile_of_rows(
    version: ModelVersion, inputs: Mapping[str, NDArray[np.generic]], source: str
) -> ReferenceProfile:
    """Run ``version`` on ``inputs`` (validated arrays, rows first) and profile both."""
    ArtifactStore.verify(version.path, version.sha256)
    runtime = load_runtime(version.path, version.format, version.signature, RuntimeSettings())
    try:
        rows = len(next(iter(inputs.values()))) if inputs else 0
        parts = [
            runtime.infer({k: v[start : start + BATCH] for k, v in inputs.items()})
            for start in range(0, rows, BATCH)
        ]
    finally:
        runtime.close()
    outputs = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    return build_profile(inputs, outputs, source=source)


def profile_of_file(
    version: ModelVersion, path: Path, limit: int = DEFAULT_ROWS
) -> ReferenceProfile:
    """The profile of the first ``limit`` rows of ``path`` (JSONL, CSV or Parquet, read as
    ``maas score`` reads them) and of what ``version`` answers for them."""
    rows = from_file(path, version.signature, limit=limit)
    return profile_of_rows(version, rows.inputs, f"data {path.name}")


def reference(version: ModelVersion, profile: ReferenceProfile, actor: str) -> Reference:
    """What the registry stores for ``profile`` of ``version``."""
    return Reference(
        version.model,
        version.version,
        profile.rows,
        profile.source,
        profile.encode().decode(),
        actor,
        version.created_at,
    )


async def captured_rows(
    kafka: KafkaSettings, model: str, version: int, limit: int
) -> tuple[dict[str, NDArray[np.generic]], dict[str, NDArray[np.generic]]]:
    """The inputs and outputs of ``version``'s last ``limit`` captured rows (answered ok,
    inputs captured whole), from every tenant's capture topic as far as they reach now.
    Memory is bounded by ``limit``: older rows are let go as newer ones come."""
    pattern = re.compile(monitor_topic_pattern(kafka.topics.prefix))
    capabilities = await detect_capabilities(kafka)
    consumer = AIOKafkaConsumer(**kafka.consumer(capabilities, None, enable_auto_commit=False))
    await consumer.start()
    rows: deque[tuple[dict[str, Any], dict[str, Any]]] = deque(maxlen=limit)
    try:
        topics = [t for t in await consumer.topics() if pattern.match(t) and t.endswith("capture")]
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        if not partitions:
            return {}, {}
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    rows.extend(_rows_of(record.value or b"", model, version))
    finally:
        await consumer.stop()
    return _stack([r[0] for r in rows]), _stack([r[1] for r in rows])


def _rows_of(value: bytes, model: str, version: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """One (inputs, outputs) pair per row of a capture of ``model`` ``version``."""
    try:
        capture = decode_capture(value)
    except DecodeError:
        return []
    if (capture.model, capture.version, capture.status) != (model, version, "ok"):
        return []
    if not capture.inputs or not capture.outputs:
        return []
    count = min(len(v) for v in (*capture.inputs.values(), *capture.outputs.values()))
    return [
        (
            {name: values[i] for name, values in capture.inputs.items()},
            {name: values[i] for name, values in capture.outputs.items()},
        )
        for i in range(count)
    ]


def _stack(rows: list[dict[str, Any]]) -> dict[str, NDArray[np.generic]]:
    if not rows:
        return {}
    names = [name for name in rows[0] if all(name in row for row in rows)]
    stacked = {}
    for name in names:
        try:
            stacked[name] = np.asarray([row[name] for row in rows])
        except ValueError:  # rows of different shapes: not profiled
            continue
    return stacked


def profile_of_capture(kafka: KafkaSettings, version: ModelVersion, limit: int) -> ReferenceProfile:
    """The profile of ``version``'s last ``limit`` captured rows (inputs captured whole:
    a version whose capture policy drops or hashes inputs has none to profile)."""
    inputs, outputs = asyncio.run(captured_rows(kafka, version.model, version.version, limit))
    if not inputs:
        raise BaselineError(
            f"no captured rows of {version.model} version {version.version} with their inputs: "
            f"capture them whole first (maas models monitor {version.model} --capture-rate 1 "
            "--capture-inputs full) and let it serve"
        )
    return build_profile(inputs, outputs, source="capture")


class BaselineError(WorkerError):
    """No rows to make a reference profile of; the message says how to get some."""
