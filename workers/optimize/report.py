"""A comparison in words: for the promotion reason, the CLI and ``maas models show``.

``from_metrics`` reads back what :meth:`Comparison.metrics` stored with a version, so
the registry needs no schema of its own for the figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workers.optimize.measure import Comparison, Quality, Speed


def summary(comparison: Comparison) -> str:
    """One line: quality, size and speed of the candidate against its parent."""
    return f"on {comparison.rows} rows, {quality(comparison.quality)}; {size(comparison)}; {speed(comparison)}"


def size(c: Comparison) -> str:
    return f"size {_bytes(c.candidate_bytes)} vs {_bytes(c.parent_bytes)} ({c.size_ratio:.2f}x)"


def speed(c: Comparison) -> str:
    return (
        f"{rate(c.candidate.rows_per_s)} vs {rate(c.parent.rows_per_s)} rows/s at batch "
        f"{c.candidate.batch_size} vs {c.parent.batch_size} ({c.speedup:.2f}x)"
    )


def quality(q: Quality) -> str:
    if q.metric == "accuracy":
        return (
            f"accuracy {q.accuracy:.4f} vs {q.parent_accuracy:.4f} (drop {q.drop:.4f}), "
            f"labels agree on {q.agreement:.2%}"
        )
    if q.metric == "agreement":
        return f"labels agree with the parent's on {q.agreement:.2%} (drop {q.drop:.4f})"
    return (
        f"cosine similarity to the parent's outputs mean {q.cosine_mean:.4f}, "
        f"worst {q.cosine_min:.4f} (drop {q.drop:.4f})"
    )


def from_metrics(metrics: Mapping[str, Any]) -> Comparison | None:
    """The comparison stored in a version's metrics, or None for a version without one."""
    try:
        return Comparison(
            quality=_stored_quality(metrics),
            parent=Speed(float(metrics["parent_rows_per_s"]), int(metrics["parent_batch_size"])),
            candidate=Speed(float(metrics["rows_per_s"]), int(metrics["batch_size"])),
            parent_bytes=int(metrics["parent_size_bytes"]),
            candidate_bytes=int(metrics["size_bytes"]),
            rows=int(metrics["eval_rows"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _stored_quality(metrics: Mapping[str, Any]) -> Quality:
    fields = ("agreement", "accuracy", "parent_accuracy", "cosine_mean", "cosine_min")
    known = {name: float(metrics[name]) for name in fields if name in metrics}
    if "accuracy" in known:
        metric = "accuracy"
    elif "agreement" in known:
        metric = "agreement"
    else:
        metric = "cosine"
    return Quality(metric, float(metrics["quality_drop"]), **known)


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def rate(rows_per_s: float) -> str:
    """Rows/s to three significant figures: 1.82M, 35.5k, 812, 61.8."""
    for scale, unit in ((1e6, "M"), (1e3, "k")):
        if rows_per_s >= scale:
            return f"{rows_per_s / scale:.3g}{unit}"
    return f"{rows_per_s:.3g}"
