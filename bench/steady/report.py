"""The steady section's table and targets (issue #25): what was measured, what was met."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

ADDED_P50_MS = 10.0  # p50 <= max_delay_ms + this at every rate up to the drain share
OVER_DRAIN_AT_1000 = 3.0  # CPU/job at 1,000/s within this many times the drain's
MS_PER_JOB_AT_200 = 0.5


def _run(section: dict[str, Any], path: str, rate: float) -> dict[str, Any] | None:
    return next((r for r in section["runs"] if r["path"] == path and r["rate"] == rate), None)


def targets(section: dict[str, Any]) -> list[tuple[str, bool]]:
    """Each target whose runs were measured: what, and whether met (maas's runs)."""
    met: list[tuple[str, bool]] = []
    ceiling, goal = section["share_rate"], section["max_delay_ms"] + ADDED_P50_MS
    for run in section["runs"]:
        if run["path"] == "maas" and ceiling and run["rate"] <= ceiling:
            ok = run["bounded"] and run["p50_ms"] <= goal
            met.append(
                (f"{run['rate']:g}/s: lag bounded, p50 {run['p50_ms']:.1f} <= {goal:g} ms", ok)
            )
    drain, at_1000 = section["drain"], _run(section, "maas", 1000)
    if drain and at_1000 and "cpu_us_per_job" in drain["extra"]:
        limit = OVER_DRAIN_AT_1000 * drain["extra"]["cpu_us_per_job"] / 1000
        cpu = at_1000["worker_ms_per_job"]
        met.append(
            (f"1000/s: worker {cpu:.3f} ms/job <= 3 x the drain's = {limit:.3f}", cpu <= limit)
        )
    at_200, loop_200 = _run(section, "maas", 200), _run(section, "loop", 200)
    if at_200:
        cpu = at_200["worker_ms_per_job"]
        met.append(
            (f"200/s: worker {cpu:.3f} ms/job <= {MS_PER_JOB_AT_200}", cpu <= MS_PER_JOB_AT_200)
        )
    if at_200 and loop_200:
        ours, theirs = at_200["broker_ms_per_job"], loop_200["broker_ms_per_job"]
        met.append(
            (
                f"200/s: broker {ours:.3f} ms/job with maas <= {theirs:.3f} with the loop",
                ours <= theirs,
            )
        )
    return met


def _ms(value: float, digits: int = 3) -> str:
    return "" if math.isnan(value) else f"{value:.{digits}f}"


def table(section: dict[str, Any], title: str) -> Table:
    shown = Table(title=title)
    columns = (
        "rate/s", "path", "sent/s", "worker ms/job", "worker core", "broker ms/job",
        "broker core", "p50 ms", "p99 ms", "lag",
    )  # fmt: skip
    for column in columns:
        shown.add_column(column, justify="left" if column in ("path", "lag") else "right")
    for run in section["runs"]:
        mark = " (drain share)" if run["rate"] == section["share_rate"] else ""
        lag = "bounded" if run["bounded"] else f"GREW {run['lag_growth']:.0f}"
        shown.add_row(
            f"{run['rate']:g}{mark}", run["path"], f"{run['offered']:.0f}",
            _ms(run["worker_ms_per_job"]), f"{run['worker_core']:.2f}",
            _ms(run["broker_ms_per_job"]), f"{run['broker_core']:.2f}",
            _ms(run["p50_ms"], 1), _ms(run["p99_ms"], 1), lag,
        )  # fmt: skip
    return shown


def summary(section: dict[str, Any]) -> list[str]:
    """The drain the rates refer to, and each target, met or MISSED."""
    lines = []
    if drain := section["drain"]:
        cpu = drain["extra"].get("cpu_us_per_job", float("nan"))
        lines.append(
            f"drain (one maas process): {drain['rows_per_s']:.0f} jobs/s, {cpu / 1000:.3f} ms/job; "
            f"{section['drain_share']:.0%} of it = {section['share_rate']} jobs/s"
        )
    lines += [f"  {'met' if ok else 'MISSED'}: {what}" for what, ok in targets(section)]
    return lines
