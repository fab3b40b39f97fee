"""The one console script, ``maas``. Each verb group lives in ``maas/commands/``.

:func:`main` is the error boundary: a user's mistake or a missing service becomes one
``error: ...`` line and a documented exit code (``maas/errors.py``), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from maas import errors
from maas.commands.common import Subparsers
from maas.extras import MissingExtra, missing_extra, top_module
from maas.suggest import misspelt_flag
from workers import logs

# Each module exposes ``register(subparsers)``; its parsers set ``func(args) -> int``.
COMMAND_MODULES = (
    "maas.commands.broker",
    "maas.commands.stack",
    "maas.commands.serve",
    "maas.commands.models",
    "maas.commands.tenants",
    "maas.commands.schedule",
    "maas.commands.runs",
    "maas.commands.client",
    "maas.commands.db",
    "maas.commands.feedback",
    "maas.commands.monitor",
    "maas.commands.gateway",
)
# Each verb's module. A command line that names one of these verbs imports only its
# module, so `maas submit` loads neither the registry nor the worker; any other command
# line (`maas --help`, a verb added elsewhere, a typo) imports them all. A module that
# needs an extra that is missing keeps its verbs, each saying which extra to install.
VERB_MODULES = {
    "broker": "maas.commands.broker",
    "up": "maas.commands.stack",
    "worker": "maas.commands.serve",
    "models": "maas.commands.models",
    "tenants": "maas.commands.tenants",
    "trainer": "maas.commands.schedule",
    "scheduler": "maas.commands.schedule",
    "schedule": "maas.commands.schedule",
    "submit": "maas.commands.client",
    "score": "maas.commands.client",
    "retrain": "maas.commands.client",
    "db": "maas.commands.db",
    "runs": "maas.commands.runs",
    "monitor": "maas.commands.monitor",
    "feedback": "maas.commands.feedback",
    "gateway": "maas.commands.gateway",
}
_EXTRA_OF_VERB = {"trainer": "train"}  # needs more than the module that failed to import
_GLOBAL_OPTIONS_WITH_VALUES = ("--log-format", "--log-level")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: with only the verb's module when ``argv`` names a known
    verb (None: every verb)."""
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
            if exc.name == name:
                continue  # a verb group not built yet
            if missing_extra(exc) is None:
                raise
            _needs_extra(subparsers, name, exc)
            continue
        module.register(subparsers)
    return parser


def _modules_for(argv: Sequence[str] | None) -> tuple[str, ...]:
    """Only the named verb's module, when ``argv`` names a verb of VERB_MODULES."""
    verb = _verb_in(argv or ())
    return (VERB_MODULES[verb],) if verb in VERB_MODULES else COMMAND_MODULES


def _verb_in(argv: Sequence[str]) -> str | None:
    """The first word of ``argv`` that is neither an option nor an option's value."""
    after_option = False
    for word in argv:
        if after_option:
            after_option = False
        elif word.startswith("-"):
            after_option = word in _GLOBAL_OPTIONS_WITH_VALUES
        else:
            return word
    return None


def _needs_extra(subparsers: Subparsers, name: str, exc: ModuleNotFoundError) -> None:
    """Keep the verbs of module ``name``, which cannot be imported without an extra, on
    the command line: each says in one line which extra to install."""
    verbs = tuple(v for v, home in VERB_MODULES.items() if home == name)
    for verb in verbs or (name.rpartition(".")[2],):
        extra = _EXTRA_OF_VERB.get(verb) or missing_extra(exc)
        parser = subparsers.add_parser(
            verb, help=f"(needs: pip install 'maas[{extra}]')", add_help=False
        )
        parser.set_defaults(func=_missing(verb, exc), needs_extra=True)


def _missing(verb: str, exc: ModuleNotFoundError) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        extra = _EXTRA_OF_VERB.get(verb) or missing_extra(exc) or "worker"
        raise MissingExtra(verb, top_module(exc), extra)

    return run


def _verb(args: argparse.Namespace) -> str:
    """``models register``: the verb, and the group's verb where it has one."""
    sub = getattr(args, f"{args.command}_command", None)
    return f"{args.command} {sub}" if sub else str(args.command)


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
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "needs_extra", False):  # a stub takes any flags
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:  # plain `maas`: say what it can do
        parser.print_help()
        return 0

    logs.configure(args.log_format, args.log_level)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return errors.EXIT_INTERRUPTED
    except MissingExtra as exc:
        errors.report(exc)
        return errors.EXIT_FAILED
    except ModuleNotFoundError as exc:
        extra = missing_extra(exc)
        if extra is None:
            raise  # not an optional dependency: a bug
        errors.report(MissingExtra(_verb(args), top_module(exc), extra))
        return errors.EXIT_FAILED
    except Exception as exc:
        if not isinstance(exc, errors.user_errors()):
            raise  # a bug: its traceback is what a bug report needs
        errors.report(exc)
        return errors.EXIT_FAILED
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
