"""Unknown model names beside valid jobs, through the worker's handler and a real
SQLite registry (issue 28, item 7): polls of ``--unknown-per-poll`` jobs naming
distinct unregistered models plus ``--valid-per-poll`` jobs for a registered one.
Prints how long each poll took to answer (what the valid jobs in it waited) and how
many registry queries were made.

    python -m bench.unknown_models [--unknown 20000] [--unknown-per-poll 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from producer.contract.messages import decode_predict
from registry import Registry, RegistrySettings
from registry.drafts import Draft
from tests.registry_fixtures import build_onnx
from workers.batching.batcher import BatchConfig
from workers.runtime.loader import RuntimeSettings
from workers.serving.handler import JobHandler
from workers.serving.metrics import MetricsRecorder
from workers.serving.models import ModelCache


def _count(store: Any, counted: Counter[str]) -> None:
    for name in ("resolve", "get_version", "model_names"):
        real = getattr(store, name, None)
        if real is None:
            continue

        def call(*args: Any, _real: Any = real, _name: str = name) -> Any:
            counted[_name] += 1
            return _real(*args)

        setattr(store, name, call)


async def run(unknown: int, per_poll: int, valid: int) -> None:
    root = Path(tempfile.mkdtemp())
    settings = RegistrySettings(
        database_url=f"sqlite:///{root / 'r.db'}", artifact_dir=root / "artifacts"
    )
    with Registry.open(settings) as registry:
        model = build_onnx(root / "m" / "model.onnx")
        registry.models.register("digits", Draft(model, promote=True), actor="bench")
        counted: Counter[str] = Counter()
        _count(registry.models, counted)
        cache = ModelCache(registry.models, runtime=RuntimeSettings(), batch=BatchConfig())
        handler = JobHandler(cache, MetricsRecorder(lambda w: None, worker="b"), worker="b")
        x = {"x": [[0.1, 0.2, 0.3, 0.4]]}

        def job(job_id: str, name: str) -> Any:
            return decode_predict(orjson.dumps({"job_id": job_id, "model": name, "inputs": x}))

        waits, started = [], time.perf_counter()
        for first in range(0, unknown, per_poll):
            jobs = [job(f"u{i}", f"typo-{i}") for i in range(first, first + per_poll)]
            jobs += [job(f"v{first}-{i}", "digits") for i in range(valid)]
            began = time.perf_counter()
            await handler.answer_many(jobs, time.time())
            waits.append(time.perf_counter() - began)
        await cache.aclose()
    waits.sort()
    print(
        f"{unknown} unknown names in polls of {per_poll} (+{valid} valid each): "
        f"total {time.perf_counter() - started:.1f} s; a poll's answers (its valid jobs) "
        f"p50 {statistics.median(waits) * 1000:.0f} ms, max {waits[-1] * 1000:.0f} ms; "
        f"registry queries {dict(counted)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unknown", type=int, default=20_000)
    parser.add_argument("--unknown-per-poll", type=int, default=1000)
    parser.add_argument("--valid-per-poll", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.unknown, args.unknown_per_poll, args.valid_per_poll))


if __name__ == "__main__":
    main()
