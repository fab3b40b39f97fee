"""``maas feedback``: ground truth for answered jobs, one label or a CSV file of them.

``maas feedback JOB_ID --label 7 [--row 0]`` sends one Feedback; ``maas feedback --file
labels.csv`` sends one per line of a CSV with the columns ``job_id``, ``row`` and
``label``, with a progress bar. A label that reads as an integer is one, then a
number, else text.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from collections.abc import Iterator
from pathlib import Path

from maas.commands.client import _add_tenant, _tenant
from maas.commands.common import Subparsers, add_kafka_options, add_verb, kafka_settings
from maas.errors import CommandError
from producer.contract.messages import Label

_IN_FLIGHT = 500  # feedback records awaiting their ack at once


def register(subparsers: Subparsers) -> None:
    add_verb(
        subparsers,
        "feedback",
        run_feedback,
        summary="send the ground truth for answered jobs (one label, or a CSV file)",
        description="Publish Feedback on the tenant's feedback topic, where the monitor "
        "(maas monitor) joins it with what the workers answered. Give JOB_ID and --label "
        "(and --row for a row other than 0), or --file with a CSV of job_id,row,label.",
        options=(_options, _add_tenant, add_kafka_options),
    )


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", nargs="?", metavar="JOB_ID", help="the answered job")
    parser.add_argument("--label", metavar="L", help="the true label of the job's row")
    parser.add_argument(
        "--row", type=int, default=0, metavar="I", help="which input row (default 0)"
    )
    parser.add_argument(
        "--file", type=Path, metavar="CSV", help="labels.csv with columns job_id,row,label"
    )


def parse_label(text: str) -> Label:
    """A label from text: an integer, else a number, else the text itself."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def run_feedback(args: argparse.Namespace) -> int:
    if args.file is not None:
        if args.job_id is not None or args.label is not None:
            raise CommandError("give JOB_ID --label L, or --file labels.csv, not both")
        rows = list(read_labels(args.file))
    elif args.job_id is None or args.label is None:
        raise CommandError(
            "give JOB_ID and --label L (maas feedback job-1 --label 7), or --file labels.csv"
        )
    else:
        if args.row < 0:
            raise CommandError(f"--row {args.row}: rows are numbered from 0")
        rows = [(args.job_id, args.row, parse_label(args.label))]
    sent = asyncio.run(_send(args, rows))
    print(f"sent feedback for {sent} row(s)", file=sys.stderr)
    return 0


def read_labels(path: Path) -> Iterator[tuple[str, int, Label]]:
    """The (job_id, row, label) of each line of ``path``; a bad line is a CommandError
    naming it."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"job_id", "row", "label"} - set(reader.fieldnames or ())
            if missing:
                raise CommandError(
                    f"{path}: the header must name job_id, row and label; missing "
                    f"{', '.join(sorted(missing))}"
                )
            for line, record in enumerate(reader, start=2):
                yield _line(path, line, record)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CommandError(f"{path} is not a UTF-8 CSV file: {exc}") from exc


def _line(path: Path, line: int, record: dict[str, str]) -> tuple[str, int, Label]:
    job_id, row, label = record.get("job_id"), record.get("row"), record.get("label")
    if not job_id or label is None or label.strip() == "":
        raise CommandError(f"{path}:{line}: job_id and label must not be empty")
    try:
        index = int(row or "")
    except ValueError:
        index = -1
    if index < 0:
        raise CommandError(f"{path}:{line}: row {row!r} is not a row number (0, 1, ...)")
    return job_id, index, parse_label(label)


async def _send(args: argparse.Namespace, rows: list[tuple[str, int, Label]]) -> int:
    from rich.progress import Progress

    from producer.aio import AsyncClient
    from producer.errors import InvalidFeedback

    async with AsyncClient(kafka_settings(args), tenant=_tenant(args)) as client:
        with Progress(transient=True, disable=len(rows) < 2) as progress:
            task = progress.add_task("feedback", total=len(rows))
            for start in range(0, len(rows), _IN_FLIGHT):
                chunk = rows[start : start + _IN_FLIGHT]
                try:
                    await asyncio.gather(
                        *(client.feedback(j, row=r, label=label) for j, r, label in chunk)
                    )
                except InvalidFeedback as exc:
                    raise CommandError(str(exc)) from exc
                progress.advance(task, len(chunk))
    return len(rows)
