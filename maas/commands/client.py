"""``maas submit``, ``maas score`` and ``maas retrain``: the client verbs."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maas.commands.common import (
    Subparsers,
    add_kafka_options,
    add_retrain_job_options,
    add_setting,
    add_verb,
    dataset_of,
    kafka_settings,
    positive_int,
)
from maas.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NO_ANSWER,
    EXIT_OK,
    CommandError,
    no_answer_errors,
    report,
)
from producer.cluster import TRAINER_GROUP
from producer.contract import numbers
from producer.contract.messages import (
    DEFAULT_ALIAS,
    Dataset,
    Result,
    RetrainJob,
    RetrainResult,
    encode,
)
from producer.contract.tenancy import InvalidTenant, check_tenant, tenant_from_env
from producer.errors import BrokerRefused, JobTimeout, JobTooLarge
from producer.score_settings import ScoreSettings

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from producer.aio import AsyncClient
    from producer.score import ScoreStats


# How long `maas retrain` waits for a member of the trainers' group before it says none
# consumes: a trainer started a moment ago (torch loads first) may still be joining.
TRAINER_JOIN_S = 10.0


def register(subparsers: Subparsers) -> None:
    add_verb(
        subparsers,
        "submit",
        run_submit,
        summary="publish one prediction job and print its Result as JSON",
        description="Publish one PredictJob and print its Result as one JSON line. Exit 0 on "
        "an ok Result, 1 on an error Result, 2 when no answer came in --timeout seconds "
        "(or the broker cannot be reached).",
        options=(_submit_options, _add_tenant, add_kafka_options),
    )
    add_verb(
        subparsers,
        "score",
        run_score,
        summary="batch-score a JSONL, CSV or Parquet file into JSONL, resumably",
        description="One output line per input row, in input order. Rerunning the same "
        "command after an interruption continues after the last whole line of OUT. "
        "Rows an earlier run wrote as failures are scored again. Exit 0 when every row is ok, "
        "1 when any row failed, 2 when answers stopped coming (or the broker cannot be "
        "reached).",
        options=(_score_options, _add_tenant, add_kafka_options),
    )
    add_verb(
        subparsers,
        "retrain",
        run_retrain,
        summary="publish a retrain job and wait for the answer",
        description="Publish a RetrainJob for NAME and wait for its RetrainResult. "
        "Exit 0 on an ok RetrainResult, 1 on an error one or when no answer came.",
        options=(_retrain_options, _add_tenant, add_kafka_options),
    )


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="M", help="model name")
    parser.add_argument("--version", type=int, metavar="V", help="explicit version number")
    parser.add_argument(
        "--alias",
        default=DEFAULT_ALIAS,
        metavar="A",
        help=f"alias used without --version (default {DEFAULT_ALIAS})",
    )
    parser.add_argument(
        "--priority", type=int, default=0, metavar="P", help="higher first (default 0)"
    )


def _target(args: argparse.Namespace) -> dict[str, Any]:
    """The job options that :func:`_add_target` reads, besides the model."""
    return {"version": args.version, "alias": args.alias, "priority": args.priority}


def _submit_options(parser: argparse.ArgumentParser) -> None:
    _add_target(parser)
    parser.add_argument(
        "--inputs",
        required=True,
        metavar="JSON",
        help="named tensors, e.g. '{\"x\": [[0, 1, ...]]}', or @file.json",
    )
    parser.add_argument("--deadline-ms", type=int, metavar="D", help="epoch milliseconds")
    parser.add_argument("--job-id", metavar="ID", help="job id (default: random)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for the answer (default 30)",
    )


def _score_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="INPUT", help=".jsonl, .csv or .parquet")
    parser.add_argument("--out", type=Path, required=True, metavar="OUT", help="JSONL output")
    _add_target(parser)
    add_setting(
        parser,
        "--rows-per-job",
        ScoreSettings,
        "rows_per_job",
        "rows per job",
        type=positive_int,
        metavar="N",
    )
    add_setting(
        parser,
        "--max-in-flight",
        ScoreSettings,
        "max_in_flight",
        "jobs in flight",
        type=positive_int,
        metavar="N",
    )
    add_setting(
        parser,
        "--input-name",
        ScoreSettings,
        "input_name",
        "CSV/Parquet: input that the plain columns form row-wise",
        metavar="NAME",
    )
    add_setting(parser, "--timeout", ScoreSettings, "timeout_s", "seconds per job", metavar="S")
    parser.add_argument(
        "--binary",
        action="store_true",
        help="send each job as an Open Inference Protocol request in the binary layout "
        "(tensors as raw bytes, not JSON numbers; see docs/oip.md)",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on stderr (default: when it is a terminal)",
    )


def _retrain_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME")
    add_retrain_job_options(parser)
    parser.add_argument("--recipe", help="training recipe (default: the model's own)")
    parser.add_argument(
        "--job-id", metavar="ID", help="job id (default: random); the same id trains once"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds to wait (default 600); also the job's deadline: a trainer that takes "
        "it later answers EXPIRED instead of training it",
    )
    parser.add_argument(
        "--trainer-group",
        default=TRAINER_GROUP,
        metavar="G",
        help="the trainers' consumer group; with no member in it, nothing is sent "
        f"(default {TRAINER_GROUP}, as maas trainer's --group-id)",
    )


def _add_tenant(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tenant",
        metavar="T",
        help="act for tenant T: send to its job topics, read its results (env MAAS_TENANT; "
        "default: the default tenant's maas.predict, maas.results, ...)",
    )


def _tenant(args: argparse.Namespace) -> str | None:
    """``--tenant``, else ``MAAS_TENANT``, else None (the default tenant)."""
    try:
        return check_tenant(args.tenant) if args.tenant else tenant_from_env()
    except InvalidTenant as exc:
        raise CommandError(str(exc)) from exc


def _load_inputs(text: str) -> dict[str, list[Any]]:
    """``--inputs``: JSON, or ``@file`` holding JSON; an object of named tensors."""
    source = "--inputs"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"--inputs: cannot read {source}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise CommandError(f"--inputs: {source} is not UTF-8 text: {exc.reason}") from exc
    try:
        inputs = numbers.loads(text)
    except numbers.NumberOutOfRange as exc:
        raise CommandError(f"{source}: {exc}") from exc
    except ValueError as exc:
        raise CommandError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(inputs, dict) or not all(isinstance(v, list) for v in inputs.values()):
        raise CommandError(f'{source} must be an object of named tensors: {{"x": [[...], ...]}}')
    return inputs


def _print(message: Result | RetrainResult) -> None:
    sys.stdout.write(encode(message).decode() + "\n")
    sys.stdout.flush()


def run_submit(args: argparse.Namespace) -> int:
    from producer.client import Client

    inputs = _load_inputs(args.inputs)
    try:
        with Client(kafka_settings(args), tenant=_tenant(args), timeout_s=args.timeout) as client:
            handle = client.submit(
                args.model,
                inputs,
                job_id=args.job_id,
                deadline_ms=args.deadline_ms,
                **_target(args),
            )
            reply = handle.result()
    except (JobTooLarge, BrokerRefused) as exc:  # sending it again cannot help
        report(exc)
        return EXIT_FAILED
    except no_answer_errors() as exc:  # no answer: none came, or no broker
        report(exc)
        return EXIT_NO_ANSWER
    _print(reply)
    return EXIT_OK if reply.ok else EXIT_FAILED


def run_score(args: argparse.Namespace) -> int:
    from producer.client import Client
    from producer.score import Scorer, input_format

    input_format(args.input)  # a missing file or an unknown format, before connecting
    settings = ScoreSettings(
        model=args.model,
        rows_per_job=args.rows_per_job,
        max_in_flight=args.max_in_flight,
        timeout_s=args.timeout,
        input_name=args.input_name,
        encoding="binary" if args.binary else "json",
        **_target(args),
    )
    try:
        client = Client(kafka_settings(args), tenant=_tenant(args))
        with ScoreProgress(args.progress) as progress, client:
            stats = Scorer(client, settings, on_progress=progress.update).run(args.input, args.out)
    except (JobTooLarge, BrokerRefused) as exc:  # a row too big, bad credentials: no rerun helps
        report(exc)
        return EXIT_FAILED
    except no_answer_errors() as exc:  # answers stopped coming, or no broker
        report(exc)
        sys.stderr.write("rerun the same command to resume\n")
        return EXIT_NO_ANSWER
    sys.stderr.write(_score_summary(stats, args.out))
    return EXIT_OK if stats.failed == 0 and stats.stopped is None else EXIT_FAILED


def _score_summary(stats: ScoreStats, out: Path) -> str:
    """What a run did, the first distinct errors, and why it stopped early, if it did."""
    retried = f", {stats.retried} of them failed before" if stats.retried else ""
    lines = [
        f"maas score: {stats.skipped + stats.answered} rows in {out} ({stats.skipped} kept "
        f"from an earlier run, {stats.answered} scored now{retried}, at "
        f"{stats.rows_per_s:.0f} rows/s), {stats.failed} failed"
    ]
    if stats.stopped is not None:
        lines[0] = f"maas score: stopped after {stats.answered} rows"
    for (code, message), count in stats.errors.items():
        lines.append(f"  {count} row{'s' if count != 1 else ''}: {code}: {message}")
    if stats.other_errors:
        lines.append(f"  {stats.other_errors} more with other errors (see {out})")
    if stats.stopped is not None:
        lines.append(
            f"error: {stats.stopped}. Fix that and run the same command again: rows already "
            f"scored ok in {out} are kept, failed ones are scored again"
        )
    return "".join(f"{line}\n" for line in lines)


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
        deadline_ms=int((time.time() + args.timeout) * 1000),
    )
    status = Console(stderr=True, highlight=False, markup=False)
    try:
        result = asyncio.run(_retrain(args, job, status))
    except JobTimeout as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:  # one line, the waiting task's error retrieved (see _retrain)
        print(
            f"interrupted: stopped waiting for retrain job {job.job_id}; a trainer that "
            "takes it after its deadline answers EXPIRED",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(_describe(result))
    return EXIT_OK if result.ok else EXIT_FAILED


async def _retrain(args: argparse.Namespace, job: RetrainJob, console: Console) -> RetrainResult:
    from producer.aio import AsyncClient

    started = time.monotonic()
    client = AsyncClient(kafka_settings(args), tenant=_tenant(args), timeout_s=args.timeout)
    async with client:
        await _trainer_consuming(client, args.trainer_group)
        waiting = asyncio.ensure_future(client.retrain(job))
        try:
            with console.status(f"retraining {job.model} (job {job.job_id})") as status:
                while not waiting.done():
                    await asyncio.wait({waiting}, timeout=0.5)
                    status.update(
                        f"retraining {job.model} (job {job.job_id}): "
                        f"{time.monotonic() - started:.0f}s elapsed"
                    )
            return await waiting
        finally:  # interrupted: the client's close fails the wait; no one is left to see it
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)


async def _trainer_consuming(client: AsyncClient, group: str) -> None:
    """Refuse, before sending, a job that no trainer would read (after a few seconds: a
    trainer started just now may still be joining its group)."""
    from producer.cluster import group_members

    deadline = time.monotonic() + TRAINER_JOIN_S
    while await group_members(client.settings, group) == 0:
        if time.monotonic() > deadline:
            raise CommandError(
                f"no trainer is consuming {client.topics.retrain}: the consumer group "
                f"{group} has had no members for {TRAINER_JOIN_S:g}s, so nothing was sent. "
                "Start one (`maas trainer`; `maas up` runs one) and run this again"
            )
        await asyncio.sleep(0.5)


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
