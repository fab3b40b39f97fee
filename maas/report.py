"""``maas models report``: one self-contained HTML file about a model's answers.

Plots (drawn with matplotlib, embedded as inline SVG: the file fetches nothing) of,
per version over time: labelled accuracy and macro F1, volume (jobs served and rows
labelled), label delay p50/p95 and inference latency p50/p95; promotions and rollbacks
are marked on every time axis. Drift, when the monitor measured it: the share of input
features that drifted, the prediction's drift and the accuracy estimated from
confidences over time, and for the most drifted features of the latest window the
reference's distribution beside the window's. The data is the registry's: quality and
drift windows (the monitor's), metric windows (the workers'), reference profiles and the
alias history.
"""

from __future__ import annotations

import html
import io
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from registry.drift import DriftWindow
from registry.entities import AliasMove, MetricWindow
from registry.labelled import QualityWindow
from workers.drift.profile import OTHER, CategoricalProfile, NumericProfile, ReferenceProfile


@dataclass(frozen=True, slots=True)
class ReportData:
    """What a report shows: a model's windows and the moves of its aliases."""

    model: str
    quality: Sequence[QualityWindow]
    metrics: Sequence[MetricWindow]
    moves: Sequence[AliasMove]
    drift: Sequence[DriftWindow] = ()
    references: Mapping[int, ReferenceProfile] = field(default_factory=dict)


Series = dict[int, tuple[list[datetime], list[float]]]  # version → (times, values)


def render(data: ReportData) -> str:
    """The report as one HTML document."""
    figures = [
        ("Labelled accuracy", _quality_series(data.quality, lambda w: w.accuracy), "accuracy"),
        ("Labelled macro F1", _quality_series(data.quality, _f1), "macro F1"),
        ("Volume: jobs served", _metric_series(data.metrics, lambda w: float(w.jobs)), "jobs"),
        ("Volume: rows labelled", _quality_series(data.quality, lambda w: float(w.rows)), "rows"),
        (
            "Label delay p50",
            _quality_series(data.quality, lambda w: _seconds(w.delay_ms(0.5))),
            "seconds",
        ),
        (
            "Label delay p95",
            _quality_series(data.quality, lambda w: _seconds(w.delay_ms(0.95))),
            "seconds",
        ),
        ("Inference latency p50", _metric_series(data.metrics, lambda w: w.infer_ms_p50), "ms"),
        ("Inference latency p95", _metric_series(data.metrics, lambda w: w.infer_ms_p95), "ms"),
    ]
    if data.drift:
        figures += [
            ("Input drift: share of features drifted", _drift_series(data.drift, _share), "share"),
            (
                "Prediction drift (Jensen-Shannon distance)",
                _drift_series(data.drift, lambda w: w.prediction_drift),
                "distance",
            ),
            (
                "Accuracy estimated from confidences (no labels)",
                _drift_series(data.drift, lambda w: w.estimated_accuracy),
                "accuracy",
            ),
        ]
    sections = [
        f'<section class="plot"><h2>{html.escape(title)}</h2>{_plot(series, unit, data.moves)}</section>'
        for title, series, unit in figures
    ]
    sections += _most_drifted(data)
    return _PAGE.format(
        model=html.escape(data.model),
        summary=_summary(data),
        sections="\n".join(sections),
        moves=_moves_table(data.moves),
    )


def _f1(window: QualityWindow) -> float | None:
    macro = window.macro()
    return None if macro is None else macro[2]


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000


class _Windowed(Protocol):
    @property
    def version(self) -> int: ...
    @property
    def start(self) -> datetime: ...


W = TypeVar("W", bound=_Windowed)


def _series(windows: Sequence[W], value: Callable[[W], float | None]) -> Series:
    """Per version, the windows' start times and values (windows without one left out)."""
    series: Series = {}
    for w in sorted(windows, key=lambda w: (w.version, w.start)):
        v = value(w)
        if v is not None:
            times, values = series.setdefault(w.version, ([], []))
            times.append(w.start)
            values.append(v)
    return series


def _quality_series(
    windows: Sequence[QualityWindow], value: Callable[[QualityWindow], float | None]
) -> Series:
    return _series(windows, value)


def _metric_series(
    windows: Sequence[MetricWindow], value: Callable[[MetricWindow], float]
) -> Series:
    return _series(windows, value)


