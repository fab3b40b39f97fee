"""The one console script, ``maas``. Each verb group lives in ``maas/commands/``.

:func:`main` is the error boundary: a user's mistake or a missing service becomes one
``error: ...`` line and a documented exit code (``maas/errors.py``), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from maas import errors
from workers import logs

# Each module exposes ``register(subparsers)``; its parsers set ``func(args) -> int``.
COMMAND_MODULES = (
    "maas.commands.broker",
    "maas.commands.stack",
    "maas.commands.serve",
    "maas.commands.models",
    "maas.commands.tenants",
    "maas.commands.schedule",
    "maas.commands.client",
    "maas.commands.db",
    "maas.commands.gateway",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maas",
        description="Model-as-a-service on Apache Kafka.",
        epilog="Exit codes: 0 done; 1 failed, one 'error:' line says why; 2 the command "
        "line does not parse (maas submit and maas score: also no answer came); "
        "130 interrupted. `maas COMMAND --help` describes each command.",
    )
    parser.add_argument(
        "--log-format",
        choices=("auto", "console", "json"),
        default="auto",
        help="log rendering: json in production, readable on a terminal (default: auto)",
    )
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="(default: info)",
    )
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
        return errors.EXIT_INTERRUPTED
    except Exception as exc:
        if not isinstance(exc, errors.user_errors()):
            raise  # a bug: its traceback is what a bug report needs
        errors.report(exc)
        return errors.EXIT_FAILED
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
