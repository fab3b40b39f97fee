"""``maas models``: register, inspect, promote, roll back and archive model versions."""

from __future__ import annotations

import argparse
import functools
from argparse import ArgumentParser
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from rich.table import Table

from maas.commands import drift, optimize, quality
from maas.commands.common import (
    Subparsers,
    actor,
    add_kafka_options,
    add_registry_options,
    add_verb_group,
    console,
    registry_settings,
    with_registry,
)

if TYPE_CHECKING:  # the registry is imported when a verb runs, not by `maas --help`
    from registry import MetricWindow, ModelVersion, Registry
    from registry.drafts import Draft

Handler: TypeAlias = "Callable[[Registry, argparse.Namespace], int]"


class _Verbs:
    """The ``maas models`` group, adding its verbs: those that change the registry take
    the actor and the Kafka options (alias moves are announced); those that only read
    take neither and never create a registry."""

    def __init__(self, subparsers: Subparsers) -> None:
        self._verbs = add_verb_group(
            subparsers,
            "models",
            summary="register, list, promote and roll back model versions",
            description="Manage the model registry: versions, aliases and their history.",
        )
        self._reads, self._changes = _options(changes=False), _options(changes=True)

    def add(
        self, name: str, handler: Handler, text: str, *, changes: bool, named: bool = True
    ) -> ArgumentParser:
        parent = self._changes if changes else self._reads
        sub = self._verbs.add_parser(name, parents=[parent], help=text, description=text)
        if named:
            sub.add_argument("name", metavar="NAME", help="the model's name")
        sub.set_defaults(func=with_registry(handler, announce=changes, create=changes))
        return sub


def register(subparsers: Subparsers) -> None:
    verbs = _Verbs(subparsers)
    _verbs_that_change(verbs)
    _verbs_that_read(verbs)


def _verbs_that_change(verbs: _Verbs) -> None:
    sub = verbs.add(
        "register",
        _register,
        "register a model file or directory as the next version",
        changes=True,
    )
    sub.add_argument("artifact", metavar="ARTIFACT", type=Path, help="model.onnx, or a directory")
    sub.add_argument("--promote", action="store_true", help="point the alias at the new version")
    _alias_and_reason(sub)
    _force(sub, "with --promote: promote")
    sub = verbs.add(
        "promote", _promote, "point an alias (default production) at a version", changes=True
    )
    sub.add_argument("version", metavar="VERSION", type=int)
    _alias_and_reason(sub)
    _force(sub, "promote")
    sub = verbs.add(
        "rollback", _rollback, "move an alias back to the version it held before", changes=True
    )
    sub.add_argument("--to", type=int, metavar="VERSION", help="roll back to this version")
    _alias_and_reason(sub)
    _force(sub, "roll back")
    sub = verbs.add("archive", _archive, "archive a version no alias points to", changes=True)
    sub.add_argument("version", metavar="VERSION", type=int)
    sub.add_argument("--reason", default="", help="why, for the audit log")
    optimize.add_verb(functools.partial(verbs.add, changes=True))
    drift.add_verbs(
        functools.partial(verbs.add, changes=True), functools.partial(verbs.add, changes=False)
    )
    quality.add_verbs(
        functools.partial(verbs.add, changes=True), functools.partial(verbs.add, changes=False)
    )


def _verbs_that_read(verbs: _Verbs) -> None:
    text = "list registered models, and where the registry is"
    verbs.add("list", _list, text, changes=False, named=False)
    verbs.add("show", _show, "show a model's versions, aliases and signatures", changes=False)
    verbs.add("history", _history, "every move of a model's aliases", changes=False)
    sub = verbs.add(
        "stats", _stats, "serving metrics per version, one row per window", changes=False
    )
    sub.add_argument("--version", type=int, metavar="VERSION", help="only this version")
    sub.add_argument(
        "--limit", type=int, default=20, metavar="N", help="latest windows per version (default 20)"
    )


def _options(*, changes: bool) -> ArgumentParser:
    """The registry's options; verbs that change it also name the actor and announce
    alias moves on the control topic (the Kafka options)."""
    options = ArgumentParser(add_help=False)
    add_registry_options(options)
    if changes:
        options.add_argument(
            "--actor", help="who is acting, for the audit log (default: $USER@host)"
        )
        add_kafka_options(options)
    return options


