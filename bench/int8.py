"""The int8 rows: a model's int8 version (``maas models optimize``'s own code and
figures), raw and served by maas as the fp32 version was."""

from __future__ import annotations

import json
from pathlib import Path

from bench.measure import Measured, Setup, drain, measure_raw
from bench.workloads import Workload
from registry.registry import Registry


def int8_rows(name: str, workload: Workload, path: Path) -> Path:
    """Rows to measure the int8 version on: held-out digits with their labels, or the
    workload's texts."""
    if name == "digits":
        from workers.recipes.demo import digits_samples

        pixels, labels = digits_samples(450)  # the demo model's held-out rows, once each
        records = [{"x": p.tolist(), "label": int(y)} for p, y in zip(pixels, labels, strict=True)]
    else:
        records = [{"text": job["text"][0]} for job in workload.jobs[:500]]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


async def bench_int8(
    setup: Setup, workload: Workload, workdir: Path
) -> tuple[dict[str, Measured], dict[str, float]]:
    """Optimise version 1 to int8 (dynamic) and serve it as production, raw and through
    maas; then production is version 1 again."""
    from workers.optimize import Request, optimize

    name = setup.model
    with Registry.open(setup.registry) as opened:
        models = opened.models
        rows = int8_rows(name, workload, workdir / "int8-rows.jsonl")
        (workdir / "int8").mkdir()
        done = optimize(models, Request(name, 1, calibration=rows), workdir / "int8", actor="bench")
        models.promote(name, done.version.version, actor="bench", reason="bench: int8")
        raw = measure_raw(models, name, workload)
    # Served with the fp32 run's settings (``workload``): only the version differs.
    maas = await drain("maas", setup, workload)
    with Registry.open(setup.registry) as opened:
        opened.models.promote(name, 1, actor="bench", reason="bench: back to fp32")
    return {"raw-int8": raw, "maas-int8": maas}, done.version.metrics


def int8_note(metrics: dict[str, float], batch_size: int) -> str:
    """The raw-int8 row's note: how the int8 version compares with its parent."""
    from workers.optimize import from_metrics
    from workers.optimize.report import quality

    comparison = from_metrics(metrics)
    assert comparison is not None
    return f"batch {batch_size}; {quality(comparison.quality)}; size {comparison.size_ratio:.2f}x"
