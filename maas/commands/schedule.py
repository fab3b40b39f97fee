"""Retraining verbs: ``maas trainer``, ``maas scheduler``, ``maas schedule``, ``maas retrain``."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from maas.commands.common import (
    actor,
    add_kafka_options,
    add_registry_options,
    console,
    kafka_settings,
    registry_settings,
    with_registry,
)
from producer.control import alias_move_publisher
from producer.errors import JobTimeout
from producer.messages import Dataset, RetrainJob, RetrainResult
from registry.bundle import Registry
from workers.scheduler import MetricTrigger, Scheduler, SchedulerSettings

PROMOTE_CHOICES = ("gate", "never", "always")
Handler = Callable[[Registry, argparse.Namespace], int]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _trainer_parser(subparsers)
    _scheduler_parser(subparsers)
    _schedule_parser(subparsers)
    _retrain_parser(subparsers)


# -- parsers --------------------------------------------------------------------------------


def _trainer_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "trainer",
        help="training worker for the retrain topic",
        description="Consume retrain jobs, train with the job's recipe, evaluate through the "
        "gate, register the new version (promoting it only if the gate says so) and answer.",
    )
    parser.add_argument("--group-id", default="maas-trainers", help="consumer group")
    parser.add_argument(
        "--min-improvement",
        type=float,
        default=0.0,
        help="margin on the recipe's metric a candidate needs to be promoted (default 0)",
    )
    add_kafka_options(parser)
    add_registry_options(parser)
    parser.set_defaults(func=_run_trainer)


def _scheduler_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "scheduler",
        help="fire schedules stored in the registry (and the metric trigger)",
        description="Publish a retrain job per due schedule (once per due time, however many "
        "schedulers run) and when a production version's error rate crosses the limit.",
    )
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between ticks (5)")
    parser.add_argument("--no-metric-trigger", action="store_true", help="only fire cron schedules")
    parser.add_argument(
        "--max-error-rate", type=float, default=0.05, help="metric trigger limit (0.05)"
    )
    parser.add_argument(
        "--min-jobs", type=int, default=20, help="jobs needed in the window to judge (20)"
    )
    parser.add_argument(
        "--metric-window", type=float, default=300.0, help="seconds of windows summed (300)"
    )
    parser.add_argument(
        "--metric-cooldown",
        type=float,
        default=3600.0,
        help="at most one metric retrain per model per this many seconds (3600; in memory)",
    )
    add_kafka_options(parser)
    add_registry_options(parser)
    parser.set_defaults(func=_run_scheduler)


def _schedule_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "schedule",
        help="add, list and remove retraining schedules",
        description="Cron schedules (UTC) that the scheduler turns into retrain jobs.",
    )
    verbs = parser.add_subparsers(dest="schedule_command", metavar="VERB", required=True)
    common = argparse.ArgumentParser(add_help=False)
    add_registry_options(common)
    common.add_argument("--actor", help="who is acting, for the audit log (default: $USER@host)")

    add = verbs.add_parser("add", parents=[common], help="retrain a model on a cron schedule")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--cron", required=True, help='five fields, UTC, e.g. "0 3 * * *"')
    _job_options(add)
    add.set_defaults(func=with_registry(_add))
    verbs.add_parser("list", parents=[common], help="list schedules").set_defaults(
        func=with_registry(_list)
    )
    remove = verbs.add_parser("remove", parents=[common], help="remove a schedule by id")
    remove.add_argument("id", type=int, metavar="ID")
    remove.set_defaults(func=with_registry(_remove))


def _retrain_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "retrain",
        help="publish a retrain job and wait for the answer",
        description="Publish a RetrainJob for NAME and wait for its RetrainResult.",
    )
    parser.add_argument("name", metavar="NAME")
    _job_options(parser)
    parser.add_argument("--recipe", help="training recipe (default: the model's own)")
    parser.add_argument("--job-id", help="job id (default: random); the same id trains once")
    parser.add_argument(
        "--timeout", type=float, default=600.0, metavar="S", help="seconds to wait (600)"
    )
    add_kafka_options(parser)
    parser.set_defaults(func=_run_retrain)


def _job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", metavar="URI_OR_NAME", help="a file URI/path or a built-in dataset name"
    )
    parser.add_argument("--params", type=_json_object, default={}, help='JSON, e.g. {"epochs": 5}')
    parser.add_argument("--promote", choices=PROMOTE_CHOICES, default="gate", help="(gate)")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--params is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('--params must be a JSON object, e.g. {"epochs": 5}')
    return value


def dataset_of(text: str | None) -> dict[str, str] | None:
    """``--dataset``: a URI or path (has ``:`` or ``/`` or exists) or a built-in name."""
    if not text:
        return None
    if "://" in text or "/" in text or Path(text).exists():
        return {"uri": text}
    return {"name": text}


# -- long-running verbs ----------------------------------------------------------------------


def _until_signal(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> int:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())
    return 0


def _run_trainer(args: argparse.Namespace) -> int:
    import torch

    from workers.trainer import Trainer, TrainerSettings

    torch.set_num_threads(1)  # one trainer, one core: predictable next to the workers
    kafka = kafka_settings(args)
    settings = TrainerSettings(group_id=args.group_id, min_improvement=args.min_improvement)
    hook = alias_move_publisher(kafka)
    with Registry.open(registry_settings(args), on_alias_move=hook) as registry:
        return _until_signal(Trainer(kafka, registry.models, registry.runs, settings).run)


def _run_scheduler(args: argparse.Namespace) -> int:
    metric = None
    if not args.no_metric_trigger:
        metric = MetricTrigger(
            max_error_rate=args.max_error_rate,
            min_jobs=args.min_jobs,
            window_s=args.metric_window,
            cooldown_s=args.metric_cooldown,
        )
    settings = SchedulerSettings(interval_s=args.interval, metric=metric)
    with Registry.open(registry_settings(args)) as registry:
        scheduler = Scheduler(kafka_settings(args), registry.runs, registry.metrics, settings)
        return _until_signal(scheduler.run)


# -- maas schedule ----------------------------------------------------------------------------


def _add(registry: Registry, args: argparse.Namespace) -> int:
    schedule = registry.runs.add_schedule(
        args.name,
        args.cron,
        dataset=dataset_of(args.dataset),
        params=args.params,
        promote=args.promote,
        actor=actor(args),
    )
    print(
        f"schedule {schedule.id}: retrain {schedule.model} at {schedule.cron!r} (UTC), "
        f"next {schedule.next_fire_at:%Y-%m-%d %H:%M}Z"
    )
    return 0


def _list(registry: Registry, args: argparse.Namespace) -> int:
    table = Table("id", "model", "cron", "dataset", "params", "promote", "next fire", "last fire")
    for s in registry.runs.schedules():
        table.add_row(
            str(s.id),
            s.model,
            s.cron,
            json.dumps(s.dataset) if s.dataset else "-",
            json.dumps(s.params) if s.params else "-",
            s.promote,
            f"{s.next_fire_at:%Y-%m-%d %H:%M}Z",
            f"{s.last_fired_at:%Y-%m-%d %H:%M}Z" if s.last_fired_at else "-",
        )
    console().print(table)
    return 0


def _remove(registry: Registry, args: argparse.Namespace) -> int:
    registry.runs.remove_schedule(args.id, actor=actor(args))
    print(f"schedule {args.id} removed")
    return 0


# -- maas retrain -------------------------------------------------------------------------------


def _run_retrain(args: argparse.Namespace) -> int:
    dataset = dataset_of(args.dataset)
    job = RetrainJob(
        job_id=args.job_id or f"manual-{uuid.uuid4().hex[:12]}",
        model=args.name,
        recipe=args.recipe,
        dataset=None if dataset is None else Dataset(**dataset),
        params=args.params,
        promote=args.promote,
    )
    console = Console(stderr=True, highlight=False, markup=False)
    try:
        result = asyncio.run(_retrain(args, job, console))
    except JobTimeout as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(_describe(result))
    return 0 if result.ok else 1


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