def _force(parser: ArgumentParser, verb: str) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"{verb} even if the version's inputs (names, dtypes, shapes) or output names "
        "differ from what the alias serves now, which breaks its clients",
    )


def _alias_and_reason(parser: ArgumentParser) -> None:
    parser.add_argument("--alias", default="production", help="alias to move (default: production)")
    parser.add_argument("--reason", default="", help="why, for the audit log")


def _move(args: argparse.Namespace) -> dict[str, Any]:
    """How an alias moves, from the actor and the options that :func:`_alias_and_reason`
    and :func:`_force` add."""
    return {"alias": args.alias, "actor": actor(args), "reason": args.reason, "force": args.force}


# -- verbs --------------------------------------------------------------------------------


def _draft(args: argparse.Namespace) -> Draft:
    from registry.drafts import Draft

    return Draft(args.artifact, reason=args.reason, promote=args.promote)


def _register(registry: Registry, args: argparse.Namespace) -> int:
    version = registry.models.register(
        args.name,
        _draft(args),
        actor=actor(args),
        alias=args.alias,
        force=args.force,
    )
    print(
        f"registered {version.model} version {version.version} "
        f"({version.format}, sha256 {version.sha256[:12]})"
    )
    same = [
        v.version
        for v in registry.models.versions(version.model)
        if v.sha256 == version.sha256 and v.version != version.version
    ]
    if same:
        print(
            f"note: the same artifact is already version {', '.join(map(str, same))} of "
            f"{version.model}; version {version.version} is a copy of it (promote the "
            f"existing one instead: maas models promote {version.model} {same[-1]})"
        )
    if args.promote:
        print(f"{args.alias} -> {version.version}")
    return 0


def _list(registry: Registry, args: argparse.Namespace) -> int:
    models = registry.models.list_models()
    settings = registry_settings(args)
    print(f"registry: {settings.location}; artifacts: {settings.artifact_dir.resolve()}")
    if not models:
        print("no models registered yet; add one with: maas models register NAME ARTIFACT")
        return 0
    table = Table("MODEL", "VERSIONS", "LATEST", "ALIASES", box=None)
    for model in models:
        table.add_row(
            model.name, str(model.n_versions), _opt(model.latest_version), _aliases(model.aliases)
        )
    console().print(table)
    return 0


def _show(registry: Registry, args: argparse.Namespace) -> int:
    versions = registry.models.versions(args.name)
    aliases = registry.models.aliases(args.name)
    print(f"{args.name}: {len(versions)} version(s); aliases: {_aliases(aliases) or 'none'}")
    table = Table("VERSION", "FORMAT", "SHA256", "STATUS", "CREATED", "BY", "ALIASES", box=None)
    table.add_column("LINEAGE")
    table.add_column("SIGNATURE", overflow="fold")
    for version in versions:
        held = sorted(alias for alias, number in aliases.items() if number == version.version)
        table.add_row(
            str(version.version),
            version.format,
            version.sha256[:12],
            version.status,
            _time(version.created_at),
            version.created_by,
            ", ".join(held),
            _lineage(version),
            version.signature.describe(),
        )
    out = console()
    out.print(table)
    for line in [*filter(None, map(_trained, versions)), *optimize.measured(versions)]:
        out.print(line)
    for line in _references(registry, args.name):
        out.print(line)
    return 0


def _references(registry: Registry, name: str) -> list[str]:
    """One line per version with a reference profile: what drift is measured against."""
    from workers.drift import ReferenceProfile

    lines = []
    for reference in registry.drift.references(name):
        profile = ReferenceProfile.decode(reference.profile)
        lines.append(
            f"version {reference.version} reference: {reference.rows} rows ({reference.source}), "
            f"{len(profile.inputs)} input and {len(profile.outputs)} output features; "
            f"drift: maas models drift {name}"
        )
    return lines


_SHOWN_METRICS = ("accuracy", "f1", "auc", "rmse", "duration_s")


def _trained(version: ModelVersion) -> str:
    """What a trained version records: its held-out metrics, the production it was
    trained beside (its parent) and its dataset's hash; empty for one registered bare."""
    parts = []
    if version.parent_version is not None:
        parts.append(f"parent {version.parent_version}")
    if version.dataset_hash:
        parts.append(f"dataset {version.dataset_hash[:12]}")
    metrics = [
        f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}"
        for name, value in version.metrics.items()
        if name in _SHOWN_METRICS
    ]
    if not parts and not metrics:
        return ""
    return f"version {version.version}: " + "; ".join(
        [*parts, ", ".join(metrics)] if metrics else parts
    )


