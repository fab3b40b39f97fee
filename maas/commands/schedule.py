"""Retraining verbs: ``maas trainer``, ``maas scheduler``, ``maas schedule``.

``maas retrain`` (publish one retrain job) is a client verb: ``maas/commands/client.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from rich.table import Table

from maas.commands.common import (
    actor,
    add_kafka_options,
    add_registry_options,
    add_retrain_job_options,
    console,
    dataset_of,
    kafka_settings,
    registry_settings,
    with_registry,
)
from producer.control import alias_move_publisher
from registry.bundle import Registry
from workers.scheduler import MetricTrigger, Scheduler, SchedulerSettings

if TYPE_CHECKING:  # the trainer's modules import torch: only when it runs
    from workers.trainer import TrainerSettings

Handler = Callable[[Registry, argparse.Namespace], int]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _trainer_parser(subparsers)
    _scheduler_parser(subparsers)
    _schedule_parser(subparsers)


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
    parser.add_argument(
        "--recipes",
        type=lambda text: text.split(","),
        help="import paths of user recipes jobs may name, comma-separated "
        "(env MAAS_RECIPES; the built-in recipes are always allowed)",
    )
    parser.add_argument(
        "--data-root",
        action="append",
        help="a folder dataset files must lie in; repeat for several "
        "(env MAAS_DATA_ROOTS, ':'-separated; default ./.maas/data)",
    )
    parser.add_argument(
        "--allow-promote-always",
        action="store_true",
        help='let jobs ask for promote "always", skipping the evaluation gate (default: refused)',
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
    add_retrain_job_options(add)
    add.set_defaults(func=with_registry(_add))
    verbs.add_parser("list", parents=[common], help="list schedules").set_defaults(
        func=with_registry(_list)
    )
    remove = verbs.add_parser("remove", parents=[common], help="remove a schedule by id")
    remove.add_argument("id", type=int, metavar="ID")
    remove.set_defaults(func=with_registry(_remove))


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


def trainer_settings(args: argparse.Namespace) -> TrainerSettings:
    """The trainer's settings from its flags, and the environment where a flag is absent."""
    from workers.allowed import Allowed
    from workers.trainer import TrainerSettings

    allowed = Allowed.from_env(
        recipes=args.recipes,
        data_roots=args.data_root,
        promote_always=args.allow_promote_always,
    )
    return TrainerSettings(
        group_id=args.group_id, min_improvement=args.min_improvement, allowed=allowed
    )


def _run_trainer(args: argparse.Namespace) -> int:
    import torch

    from workers.recipes import RecipeError
    from workers.trainer import Trainer

    torch.set_num_threads(1)  # one trainer, one core: predictable next to the workers
    kafka = kafka_settings(args)
    settings = trainer_settings(args)
    hook = alias_move_publisher(kafka)
    with Registry.open(registry_settings(args), on_alias_move=hook) as registry:
        try:
            trainer = Trainer(kafka, registry.models, registry.runs, settings)
        except RecipeError as exc:  # a recipe the operator listed cannot be loaded
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return _until_signal(trainer.run)


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
