"""The one console script, ``maas``. Each verb group lives in ``maas/commands/``.

:func:`main` is the error boundary: a user's mistake or a missing service becomes one
``error: ...`` line and a documented exit code (``maas/errors.py``), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from maas import errors
from maas.commands.common import Subparsers
from maas.extras import MissingExtra, missing_extra, top_module
from maas.suggest import misspelt_flag
from maas.verbs import VERBS, missing

# Each module exposes ``register(subparsers)``; its parsers set ``func(args) -> int``.
COMMAND_MODULES = tuple(dict.fromkeys(verb.module for verb in VERBS.values()))
# Each verb's module. A command line that names one of these verbs imports only its
# module, so `maas submit` loads neither the registry nor the worker; any other command
# line (`maas --help`, a typo) imports none: the verbs are listed from maas/verbs.py. A
# module that needs an extra that is missing keeps its verbs, each saying which extra
# to install.
VERB_MODULES = {name: verb.module for name, verb in VERBS.items()}
_EXTRA_OF_VERB = {"trainer": "train"}  # needs more than the module that failed to import
_GLOBAL_OPTIONS_WITH_VALUES = ("--log-format", "--log-level")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: with only the verb's module when ``argv`` names a known
    verb, every verb listed but none imported when it names none; None: every verb's
    module imported (the whole command tree, as the tests walk it)."""
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
    parser.add_argument("--version", action=_Version)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    verb = None if argv is None else _verb_in(argv)
    if argv is not None and verb not in VERBS:
        _list_verbs(subparsers)
        return parser
    for name in (VERBS[verb].module,) if verb in VERBS else COMMAND_MODULES:
        _register(subparsers, name)
    return parser


def _register(subparsers: Subparsers, name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return  # a verb group not built yet
        if missing_extra(exc) is None:
            raise
        _needs_extra(subparsers, name, exc)
        return
    module.register(subparsers)


def _list_verbs(subparsers: Subparsers) -> None:
    """Every verb with its summary, from maas/verbs.py: for `maas --help` (and a command
    line naming no verb), which runs none of them."""
    for name, verb in VERBS.items():
        shown = f"(needs: pip install 'maas[{verb.extra}]')" if missing(verb.extra) else None
        subparsers.add_parser(name, help=shown or verb.summary, add_help=False)


class _Version(argparse._VersionAction):
    """``--version``: the installed package's, looked up only when asked for."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        sys.stdout.write(f"maas {_version()}\n")
        parser.exit()


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
    from importlib.metadata import PackageNotFoundError, version

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

    from workers import logs  # structlog: imported only once a verb runs

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
