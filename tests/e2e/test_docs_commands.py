"""Every ``maas`` command the README and docs/*.md show is one the CLI accepts: a command
line in a code block parses as written, and a synopsis in running text names only flags
its verb has."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from maas.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def code_lines(text: str) -> list[str]:
    """The lines of fenced and indented code blocks, continuation lines joined."""
    lines = [line for block in FENCED.findall(text) for line in block.splitlines()]
    lines += [line[4:] for line in FENCED.sub("", text).splitlines() if line.startswith("    ")]
    joined, pending = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    return joined


def commands(doc: Path) -> list[str]:
    return [
        line.strip() for line in code_lines(doc.read_text()) if line.strip().startswith("maas ")
    ]


def synopses(doc: Path) -> list[str]:
    """``maas ...`` in inline code of the running text (code blocks left out)."""
    prose = FENCED.sub("", doc.read_text())
    return [span for span in re.findall(r"`(maas [^`]*)`", prose) if "VERB" not in span]


def verb_parser(words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser of the longest run of verbs at the start of ``words``, and the rest."""
    parser = build_parser()
    while words:
        verbs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not verbs or words[0] not in verbs[0].choices:
            break
        parser, words = verbs[0].choices[words[0]], words[1:]
    return parser, words


ALL_COMMANDS = [(doc.name, line) for doc in DOCS for line in commands(doc)]
ALL_SYNOPSES = [(doc.name, span) for doc in DOCS for span in synopses(doc)]


def test_the_docs_show_commands() -> None:
    assert len(ALL_COMMANDS) >= 10 and len(ALL_SYNOPSES) >= 20


@pytest.mark.parametrize(("doc", "line"), ALL_COMMANDS)
def test_a_documented_command_line_parses(doc: str, line: str) -> None:
    argv = shlex.split(line, comments=True)
    try:
        build_parser().parse_args(argv[1:])
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"{doc}: `{line}` does not parse (exit {exc.code})")


@pytest.mark.parametrize(("doc", "span"), ALL_SYNOPSES)
def test_a_documented_synopsis_names_flags_its_verb_has(doc: str, span: str) -> None:
    words = shlex.split(span.replace("[", " ").replace("]", " "))[1:]
    parser, rest = verb_parser(words)
    flags = {flag for action in parser._actions for flag in action.option_strings}
    unknown = [w for w in rest if w.startswith("--") and w.split("=")[0] not in flags]
    assert not unknown, f"{doc}: `{span}` names {unknown}, which `{parser.prog}` does not take"
