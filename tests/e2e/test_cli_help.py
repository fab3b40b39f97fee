"""``maas --help`` and every command's help read alike: a description, NAME-style
placeholders, every flag explained with its default, no flags a command ignores."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from maas.cli import build_parser, main

READ_ONLY = (
    ("models", "list"),
    ("models", "show"),
    ("models", "history"),
    ("models", "stats"),
    ("models", "drift"),
    ("schedule", "list"),
)


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser under ``parser`` (itself included), with the words that reach it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def arguments(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    skip = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
    return (a for a in parser._actions if not isinstance(a, skip))


ALL = list(commands(build_parser()))


def shown(default: object) -> bool:
    """Whether a default is worth showing: not None, a flag's False/True, or empty."""
    return not (default is None or isinstance(default, bool) or default in ("", [], {}))


@pytest.mark.parametrize(("path", "parser"), ALL, ids=[" ".join(p) or "maas" for p, _ in ALL])
def test_each_command_describes_itself_and_its_flags(
    path: tuple[str, ...], parser: argparse.ArgumentParser
) -> None:
    assert parser.description, f"maas {' '.join(path)} has no description"
    for action in arguments(parser):
        if not action.option_strings:
            assert action.metavar and str(action.metavar).isupper(), (path, action.dest)
            continue
        assert action.help, (path, action.option_strings)
        if shown(action.default):
            assert "default" in action.help, (path, action.option_strings, action.help)


@pytest.mark.parametrize("path", READ_ONLY, ids=" ".join)
def test_commands_that_only_read_take_no_actor_and_no_kafka_flags(path: tuple[str, ...]) -> None:
    parser = dict(ALL)[path]
    flags = {flag for action in arguments(parser) for flag in action.option_strings}
    assert not flags & {"--actor", "--bootstrap-servers", "--topic-prefix", "--embedded-broker"}
    assert {"--database-url", "--artifact-dir"} <= flags


def test_submit_help_shows_its_defaults_and_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["submit", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown_text in ("(default 30)", "(default production)", "(default 0)", "Exit 0", "2 when"):
        assert shown_text in text, shown_text


def test_top_level_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit codes: 0 done; 1 failed" in text and "130 interrupted" in text
