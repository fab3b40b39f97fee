"""``maas monitor``: join captures and feedback; labelled quality per version and window."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
from functools import partial

from maas.commands.common import (
    Subparsers,
    add_kafka_options,
    add_metrics_option,
    add_registry_options,
    add_verb,
    kafka_settings,
    positive_int,
    registry_settings,
)
from maas.commands.quality import duration_s
from producer.control import alias_move_publisher
from registry import Registry
from registry.db import utcnow
from workers.health import served
from workers.monitor.acting import PolicyActor
from workers.monitor.drifting import DriftSettings, DriftWatch
from workers.monitor.join import JoinSettings
from workers.monitor.rollback import AccuracyPolicy
from workers.monitor.service import Monitor, MonitorSettings, readiness


def register(subparsers: Subparsers) -> None:
    add_verb(
        subparsers,
        "monitor",
        _run,
        summary="join captured answers with feedback: labelled quality per version",
        description="Read every tenant's capture and feedback topics (consumer group "
        "maas-monitor; scale up to the topics' partition count), join them by job_id "
        "within --join-window and write labelled quality per model, version and window "
        "to the registry (maas models quality) and to Prometheus (--metrics-port).",
        options=(_options, add_metrics_option, add_kafka_options, add_registry_options),
    )


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--join-window",
        type=duration_s,
        default=7 * 86400.0,
        metavar="DURATION",
        help="how long a capture waits for its labels and labels for their capture (default 7d)",
    )
    parser.add_argument(
        "--max-pending",
        type=positive_int,
        default=1_000_000,
        metavar="N",
        help="captures (and labelled jobs) waiting at most; the oldest beyond are dropped "
        "and counted (default 1000000)",
    )
    parser.add_argument(
        "--window",
        type=duration_s,
        default=3600.0,
        metavar="DURATION",
        help="length of a quality window (default 1h)",
    )
    parser.add_argument(
        "--label-output",
        action="append",
        default=[],
        metavar="MODEL=OUTPUT",
        help="score MODEL's OUTPUT against the labels (default: 'label' if the model has "
        "one, else its first output); repeatable",
    )
    parser.add_argument("--group-id", default="maas-monitor", help="(default maas-monitor)")
    parser.add_argument(
        "--min-labelled",
        type=positive_int,
        default=200,
        metavar="N",
        help="labelled rows both a promoted version and its predecessor need before the "
        "new one is judged on accuracy (default 200)",
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=_share,
        default=0.0,
        metavar="D",
        help="roll back when the promoted version's labelled accuracy is lower by more "
        "than D (and significantly: two-proportion test, p < 0.01) (default 0)",
    )
    parser.add_argument(
        "--no-rollback", action="store_true", help="never roll back on labelled accuracy"
    )
    parser.add_argument(
        "--drift-window",
        type=duration_s,
        default=300.0,
        metavar="DURATION",
        help="length of a drift window of captured traffic (default 5m)",
    )
    parser.add_argument(
        "--no-policies",
        action="store_true",
        help="measure drift but never publish the retrain jobs of maas models policy",
    )


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an accuracy drop: give 0 to 1, as 0.02")
    return value


def monitor_settings(args: argparse.Namespace) -> MonitorSettings:
    outputs = {}
    for item in args.label_output:
        model, sep, output = item.partition("=")
        if not sep or not model or not output:
            raise argparse.ArgumentTypeError(f"--label-output {item!r}: write MODEL=OUTPUT")
        outputs[model] = output
    join = JoinSettings(
        window_ms=int(args.join_window * 1000),
        max_pending=args.max_pending,
        label_outputs=outputs,
    )
    rollback = None
    if not args.no_rollback:
        rollback = AccuracyPolicy(
            min_labelled=args.min_labelled, max_accuracy_drop=args.max_accuracy_drop
        )
    return MonitorSettings(
        group_id=args.group_id,
        join=join,
        window_s=int(args.window),
        rollback=rollback,
        actor=f"quality-rollback@{socket.gethostname()}:{os.getpid()}",
    )


def _run(args: argparse.Namespace) -> int:
    settings = monitor_settings(args)
    kafka = kafka_settings(args)
    hook = alias_move_publisher(kafka)  # a rollback reaches every worker at once
    with Registry.open(registry_settings(args), on_alias_move=hook) as registry:
        actor = None
        if not args.no_policies:
            actor = PolicyActor(registry.drift, registry.quality, registry.runs, utcnow)
        drift = DriftWatch(registry.drift, DriftSettings(window_s=int(args.drift_window)), actor)
        monitor = Monitor(
            kafka,
            registry.quality,
            settings,
            models=registry.models,
            refusals=registry.tenants,
            drift=drift,
        )

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            async with served(args.metrics_port, partial(readiness, monitor)):
                await monitor.run(stop)

        asyncio.run(main())
    return 0
