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
from maas.suggest import misspelt_flag

# Each module exposes ``register(subparsers)``; its parsers set ``func(args) -> int``.
# The verbs each adds: a command line imports only the module of its verb (the others
# import what their verbs need: the registry, the serving loop, torch, ...).
COMMANDS = {
    "maas.commands.broker": ("broker",),
    "maas.commands.stack": ("up",),
    "maas.commands.serve": ("worker",),
    "maas.commands.models": ("models",),
    "maas.commands.tenants": ("tenants",),
    "maas.commands.schedule": ("trainer", "scheduler", "schedule"),
    "maas.commands.client": ("submit", "score", "retrain"),
    "maas.commands.db": ("db",),
}
COMMAND_MODULES = tuple(COMMANDS)
_GLOBAL_OPTIONS_WITH_VALUES = ("--log-format", "--log-level")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser: every verb, or (given ``argv``) only the one ``argv`` names, if any."""
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
    for name in _modules_for(argv):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a verb group not built yet
        module.register(subparsers)
    return parser


def _modules_for(argv: Sequence[str] | None) -> tuple[str, ...]:
    """The verb modules ``argv`` needs: the one owning its verb; all for ``maas --help``,
    a bare ``maas`` or a verb that is not one (argparse then lists the verbs)."""
    verb = _verb(argv or ())
    owners = tuple(module for module, verbs in COMMANDS.items() if verb in verbs)
    return owners if argv is not None and owners else COMMAND_MODULES


def _verb(argv: Sequence[str]) -> str | None:
    """The first word of ``argv`` that is not a global option or its value."""
    tokens = iter(argv)
    for token in tokens:
        if token in _GLOBAL_OPTIONS_WITH_VALUES:
            next(tokens, None)
        elif not token.startswith("-"):
            return token
    return None


def _version() -> str:
    try:
        return version("maas")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout, not installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    if (mistyped := misspelt_flag(parser, argv)) is not None:
        parser.exit(errors.EXIT_USAGE, f"maas: error: {mistyped}\n")
    args = parser.parse_args(argv)
    if args.command is None:  # plain `maas`: say what it can do
        parser.print_help()
        return 0
    from workers import logs

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
