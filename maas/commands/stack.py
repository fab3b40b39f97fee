"""``maas up``: broker, registry, demo model and a worker in one process."""

from __future__ import annotations

import argparse
import asyncio
import os

from maas.commands.common import Subparsers, add_registry_options, add_verb, registry_settings
from maas.errors import CommandError


def register(subparsers: Subparsers) -> None:
    add_verb(
        subparsers,
        "up",
        run,
        summary="run the embedded stack: broker, registry, demo model, worker, trainer",
        description="Start the embedded broker, migrate the registry, register the digits "
        "demo model if absent, start a worker (batches of up to 256 rows, 2 ms delay), "
        "score held-out digits through Kafka and print accuracy and latency, then keep "
        "serving until Ctrl-C; a trainer answers maas retrain meanwhile.",
        options=(_options, add_registry_options),
    )


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=9092, help="broker port (default 9092)")
    parser.add_argument(
        "--samples",
        type=int,
        default=300,
        help="held-out digits to score at start (default 300, 0 skips)",
    )
    parser.add_argument(
        "--gateway-port",
        type=int,
        default=8080,
        metavar="P",
        help="while serving, the OIP gateway on http://127.0.0.1:P, anonymous calls "
        "allowed (default 8080; 0: no gateway)",
    )
    parser.add_argument(
        "--no-serve",
        action="store_true",
        help="stop after the demo instead of serving until Ctrl-C",
    )


def run(args: argparse.Namespace) -> int:
    from maas.stack import DEMO_BATCH, StackSettings, run_stack  # the worker's extra
    from workers.serving.loop import WorkerSettings

    settings = StackSettings(
        registry=registry_settings(args),
        worker=WorkerSettings(batch=DEMO_BATCH, registry=registry_settings(args).identity),
        topic_prefix=os.environ.get("MAAS_TOPIC_PREFIX", "maas."),
        port=args.port,
        samples=args.samples,
        serve=not args.no_serve,
        gateway_port=args.gateway_port,
    )
    report = asyncio.run(run_stack(settings))
    if report is not None and report.jobs < args.samples:
        raise CommandError(f"only {report.jobs} of {args.samples} demo jobs were answered")
    return 0
