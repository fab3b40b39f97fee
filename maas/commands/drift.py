"""``maas models baseline|drift|policy``: reference profiles, drift windows and the
policies that retrain on them (the work is :mod:`workers.monitor`'s; this is the glue)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from maas.commands.common import actor, console, kafka_settings
from maas.errors import CommandError
from producer.contract.messages import PROMOTE_MODES

if TYPE_CHECKING:  # the registry's extra is imported when a verb runs, not to parse
    from registry import Registry
    from registry.drift import DriftWindow, Policy

Handler = Callable[["Registry", argparse.Namespace], int]
Verb = Callable[[str, Handler, str], argparse.ArgumentParser]

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``6h`` or ``7d`` as a timedelta; argparse's type for durations."""
    match = _DURATION.match(text)
    if match is None or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: write a whole number and a unit, e.g. 30m, 6h or 7d"
        )
    return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


def add_verbs(change: Verb, read: Verb) -> None:
    """Add ``baseline`` and ``policy`` (they change the registry) and ``drift`` (it reads)
    to the ``maas models`` group through its verb factories."""
    sub = change(
        "baseline",
        _baseline,
        "store VERSION's reference profile, from rows of a data file or of its captured traffic",
    )
    sub.add_argument("version", metavar="VERSION", type=int)
    source = sub.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data",
        metavar="FILE",
        type=Path,
        help="rows as maas score reads them (JSONL, CSV or Parquet); the version is run on "
        "them so that its outputs are profiled too",
    )
    source.add_argument(
        "--from-capture",
        type=int,
        metavar="N",
        help="the version's last N captured rows (captured with their inputs whole)",
    )
    sub.add_argument(
        "--rows",
        type=int,
        default=10_000,
        metavar="N",
        help="at most N rows of --data (default 10000)",
    )
    sub = change("policy", _policy, "list, add or remove the conditions that retrain a model")
    sub.add_argument(
        "--retrain-when",
        metavar="CONDITION",
        action="append",
        default=[],
        help='e.g. "drift > 0.25 for 3 windows" or "accuracy < 0.9" (repeatable)',
    )
    sub.add_argument(
        "--cooldown",
        type=duration,
        default=timedelta(hours=6),
        metavar="DURATION",
        help="no second retrain from a policy within this time (default 6h)",
    )
    sub.add_argument(
        "--dataset", metavar="URI", help="the retrain job's dataset (default: the recipe's own)"
    )
    sub.add_argument(
        "--promote",
        choices=PROMOTE_MODES,
        default="gate",
        help="the retrain job's promote mode (default gate)",
    )
    sub.add_argument("--remove", type=int, metavar="ID", help="remove the policy with this id")
    sub = read("drift", _drift, "drift per window: share of drifted features, predictions")
    sub.add_argument(
        "--since",
        type=duration,
        default=timedelta(hours=24),
        metavar="DURATION",
        help="windows of the last DURATION (default 24h)",
    )
    sub.add_argument("--version", type=int, metavar="VERSION", help="only this version")


def _baseline(registry: Registry, args: argparse.Namespace) -> int:
    from workers.monitor.baseline import profile_of_capture, profile_of_file, reference
    from workers.optimize.errors import OptimizeError

    count = args.rows if args.data is not None else args.from_capture
    if count < 1:
        raise CommandError(f"a baseline needs at least 1 row, got {count}")
    if args.data is not None and not args.data.is_file():
        raise CommandError(f"--data {args.data}: no such file (JSONL, CSV or Parquet rows)")
    version = registry.models.get_version(args.name, args.version)
    if args.data is None:
        profile = profile_of_capture(kafka_settings(args), version, count)
    else:
        try:
            profile = profile_of_file(version, args.data, limit=count)
        except OptimizeError as exc:
            raise CommandError(str(exc).replace("calibration data", "baseline data")) from exc
    registry.drift.set_reference(reference(version, profile, actor(args)))
    where = "captured traffic" if args.data is None else args.data.name
    print(
        f"stored the reference of {args.name} version {args.version}: {profile.rows} rows of "
        f"{where}, {len(profile.inputs)} input and {len(profile.outputs)} output features"
    )
    return 0


def _policy(registry: Registry, args: argparse.Namespace) -> int:
    from workers.drift.policy import InvalidPolicy, parse_condition

    registry.models.get_model(args.name)
    if args.remove is not None:
        registry.drift.remove_policy(args.name, args.remove, actor(args))
        print(f"removed policy {args.remove} of {args.name}")
    from registry.drift import Policy

    try:
        conditions = [parse_condition(text) for text in args.retrain_when]
    except InvalidPolicy as exc:
        raise CommandError(f"--retrain-when: {exc}") from exc
    for condition in conditions:
        stored = registry.drift.set_policy(
            Policy(
                args.name,
                str(condition),
                int(args.cooldown.total_seconds()),
                args.dataset,
                args.promote,
            ),
            actor(args),
        )
        print(f"policy {stored.id} of {args.name}: retrain when {stored.condition}")
    _print_policies(registry.drift.policies(args.name), args.name)
    return 0


def _print_policies(policies: list[Policy], name: str) -> None:
    if not policies:
        print(f"{name} has no policies; add one with --retrain-when")
        return
    table = Table("ID", "RETRAIN WHEN", "COOLDOWN", "DATASET", "PROMOTE", "LAST FIRED", box=None)
    for p in policies:
        table.add_row(
            str(p.id),
            p.condition,
            str(timedelta(seconds=p.cooldown_s)),
            p.dataset or "(the recipe's)",
            p.promote,
            _time(p.last_fired_at) if p.last_fired_at else "never",
        )
    console().print(table)


def _drift(registry: Registry, args: argparse.Namespace) -> int:
    windows = registry.drift.windows(args.name, datetime.now(UTC) - args.since, args.version)
    if not windows:
        print(
            f"no drift windows for {args.name} in the last {args.since}; maas monitor writes "
            "them from captured traffic of versions that have a reference (maas models baseline)"
        )
        return 0
    table = Table(
        "START",
        "VERSION",
        "ROWS",
        "DRIFTED",
        "PREDICTIONS",
        "EST. ACCURACY",
        "MOST DRIFTED",
        box=None,
    )
    for w in windows:
        table.add_row(
            _time(w.start),
            str(w.version),
            str(w.rows),
            f"{w.share_drifted:.0%}",
            "-" if w.prediction_drift is None else f"{w.prediction_drift:.3f}",
            "-" if w.estimated_accuracy is None else f"{w.estimated_accuracy:.3f}",
            _most_drifted(w),
        )
    console().print(table)
    return 0


def _most_drifted(window: DriftWindow, count: int = 3) -> str:
    scored = sorted(
        (
            (name, float(stats.get("score", 0.0)))
            for name, stats in window.features.items()
            if stats.get("drifted")
        ),
        key=lambda item: item[1],
        reverse=True,
    )
    return ", ".join(f"{name} {score:.2f}" for name, score in scored[:count]) or "-"


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")
