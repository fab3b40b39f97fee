"""``maas submit``, ``maas score`` and ``maas retrain``: the client verbs."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maas.commands.common import (
    add_kafka_options,
    add_retrain_job_options,
    dataset_of,
    kafka_settings,
)
from producer.errors import ClientError, JobTimeout, JobTooLarge
from producer.messages import DEFAULT_ALIAS, Dataset, Result, RetrainJob, RetrainResult, encode

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from producer.score import ScoreStats

EXIT_OK, EXIT_FAILED, EXIT_TIMEOUT = 0, 1, 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _register_submit(subparsers)
    _register_score(subparsers)
    _register_retrain(subparsers)


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="M", help="model name")
    parser.add_argument("--version", type=int, metavar="V", help="explicit version number")
    parser.add_argument(
        "--alias", default=DEFAULT_ALIAS, metavar="A", help="alias used without --version"
    )
    parser.add_argument("--priority", type=int, default=0, metavar="P", help="higher first")


def _target(args: argparse.Namespace) -> dict[str, Any]:
    """The job options that :func:`_add_target` reads, besides the model."""
    return {"version": args.version, "alias": args.alias, "priority": args.priority}


def _register_submit(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="publish one prediction job and print its Result as JSON",
        description="Exit 0 on an ok Result, 1 on an error Result, 2 when no answer came.",
    )
    _add_target(parser)
    parser.add_argument(
        "--inputs",
        required=True,
        metavar="JSON",
        help="named tensors, e.g. '{\"x\": [[0, 1, ...]]}', or @file.json",
    )
    parser.add_argument("--deadline-ms", type=int, metavar="D", help="epoch milliseconds")
    parser.add_argument("--job-id", help="job id (default: random)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds")
    add_kafka_options(parser)
    parser.set_defaults(func=run_submit)


def _register_score(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "score",
        help="batch-score a JSONL, CSV or Parquet file into JSONL, resumably",
        description="One output line per input row, in input order. Rerunning the same "
        "command after an interruption continues after the last whole line of OUT. "
        "Exit 0 when every row is ok, 1 when any row failed, 2 when answers stopped coming.",
    )
    parser.add_argument("input", type=Path, metavar="INPUT", help=".jsonl, .csv or .parquet")
    parser.add_argument("--out", type=Path, required=True, metavar="OUT", help="JSONL output")
    _add_target(parser)
    parser.add_argument("--rows-per-job", type=int, default=32, help="rows per job (default 32)")
    parser.add_argument("--max-in-flight", type=int, default=64, help="jobs in flight (default 64)")
    parser.add_argument(
        "--input-name",
        default="x",
        help="CSV/Parquet: input that the plain columns form row-wise (default x)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="seconds per job (default 60)"
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on stderr (default: when it is a terminal)",
    )
    add_kafka_options(parser)
    parser.set_defaults(func=run_score)


def _register_retrain(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "retrain",
        help="publish a retrain job and wait for the answer",
        description="Publish a RetrainJob for NAME and wait for its RetrainResult. "
        "Exit 0 on an ok RetrainResult, 1 on an error one or when no answer came.",
    )
    parser.add_argument("name", metavar="NAME")
    add_retrain_job_options(parser)
    parser.add_argument("--recipe", help="training recipe (default: the model's own)")
    parser.add_argument("--job-id", help="job id (default: random); the same id trains once")
    parser.add_argument(
        "--timeout", type=float, default=600.0, metavar="S", help="seconds to wait (600)"
    )
    add_kafka_options(parser)
    parser.set_defaults(func=run_retrain)


def _load_inputs(text: str) -> dict[str, list[Any]]:
    raw = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
    try:
        inputs = json.loads(raw)
    except ValueError as exc:
        raise SystemExit(f"--inputs is not valid JSON: {exc}") from exc
    if not isinstance(inputs, dict) or not all(isinstance(v, list) for v in inputs.values()):
        raise SystemExit('--inputs must be an object of named tensors: {"x": [[...], ...]}')
    return inputs


def _print(message: Result | RetrainResult) -> None:
    sys.stdout.write(encode(message).decode() + "\n")
    sys.stdout.flush()


def run_submit(args: argparse.Namespace) -> int:
    from producer.client import Client

    inputs = _load_inputs(args.inputs)
    with Client(kafka_settings(args), timeout_s=args.timeout) as client:
        try:
            handle = client.submit(
                args.model,
                inputs,
                job_id=args.job_id,
                deadline_ms=args.deadline_ms,
                **_target(args),
            )
        except JobTooLarge as exc:
            sys.stderr.write(f"maas submit: {exc}\n")
            return EXIT_FAILED
        try:
            reply = handle.result()
        except JobTimeout as exc:
            sys.stderr.write(f"maas submit: {exc}\n")
            return EXIT_TIMEOUT
    _print(reply)
    return EXIT_OK if reply.ok else EXIT_FAILED


def run_score(args: argparse.Namespace) -> int:
    from producer.client import Client
    from producer.score import Scorer, ScoreSettings

    if not args.input.exists():
        raise SystemExit(f"maas score: {args.input} does not exist")
    settings = ScoreSettings(
        model=args.model,
        rows_per_job=max(1, args.rows_per_job),
        max_in_flight=max(1, args.max_in_flight),
        timeout_s=args.timeout,
        input_name=args.input_name,
        **_target(args),
    )
    with ScoreProgress(args.progress) as progress, Client(kafka_settings(args)) as client:
        scorer = Scorer(client, settings, on_progress=progress.update)
        try:
            stats = scorer.run(args.input, args.out)
        except JobTooLarge as exc:
            sys.stderr.write(f"maas score: {exc}\n")
            return EXIT_FAILED
        except (JobTimeout, ClientError) as exc:
            sys.stderr.write(f"maas score: {exc}\nrerun the same command to resume\n")
            return EXIT_TIMEOUT
    rows = stats.skipped + stats.answered
    sys.stderr.write(
        f"maas score: {rows} rows in {args.out} ({stats.skipped} from an earlier run, "
        f"{stats.answered} scored now at {stats.rows_per_s:.0f} rows/s), {stats.failed} failed\n"
    )
    return EXIT_OK if stats.failed == 0 else EXIT_FAILED


class ScoreProgress:
    """A rich progress bar on stderr: rows answered of total, sent, failed, rows/s, ETA."""

    def __init__(self, mode: str) -> None:
        from rich.console import Console

        console = Console(stderr=True)
        self.enabled = mode == "always" or (mode == "auto" and console.is_terminal)
        self._console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ScoreProgress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("scoring"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("sent {task.fields[sent]} failed {task.fields[failed]}"),
                TextColumn("{task.fields[speed]:.0f} rows/s"),
                TimeRemainingColumn(),
                console=self._console,
            )
            self._progress.start()
        return self

    def update(self, stats: ScoreStats) -> None:
        if self._progress is None:
            return
        done = stats.skipped + stats.answered
        if self._task is None:
            self._task = self._progress.add_task(
                "scoring", total=stats.total, completed=stats.skipped, sent=0, failed=0, speed=0.0
            )
        self._progress.update(
            self._task,
            completed=done,
            sent=stats.skipped + stats.sent,
            failed=stats.failed,
            speed=stats.rows_per_s,
        )

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def run_retrain(args: argparse.Namespace) -> int:
    from rich.console import Console

    dataset = dataset_of(args.dataset)
    job = RetrainJob(
        job_id=args.job_id or f"manual-{uuid.uuid4().hex[:12]}",
        model=args.name,
        recipe=args.recipe,
        dataset=None if dataset is None else Dataset(**dataset),
        params=args.params,
        promote=args.promote,
    )
    status = Console(stderr=True, highlight=False, markup=False)
    try:
        result = asyncio.run(_retrain(args, job, status))
    except JobTimeout as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(_describe(result))
    return EXIT_OK if result.ok else EXIT_FAILED


async def _retrain(args: argparse.Namespace, job: RetrainJob, console: Console) -> RetrainResult:
    from producer.aio import AsyncClient

    started = time.monotonic()
    async with AsyncClient(kafka_settings(args), timeout_s=args.timeout) as client:
        waiting = asyncio.ensure_future(client.retrain(job))
        with console.status(f"retraining {job.model} (job {job.job_id})") as status:
            while not waiting.done():
                await asyncio.wait({waiting}, timeout=0.5)
                status.update(
                    f"retraining {job.model} (job {job.job_id}): "
                    f"{time.monotonic() - started:.0f}s elapsed"
                )
        return await waiting


def _describe(result: RetrainResult) -> str:
    if not result.ok:
        code = result.error.code if result.error else "INTERNAL"
        message = result.error.message if result.error else result.reason
        return f"retrain {result.job_id} failed: {code}: {message}"
    metrics = ", ".join(
        f"{k}={v:.4f}" for k, v in result.metrics.items() if k in ("accuracy", "f1", "duration_s")
    )
    verdict = "promoted to production" if result.promoted else "not promoted"
    return (
        f"{result.model} version {result.version} registered, {verdict}: {result.reason}\n"
        f"metrics: {metrics}"
    )
