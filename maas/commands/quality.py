"""``maas models monitor`` and ``maas models quality``: a model's capture policy, and the
labelled quality the monitor (``maas monitor``) measured per version and window."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from maas.commands.common import actor, console, kafka_settings
from maas.errors import CommandError
from producer.contract.messages import ControlEvent
from producer.control import publish_control
from producer.kafka import KafkaSettings

if TYPE_CHECKING:  # the registry's extra is imported when a verb runs, not to parse
    from registry import QualityWindow, Registry

Handler = Callable[["Registry", argparse.Namespace], int]
Verb = Callable[..., argparse.ArgumentParser]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])\Z")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INPUTS = re.compile(r"^(full|drop|hash:[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*)\Z")


def duration_s(text: str) -> float:
    """``30s``, ``15m``, ``24h``, ``7d`` as seconds; argparse's type for durations."""
    match = _DURATION.match(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: write a positive number and a unit, as 30s, 15m, "
            "24h or 7d"
        )
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a capture rate: give a share of jobs from 0 to 1, as 0.1"
        )
    return rate


def _inputs(text: str) -> str:
    if _INPUTS.match(text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a capture-inputs policy: use full, drop, or hash:FIELD,... "
            "naming the input fields to hash"
        )
    return text


def add_verbs(changes: Verb, reads: Verb) -> None:
    """Add ``monitor`` (through ``changes``, the factory of verbs that change the
    registry) and ``quality`` (through ``reads``) to ``maas models``."""
    sub = changes(
        "monitor", _monitor, "set what workers capture of a model's answers, for the monitor"
    )
    sub.add_argument(
        "--capture-rate",
        type=_rate,
        metavar="R",
        help="share of jobs captured, 0 to 1, sampled by a hash of job_id (default: as "
        "before, else 0)",
    )
    sub.add_argument(
        "--capture-inputs",
        type=_inputs,
        metavar="full|drop|hash:F,...",
        help="keep the inputs whole, drop them, or hash the named fields (default: as "
        "before, else full)",
    )
    sub.add_argument(
        "--retention",
        type=duration_s,
        metavar="DURATION",
        help="how long the capture topics keep records, as 7d (set on the topics)",
    )
    sub.add_argument(
        "--label-output",
        metavar="OUTPUT",
        help="the output compared with labels (default: 'label' if the model has one, "
        "else its first output)",
    )
    sub = reads("report", _report, "one self-contained HTML file: quality, volume, delay, latency")
    sub.add_argument("--out", type=Path, required=True, metavar="FILE", help="report.html")
    sub = reads("quality", _quality, "labelled quality per version and window")
    sub.add_argument("--version", type=int, metavar="V", help="only this version")
    sub.add_argument(
        "--since",
        type=duration_s,
        default=24 * 3600.0,
        metavar="DURATION",
        help="windows that started this long ago or later, as 24h (default 24h)",
    )


def _monitor(registry: Registry, args: argparse.Namespace) -> int:
    from registry import CapturePolicy

    old = registry.quality.policy(args.name) or CapturePolicy()
    policy = CapturePolicy(
        rate=old.rate if args.capture_rate is None else args.capture_rate,
        inputs=args.capture_inputs or old.inputs,
        retention_ms=old.retention_ms if args.retention is None else int(args.retention * 1000),
        label_output=args.label_output or old.label_output,
    )
    if policy.label_output is not None:
        _check_output(registry, args.name, policy.label_output)
    registry.quality.set_policy(args.name, policy, actor=actor(args))
    kafka = kafka_settings(args)
    print(
        f"{args.name}: capturing {policy.rate:g} of jobs, inputs {policy.inputs}"
        + (f", retention {policy.retention_ms // 1000}s" if policy.retention_ms else "")
    )
    _announce(kafka, args.name, actor(args))
    if args.retention is not None and policy.retention_ms is not None:
        _set_retention(kafka, policy.retention_ms)
    return 0


def _check_output(registry: Registry, name: str, output: str) -> None:
    versions = registry.models.versions(name)
    names = {spec.name for v in versions for spec in v.signature.outputs}
    if names and output not in names:
        raise CommandError(
            f"model {name!r} has no output {output!r}; its outputs are "
            f"{', '.join(sorted(names))} (maas models show {name})"
        )


def _announce(kafka: KafkaSettings, name: str, who: str) -> None:
    event = ControlEvent(event="monitor", model=name, actor=who, reason="capture policy")
    try:
        publish_control(kafka, event, timeout_s=5.0)
    except Exception as exc:
        print(f"workers pick the policy up within seconds (control event not sent: {exc})")


def _set_retention(kafka: KafkaSettings, retention_ms: int) -> None:
    from aiokafka.errors import IncompatibleBrokerVersion

    from maas.commands.retention import set_capture_retention

    try:
        topics = set_capture_retention(kafka, retention_ms)
    except IncompatibleBrokerVersion as exc:
        raise CommandError(
            "the policy is stored, but this broker cannot alter topic configs, so the "
            "capture topics' retention was not set (the embedded broker keeps topics in "
            "memory, without retention); set --retention against Apache Kafka"
        ) from exc
    except Exception as exc:
        raise CommandError(
            f"the policy is stored, but the capture topics' retention was not set: {exc}; "
            "check that the broker is reachable and allows altering topic configs"
        ) from exc
    print(f"retention.ms={retention_ms} on {', '.join(topics)}")


def _report(registry: Registry, args: argparse.Namespace) -> int:
    from maas.report import ReportData, render
    from workers.drift import ReferenceProfile

    drift = registry.drift.windows(args.name)
    references = {}
    for version in {w.version for w in drift}:
        stored = registry.drift.reference(args.name, version)
        if stored is not None:
            references[version] = ReferenceProfile.decode(stored.profile)
    data = ReportData(
        args.name,
        registry.quality.windows(args.name),
        registry.metrics.windows(args.name),
        registry.models.alias_history(args.name),
        drift,
        references,
    )
    try:
        args.out.write_text(render(data), encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {args.out}: {exc.strerror}") from exc
    print(f"wrote {args.out}")
    return 0


def _quality(registry: Registry, args: argparse.Namespace) -> int:
    since = datetime.now(UTC) - timedelta(seconds=args.since)
    windows = registry.quality.windows(args.name, args.version, since)
    if not windows:
        print(
            f"no labelled windows for {args.name} since {since:%Y-%m-%d %H:%M} UTC; the "
            "monitor (maas monitor) writes them as feedback joins captured answers"
        )
        return 0
    console().print(quality_table(windows))
    return 0


def quality_table(windows: list[QualityWindow]) -> object:
    """The windows as a table: one row per version and window."""
    from rich.table import Table

    table = Table(
        "VERSION", "WINDOW", "ROWS", "ACCURACY", "P", "R", "F1", "MAE", "RMSE",
        "DELAY P50", "DELAY P95", box=None,
    )  # fmt: skip
    for w in windows:
        macro = w.macro()
        table.add_row(
            str(w.version),
            f"{w.start:%Y-%m-%d %H:%M}",
            str(w.rows),
            _num(w.accuracy),
            *(_num(m) for m in (macro or (None, None, None))),
            _num(w.mae),
            _num(w.rmse),
            _delay(w.delay_ms(0.5)),
            _delay(w.delay_ms(0.95)),
        )
    return table


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _delay(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms / 1000:.1f}s" if ms >= 1000 else f"{ms:.0f}ms"