def _plot(series: Series, unit: str, moves: Sequence[AliasMove]) -> str:
    """One plot as inline SVG (or a line saying there is nothing to plot)."""
    if not series:
        return '<p class="empty">nothing recorded yet</p>'
    import matplotlib

    matplotlib.use("svg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 2.8))
    try:
        for version, (times, values) in sorted(series.items()):
            axes.plot(
                [_days(t) for t in times], values, marker="o", markersize=3, label=f"v{version}"
            )
        for move in moves:
            color = "tab:red" if move.kind == "rollback" else "tab:green"
            at = _days(move.at)
            axes.axvline(at, color=color, linestyle="--", linewidth=1)
            axes.annotate(
                f"{move.kind} v{move.version}",
                (at, 1),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                color=color,
                rotation=90,
                va="top",
            )
        axes.xaxis_date()
        axes.set_ylabel(unit)
        axes.legend(loc="best", fontsize=7)
        figure.autofmt_xdate()
        figure.tight_layout()
        out = io.StringIO()
        figure.savefig(out, format="svg")
    finally:
        plt.close(figure)
    svg = out.getvalue()
    return svg[svg.index("<svg") :]  # without the XML prolog and DOCTYPE


def _share(window: DriftWindow) -> float:
    return window.share_drifted


def _drift_series(
    windows: Sequence[DriftWindow], value: Callable[[DriftWindow], float | None]
) -> Series:
    return _series(windows, value)


def _most_drifted(data: ReportData, count: int = 3) -> list[str]:
    """Sections comparing the reference with the latest window, for its most drifted
    features (those its version's reference profiles)."""
    if not data.drift:
        return []
    latest = max(data.drift, key=lambda w: w.start)
    reference = data.references.get(latest.version)
    if reference is None:
        return []
    profiles = {**reference.inputs, **reference.outputs}
    drifted = sorted(
        (
            (name, stats)
            for name, stats in latest.features.items()
            if stats.get("drifted") and name in profiles and stats.get("shares")
        ),
        key=lambda item: float(item[1].get("score", 0.0)),
        reverse=True,
    )[:count]
    sections = []
    for name, stats in drifted:
        labels, expected = _bins(profiles[name])
        title = (
            f"{name}: reference (v{latest.version}) and the window of "
            f"{latest.start:%Y-%m-%d %H:%M} (score {float(stats['score']):.3f})"
        )
        sections.append(
            f'<section class="plot"><h2>{html.escape(title)}</h2>'
            f"{_bars(labels, expected, list(stats['shares']))}</section>"
        )
    return sections


def _bins(profile: NumericProfile | CategoricalProfile) -> tuple[list[str], list[float]]:
    """A profile's bins (or categories) as labels, with the reference's share of each."""
    if isinstance(profile, CategoricalProfile):
        labels = list(profile.frequencies)
        shares = list(profile.frequencies.values())
        if OTHER not in profile.frequencies:
            labels.append(OTHER)
            shares.append(0.0)
        return labels, shares
    edges = profile.edges
    labels = [f"<= {edges[0]:g}"] if edges else ["all"]
    labels += [f"{low:g}-{high:g}" for low, high in itertools.pairwise(edges)]
    labels += [f"> {edges[-1]:g}"] if edges else []
    return labels, list(profile.fractions)


def _bars(labels: list[str], reference: list[float], window: list[float]) -> str:
    """Reference and window shares side by side, as inline SVG."""
    import matplotlib

    matplotlib.use("svg")
    from matplotlib import pyplot as plt

    size = min(len(labels), len(reference), len(window))
    figure, axes = plt.subplots(figsize=(8, 2.8))
    try:
        positions = range(size)
        axes.bar([p - 0.2 for p in positions], reference[:size], width=0.4, label="reference")
        axes.bar([p + 0.2 for p in positions], window[:size], width=0.4, label="window")
        axes.set_xticks(list(positions), labels[:size], rotation=30, fontsize=7)
        axes.set_ylabel("share of rows")
        axes.legend(loc="best", fontsize=7)
        figure.tight_layout()
        out = io.StringIO()
        figure.savefig(out, format="svg")
    finally:
        plt.close(figure)
    svg = out.getvalue()
    return svg[svg.index("<svg") :]


def _days(moment: datetime) -> float:
    """``moment`` as matplotlib's dates are: days since its epoch, 1970-01-01 UTC."""
    return moment.timestamp() / 86400


def _summary(data: ReportData) -> str:
    rows = []
    for version in sorted({w.version for w in data.quality}):
        mine = [w for w in data.quality if w.version == version]
        total = mine[0]
        for w in mine[1:]:
            total = total.plus(_restart(w, total))
        accuracy = total.accuracy
        rows.append(
            f"<tr><td>v{version}</td><td>{total.rows}</td>"
            f"<td>{'-' if accuracy is None else f'{accuracy:.4f}'}</td></tr>"
        )
    if not rows:
        return "<p>No labelled rows yet: run <code>maas monitor</code> and send feedback.</p>"
    return (
        "<table><tr><th>version</th><th>labelled rows</th><th>accuracy</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _restart(window: QualityWindow, like: QualityWindow) -> QualityWindow:
    """``window``'s sums under ``like``'s key, so that windows of a version add up."""
    return QualityWindow(
        like.model,
        like.version,
        like.start,
        like.window_s,
        window.kind,
        rows=window.rows,
        correct=window.correct,
        abs_error=window.abs_error,
        squared_error=window.squared_error,
        confusion=window.confusion,
        delays=window.delays,
    )


def _moves_table(moves: Sequence[AliasMove]) -> str:
    if not moves:
        return "<p>No alias has moved yet.</p>"
    rows = "".join(
        f"<tr><td>{m.at:%Y-%m-%d %H:%M:%S}</td><td>{html.escape(m.alias)}</td>"
        f"<td>{m.kind}{' (automatic)' if m.automatic else ''}</td>"
        f"<td>{m.previous_version or '-'}</td><td>{m.version}</td>"
        f"<td>{html.escape(m.reason)}</td></tr>"
        for m in moves
    )
    return (
        "<table><tr><th>at</th><th>alias</th><th>kind</th><th>from</th><th>to</th>"
        f"<th>reason</th></tr>{rows}</table>"
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>maas report: {model}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }}
section.plot svg {{ max-width: 100%; height: auto; }}
</style></head>
<body>
<h1>{model}: are the answers right?</h1>
{summary}
{sections}
<h2>Promotions and rollbacks</h2>
{moves}
<script>
// Counts the plots the browser drew (tests read it from the DOM).
document.body.dataset.plotsRendered = Array.from(document.querySelectorAll("section.plot svg"))
  .filter(function (svg) {{ var box = svg.getBBox(); return box.width > 0 && box.height > 0; }})
  .length;
</script>
</body></html>
"""
