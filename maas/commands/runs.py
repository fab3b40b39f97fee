"""``maas runs``: the retraining runs in the registry, and cancelling one.

``cancel`` finishes a running run as cancelled; the trainer training it notices within
a few seconds and stops at its next optimiser step, and the job is answered with the
cancellation (see ``workers/training/budget.py``).
"""

from __future__ import annotations

import argparse

from rich.table import Table

from maas.commands.common import (
    Subparsers,
    actor,
    add_registry_options,
    add_verb_group,
    console,
    with_registry,
)
from registry.registry import Registry
from registry.runs import RUN_STATUSES

STATUSES = ("running", *RUN_STATUSES)


def register(subparsers: Subparsers) -> None:
    verbs = add_verb_group(
        subparsers,
        "runs",
        summary="list retraining runs, cancel a running one",
        description="Retraining runs, one per retrain job (by job_id), as the registry keeps them.",
    )
    reads = argparse.ArgumentParser(add_help=False)
    add_registry_options(reads)
    text = "list the newest retraining runs"
    listing = verbs.add_parser("list", parents=[reads], help=text, description=text)
    listing.add_argument("--model", metavar="NAME", help="only this model's runs")
    listing.add_argument("--status", choices=STATUSES, help="only runs in this status")
    listing.add_argument(
        "--limit", type=int, default=20, metavar="N", help="at most N runs (default 20)"
    )
    listing.set_defaults(func=with_registry(_list, create=False))
    text = (
        "cancel a running retraining run: its trainer stops at its next step, and the job "
        "is answered with the cancellation"
    )
    cancel = verbs.add_parser("cancel", parents=[reads], help=text, description=text)
    cancel.add_argument("job_id", metavar="JOB_ID", help="the run's job_id (maas runs list)")
    cancel.add_argument("--reason", default="", help="why, for the audit log and the answer")
    cancel.add_argument("--actor", help="who is acting, for the audit log (default: $USER@host)")
    cancel.set_defaults(func=with_registry(_cancel, create=False))


def _list(registry: Registry, args: argparse.Namespace) -> int:
    runs = registry.runs.runs(args.model, status=args.status, limit=args.limit)
    if not runs:
        print("no retraining runs recorded yet; a run starts when a trainer takes its job")
        return 0
    table = Table("JOB_ID", "MODEL", "TRIGGER", "STATUS", "VERSION", "STARTS", "STARTED", box=None)
    table.add_column("REASON")
    for run in runs:
        status = run.status if run.error_code is None else f"{run.status} ({run.error_code})"
        table.add_row(
            run.job_id,
            run.model,
            run.trigger,
            status,
            "-" if run.version is None else str(run.version),
            str(run.attempts),
            run.started_at.strftime("%Y-%m-%d %H:%M:%SZ"),
            run.reason,
        )
    console().print(table)
    return 0


def _cancel(registry: Registry, args: argparse.Namespace) -> int:
    run = registry.runs.cancel_run(args.job_id, actor=actor(args), reason=args.reason)
    print(
        f"cancelled run {run.job_id} of {run.model}: its trainer stops at its next step "
        "and answers the job with the cancellation"
    )
    return 0