def _promote(registry: Registry, args: argparse.Namespace) -> int:
    move = registry.models.promote(args.name, args.version, **_move(args))
    if not move.moved:
        print(
            f"{move.model} {move.alias} already points to version {move.version}; nothing changed"
        )
        return 0
    print(f"{move.model} {move.alias}: {_opt(move.previous_version)} -> {move.version}")
    return 0


def _rollback(registry: Registry, args: argparse.Namespace) -> int:
    move = registry.models.rollback(args.name, to=args.to, **_move(args))
    print(f"rolled back {move.model} {move.alias}: {move.previous_version} -> {move.version}")
    return 0


def _history(registry: Registry, args: argparse.Namespace) -> int:
    moves = registry.models.alias_history(args.name)
    if not moves:
        print(f"no alias of {args.name} has moved yet")
        return 0
    lineage = {v.version: _lineage(v) for v in registry.models.versions(args.name)}
    table = Table("AT", "ALIAS", "KIND", "FROM", "TO", "ACTOR", "REASON", box=None)
    for move in moves:
        kind = f"{move.kind} (automatic)" if move.automatic else move.kind
        table.add_row(
            _time(move.at),
            move.alias,
            kind,
            _opt(move.previous_version),
            " ".join(filter(None, (str(move.version), lineage.get(move.version)))),
            move.actor,
            move.reason,
        )
    console().print(table)
    return 0


def _stats(registry: Registry, args: argparse.Namespace) -> int:
    windows = registry.metrics.windows(args.name, args.version)
    if not windows:
        print(f"no metric windows recorded for {args.name} yet; workers record them as they serve")
        return 0
    out = console()
    for number in sorted({w.version for w in windows}):
        mine = [w for w in windows if w.version == number]
        out.print(_stats_table(args.name, number, mine[-args.limit :], len(mine)))
    return 0


def _stats_table(name: str, version: int, windows: list[MetricWindow], total: int) -> Table:
    jobs = sum(w.jobs for w in windows)
    errors = sum(w.n_errors for w in windows)
    mistakes = sum(w.n_client_errors for w in windows)
    title = (
        f"{name} version {version}: {len(windows)} of {total} windows, {jobs} jobs, "
        f"error rate {errors / jobs if jobs else 0.0:.2%}"
    )
    caption = (
        f"client mistakes: {mistakes} ({mistakes / jobs if jobs else 0.0:.2%} of jobs), "
        "not in the error rate: only the model's and the service's errors count toward "
        "rollback and retraining"
    )
    table = Table(
        title=title, title_justify="left", caption=caption, caption_justify="left", box=None
    )
    headers = ("START", "WORKER", "JOBS", "ROWS", "ERRORS", "CLIENT ERRORS", "QUEUE ms p50/95/99")
    for header in (*headers, "INFER ms p50/95/99", "BATCH", "ROWS/s"):
        table.add_column(header, justify="left" if header in ("START", "WORKER") else "right")
    for w in windows:
        table.add_row(
            _time(w.start),
            w.worker,
            str(w.jobs),
            str(w.rows),
            _errors(w.errors),
            _errors(w.client_errors),
            _triple(w.queue_ms_p50, w.queue_ms_p95, w.queue_ms_p99),
            _triple(w.infer_ms_p50, w.infer_ms_p95, w.infer_ms_p99),
            f"{w.mean_batch_size:.1f}",
            f"{w.rows_per_s:.1f}",
        )
    return table


def _archive(registry: Registry, args: argparse.Namespace) -> int:
    version = registry.models.archive(
        args.name, args.version, actor=actor(args), reason=args.reason
    )
    print(f"archived {version.model} version {version.version}")
    return 0


# -- formatting ----------------------------------------------------------------------------


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)


def _aliases(aliases: dict[str, int]) -> str:
    return ", ".join(f"{alias} -> {version}" for alias, version in sorted(aliases.items()))


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{code}={n}" for code, n in sorted(errors.items()) if n) or "0"


def _triple(p50: float, p95: float, p99: float) -> str:
    return f"{p50:.1f}/{p95:.1f}/{p99:.1f}"


def _lineage(version: ModelVersion) -> str:
    """``int8-dynamic of 3`` for a version derived from version 3, else empty."""
    return f"{version.method} of {version.derived_from}" if version.method else ""
