"""The one console script, ``maas``. Each verb group lives in ``maas/commands/``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from producer.errors import BrokerUnavailable, KafkaSettingsError
from workers import logs

# Each module exposes ``register(subparsers)``; its parsers set ``func(args) -> int``.
COMMAND_MODULES = (
    "maas.commands.broker",
    "maas.commands.stack",
    "maas.commands.serve",
    "maas.commands.models",
    "maas.commands.schedule",
    "maas.commands.client",
    "maas.commands.db",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maas",
        description="Model-as-a-service on Apache Kafka.",
    )
    parser.add_argument(
        "--log-format",
        choices=("auto", "console", "json"),
        default="auto",
        help="log rendering: json in production, readable on a terminal (default: auto)",
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error")
    parser.add_argument("--version", action="version", version=f"maas {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a verb group not built yet
        module.register(subparsers)
    return parser


def _version() -> str:
    try:
        return version("maas")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout, not installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # plain `maas`: say what it can do
        parser.print_help()
        return 0
    logs.configure(args.log_format, args.log_level)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except (BrokerUnavailable, KafkaSettingsError) as exc:  # one line: it says what to check
        print(f"maas {args.command}: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
