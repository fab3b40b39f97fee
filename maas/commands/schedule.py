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
from typing import TYPE_CHECKING, Any, TypeAlias

from rich.table import Table

from maas.commands.common import (
    Subparsers,
    actor,
    add_kafka_options,
    add_metrics_option,
    add_registry_options,
    add_retrain_job_options,
    add_setting,
    add_verb,
    add_verb_group,
    console,
    dataset_of,
    kafka_settings,
    registry_settings,
    with_registry,
)
from maas.errors import CommandError
from producer.control import alias_move_publisher
from registry import cron
from registry.errors import ModelNotFound
from workers.health import GENERIC_METRICS, Probe, served
from workers.training.scheduler import MetricTrigger, Scheduler, SchedulerSettings

if TYPE_CHECKING:  # the trainer's modules import torch: only when it runs
    from registry.registry import Registry
    from workers.training.trainer import TrainerSettings

Handler: TypeAlias = "Callable[[Registry, argparse.Namespace], int]"
Main = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


# -- parsers --------------------------------------------------------------------------------


def register(subparsers: Subparsers) -> None:
    add_verb(
        subparsers,
        "trainer",
        _run_trainer,
        summary="training worker for the retrain topic",
        description="Consume retrain jobs, train with the job's recipe, evaluate through the "
        "gate, register the new version (promoting it only if the gate says so) and answer.",
        options=(_trainer_options, add_kafka_options, add_registry_options),
    )
    add_verb(
        subparsers,
        "scheduler",
        _run_scheduler,
        summary="fire schedules stored in the registry (and the metric trigger)",
        description="Publish a retrain job per due schedule (once per due time, however many "
        "schedulers run) and when a production version's error rate crosses the limit.",
        options=(_scheduler_options, add_metrics_option, add_kafka_options, add_registry_options),
    )
    _schedule_verbs(
        add_verb_group(
            subparsers,
            "schedule",
            summary="add, list and remove retraining schedules",
            description="Cron schedules (UTC) that the scheduler turns into retrain jobs.",
        )
    )


def _trainer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--group-id", default="maas-trainers", help="consumer group (default maas-trainers)"
    )
    parser.add_argument(
        "--min-improvement",
        type=float,
        default=0.0,
        help="margin on the recipe's metric a candidate needs to be promoted (default 0)",
    )
    add_metrics_option(parser)
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
    parser.add_argument(
        "--max-dataset-mb",
        type=float,
        metavar="MB",
        help="largest dataset file a job may name; a larger one is refused naming the limit "
        "(env MAAS_TRAIN_MAX_DATASET_MB; default 512)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="a job's time budget: training stops past it, answered EXPIRED; a job may ask "
        "for less with the param time_budget_s (env MAAS_TRAIN_TIME_BUDGET_S; default 3600)",
    )
    parser.add_argument(
        "--max-work",
        type=lambda text: int(float(text)),
        metavar="N",
        help="most optimiser steps * model parameters a job may ask for, checked before "
        "training; over it: TOO_LARGE (env MAAS_TRAIN_MAX_WORK; default 1e11)",
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        metavar="N",
        help="starts of a run whose trainer stopped before it finished (a crash) before it "
        "is answered INTERNAL instead (env MAAS_TRAIN_MAX_ATTEMPTS; default 3)",
    )


def _scheduler_options(parser: argparse.ArgumentParser) -> None:
    add_setting(parser, "--interval", SchedulerSettings, "interval_s", "seconds between ticks")
    parser.add_argument("--no-metric-trigger", action="store_true", help="only fire cron schedules")
    add_setting(parser, "--max-error-rate", MetricTrigger, "max_error_rate", "metric trigger limit")
    add_setting(
        parser, "--min-jobs", MetricTrigger, "min_jobs", "jobs needed in the window to judge"
    )
    add_setting(parser, "--metric-window", MetricTrigger, "window_s", "seconds of windows summed")
    add_setting(
        parser,
        "--metric-cooldown",
        MetricTrigger,
        "cooldown_s",
        "at most one metric retrain per model per this many seconds, kept in memory",
    )


def _schedule_verbs(verbs: Subparsers) -> None:
    reads = argparse.ArgumentParser(add_help=False)
    add_registry_options(reads)
    changes = argparse.ArgumentParser(add_help=False, parents=[reads])
    changes.add_argument("--actor", help="who is acting, for the audit log (default: $USER@host)")

    def verb(name: str, parent: argparse.ArgumentParser, text: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, parents=[parent], help=text, description=text)

    add = verb(
        "add",
        changes,
        "retrain a model on a cron schedule; what the trainer would refuse when it fires "
        "(an unknown model, params or dataset) is refused now",
    )
    add.add_argument("name", metavar="NAME", help="the registered model to retrain")
    add.add_argument("--cron", required=True, help='five fields, UTC, e.g. "0 3 * * *"')
    add_retrain_job_options(add)
    add.set_defaults(func=with_registry(_add))
    verb("list", reads, "list the schedules and when each fires next").set_defaults(
        func=with_registry(_list, create=False)
    )
    remove = verb("remove", changes, "remove a schedule by the id that list shows")
    remove.add_argument("id", type=int, metavar="ID", help="the schedule's id")
    remove.set_defaults(func=with_registry(_remove))


