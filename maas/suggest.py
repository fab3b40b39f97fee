"""A mistyped flag gets the flag it was probably meant to be.

argparse reports ``--modle`` late and beside the point (``the following arguments are
required: --model``); :func:`misspelt_flag` looks at the command line first, with the
flags of the parsers it names (``maas``, ``maas models``, ``maas models register``), and
finds the closest known one with :mod:`difflib`.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterator, Sequence


def misspelt_flag(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """``"--modle: no such flag; did you mean --model?"`` for the first unknown flag in
    ``argv`` that is close to a known one; None when there is none such."""
    flags: set[str] = set()
    for token, known in _flags(parser, argv):
        flags |= known
        if not token.startswith("--") or token == "--":
            continue
        name = token.split("=", 1)[0]
        if any(flag.startswith(name) for flag in flags):  # known, or an abbreviation
            continue
        close = difflib.get_close_matches(name, sorted(flags), n=1, cutoff=0.6)
        if close:
            return f"{name}: no such flag; did you mean {close[0]}?"
    return None


def _flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Iterator[tuple[str, set[str]]]:
    """Each token of ``argv`` (up to ``--``) with the flags known where it stands."""
    known = _options(parser)
    for token in argv:
        if token == "--":
            return
        sub = _subparser(parser, token)
        if sub is not None:
            if sub.get_default("needs_extra"):  # a verb whose extra is missing takes any flag
                return
            parser, known = sub, known | _options(sub)
        yield token, known


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def _subparser(parser: argparse.ArgumentParser, token: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and token in action.choices:
            chosen: argparse.ArgumentParser = action.choices[token]
            return chosen
    return None
