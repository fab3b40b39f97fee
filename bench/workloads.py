"""The benchmark's models and the jobs it sends them: one row each."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_TEXT = (
    "the service answers every job exactly once even when a worker dies mid batch "
    "kafka keeps the queue durable while models are swapped without a restart"
)


@dataclass
class Workload:
    name: str
    jobs: list[dict[str, list[Any]]]  # one row each
    saturation_jobs: int
    naive_jobs: int
    max_delay_ms: float
    # Worker processes for maas. A small model is CPU-bound in Python (decode, encode,
    # Kafka) and scales with processes; a transformer's runtime uses every core already.
    processes: int = 1
    max_batch_size: int = 0  # set to the bare runtime's best batch size before maas runs


def digits_workload(n: int) -> Workload:
    from workers.recipes.demo import digits_samples

    pixels, _ = digits_samples(min(n, 400))
    rows = [{"x": [pixels[i % len(pixels)].tolist()]} for i in range(n)]
    # The per-message loop drains a backlog as large as maas's: at librdkafka's pace a
    # smaller one is over before its rate settles.
    return Workload("digits", rows, n, n, max_delay_ms=2.0, processes=os.cpu_count() or 1)


def minilm_workload(n: int) -> Workload:
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(_TEXT.split(), size=int(rng.integers(4, 40)))) for _ in range(n)]
    return Workload("minilm", [{"text": [t]} for t in texts], n, min(n, 600), max_delay_ms=10.0)


def build_artifact(name: str, workdir: Path) -> Path:
    if name == "digits":
        from workers.recipes.demo import build_digits_model

        return build_digits_model(workdir).artifact
    from workers.recipes.minilm import export_minilm

    return export_minilm(workdir / "minilm")


WORKLOADS = {"digits": digits_workload, "minilm": minilm_workload}