# The metrics each long-running verb exports (name prefixes): its own, not those of
# modules it shares with the other or with a worker.
TRAINER_METRICS = ("maas_retrain", "maas_dead_letters")
SCHEDULER_METRICS = ("maas_scheduler",)


# -- long-running verbs ----------------------------------------------------------------------


def _until_signal(
    main: Main, args: argparse.Namespace, readiness: Probe, own: tuple[str, ...]
) -> int:
    """Run ``main`` until SIGTERM/SIGINT, serving probes and its ``own`` metrics (name
    prefixes) on --metrics-host:--metrics-port."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        only = (*own, *GENERIC_METRICS)
        async with served(args.metrics_port, readiness, host=args.metrics_host, only=only):
            await main(stop)

    asyncio.run(runner())
    return 0


def trainer_settings(args: argparse.Namespace) -> TrainerSettings:
    """The trainer's settings from its flags, and the environment where a flag is absent."""
    from workers.training.allowed import Allowed
    from workers.training.budget import TrainBudget
    from workers.training.trainer import TrainerSettings

    try:
        allowed = Allowed.from_env(
            recipes=args.recipes,
            data_roots=args.data_root,
            promote_always=args.allow_promote_always,
            max_dataset_mb=args.max_dataset_mb,
        )
        budget = TrainBudget.from_env(
            time_s=args.time_budget, max_work=args.max_work, max_attempts=args.max_attempts
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    return TrainerSettings(
        group_id=args.group_id,
        min_improvement=args.min_improvement,
        allowed=allowed,
        budget=budget,
    )


def _run_trainer(args: argparse.Namespace) -> int:
    import torch

    from workers.recipes import RecipeError
    from workers.training.trainer import Trainer

    torch.set_num_threads(1)  # one trainer, one core: predictable next to the workers
    kafka = kafka_settings(args)
    settings = trainer_settings(args)
    where = registry_settings(args)
    hook = alias_move_publisher(kafka, where.identity)
    from registry.registry import Registry

    with Registry.open(where, on_alias_move=hook) as registry:
        try:
            trainer = Trainer(
                kafka, registry.models, registry.runs, settings, tenants=registry.tenants
            )
        except RecipeError as exc:  # a recipe the operator listed cannot be loaded
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return _until_signal(trainer.run, args, trainer.readiness, TRAINER_METRICS)


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
    from registry.registry import Registry

    with Registry.open(registry_settings(args)) as registry:
        scheduler = Scheduler(kafka_settings(args), registry.runs, registry.metrics, settings)
        return _until_signal(scheduler.run, args, scheduler.readiness, SCHEDULER_METRICS)


# -- maas schedule ----------------------------------------------------------------------------


def _add(registry: Registry, args: argparse.Namespace) -> int:
    cron.validate(args.cron)
    _check_job(registry, args.name, dataset_of(args.dataset), args.params)
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


def _check_job(
    registry: Registry, model: str, dataset: dict[str, str] | None, params: dict[str, Any]
) -> None:
    """Refuse now what the trainer would refuse when the schedule fires: a model that is
    not registered, the recipe's params and dataset (the checks its ``train`` makes)."""
    from workers.recipes import (
        DatasetRef,
        RecipeError,
        TrainRequest,
        check_request,
        get_recipe,
        recipe_for,
    )

    try:
        registry.models.get_model(model)
    except ModelNotFound as exc:
        raise ModelNotFound(
            f"{exc}; a schedule retrains a registered model: register it, or train its "
            f"first version with maas retrain {model} --dataset ..., then add the schedule"
        ) from exc
    name = recipe_for(model)
    try:
        ref = (
            None
            if dataset is None
            else DatasetRef(uri=dataset.get("uri"), name=dataset.get("name"))
        )
        from workers.training.budget import without_budget  # the trainer's, not the recipe's

        request = TrainRequest(model=model, dataset=ref, params=without_budget(params))
        check_request(get_recipe(name), request)
    except RecipeError as exc:
        raise CommandError(
            f"the trainer would refuse this schedule (recipe {name!r}): {exc}"
        ) from exc


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
