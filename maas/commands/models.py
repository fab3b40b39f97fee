"""``maas models``: register, inspect, promote, roll back and archive model versions."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from rich.table import Table

from maas.commands import optimize
from maas.commands.common import actor, add_kafka_options, console, with_store
from registry import (
    MetricWindow,
    ModelVersion,
    Signature,
    Store,
    TensorSpec,
)

Handler = Callable[[Store, argparse.Namespace], int]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "models",
        help="register, list, promote and roll back model versions",
        description="Manage the model registry: versions, aliases and their history.",
    )
    verbs = parser.add_subparsers(dest="models_command", metavar="VERB", required=True)
    common = _registry_options()

    def verb(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(func=with_store(handler, announce=True))
        return sub

    sub = verb("register", _register, "register a model file or directory as the next version")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("artifact", metavar="ARTIFACT", type=Path, help="model.onnx, or a directory")
    sub.add_argument("--promote", action="store_true", help="point the alias at the new version")
    _alias_and_reason(sub)
    verb("list", _list, "list registered models")
    verb("show", _show, "show a model's versions, aliases and signatures").add_argument("name")
    sub = verb("promote", _promote, "point an alias (default production) at a version")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("version", metavar="VERSION", type=int)
    _alias_and_reason(sub)
    sub = verb("rollback", _rollback, "move an alias back to the version it held before")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("--to", type=int, metavar="VERSION", help="roll back to this version")
    _alias_and_reason(sub)
    verb("history", _history, "every move of a model's aliases").add_argument("name")
    sub = verb("stats", _stats, "serving metrics per version, one row per window")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("--version", type=int, help="only this version")
    sub.add_argument("--limit", type=int, default=20, help="latest windows per version (20)")
    sub = verb("archive", _archive, "archive a version no alias points to")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("version", metavar="VERSION", type=int)
    sub.add_argument("--reason", default="", help="why, for the audit log")
    optimize.add_verb(verb)


def _registry_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--database-url", help="registry database (default: $MAAS_DATABASE_URL or a SQLite file)"
    )
    common.add_argument(
        "--artifact-dir", type=Path, help="artifact store (default: $MAAS_ARTIFACT_DIR)"
    )
    common.add_argument("--actor", help="who is acting, for the audit log (default: $USER@host)")
    add_kafka_options(common)  # alias moves are announced on the control topic
    return common


def _alias_and_reason(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alias", default="production", help="alias to move (production)")
    parser.add_argument("--reason", default="", help="why, for the audit log")


# -- verbs --------------------------------------------------------------------------------


def _register(store: Store, args: argparse.Namespace) -> int:
    version = store.register(
        args.name,
        args.artifact,
        actor=actor(args),
        reason=args.reason,
        promote=args.promote,
        alias=args.alias,
    )
    print(
        f"registered {version.model} version {version.version} "
        f"({version.format}, sha256 {version.sha256[:12]})"
    )
    if args.promote:
        print(f"{args.alias} -> {version.version}")
    return 0


def _list(store: Store, args: argparse.Namespace) -> int:
    models = store.list_models()
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


def _show(store: Store, args: argparse.Namespace) -> int:
    versions = store.versions(args.name)
    aliases = store.aliases(args.name)
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
            _signature(version),
        )
    out = console()
    out.print(table)
    for line in optimize.measured(versions):
        out.print(line)
    return 0


def _promote(store: Store, args: argparse.Namespace) -> int:
    move = store.promote(
        args.name, args.version, alias=args.alias, actor=actor(args), reason=args.reason
    )
    print(f"{move.model} {move.alias}: {_opt(move.previous_version)} -> {move.version}")
    return 0


def _rollback(store: Store, args: argparse.Namespace) -> int:
    move = store.rollback(
        args.name, alias=args.alias, to=args.to, actor=actor(args), reason=args.reason
    )
    print(f"rolled back {move.model} {move.alias}: {move.previous_version} -> {move.version}")
    return 0


def _history(store: Store, args: argparse.Namespace) -> int:
    moves = store.alias_history(args.name)
    if not moves:
        print(f"no alias of {args.name} has moved yet")
        return 0
    lineage = {v.version: _lineage(v) for v in store.versions(args.name)}
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


def _stats(store: Store, args: argparse.Namespace) -> int:
    windows = store.windows(args.name, args.version)
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
    title = (
        f"{name} version {version}: {len(windows)} of {total} windows, {jobs} jobs, "
        f"error rate {errors / jobs if jobs else 0.0:.2%}"
    )
    table = Table(title=title, title_justify="left", box=None)
    headers = ("START", "WORKER", "JOBS", "ROWS", "ERRORS", "QUEUE ms p50/95/99")
    for header in (*headers, "INFER ms p50/95/99", "BATCH", "ROWS/s"):
        table.add_column(header, justify="left" if header in ("START", "WORKER") else "right")
    for w in windows:
        table.add_row(
            _time(w.start),
            w.worker,
            str(w.jobs),
            str(w.rows),
            _errors(w.errors),
            _triple(w.queue_ms_p50, w.queue_ms_p95, w.queue_ms_p99),
            _triple(w.infer_ms_p50, w.infer_ms_p95, w.infer_ms_p99),
            f"{w.mean_batch_size:.1f}",
            f"{w.rows_per_s:.1f}",
        )
    return table


def _archive(store: Store, args: argparse.Namespace) -> int:
    version = store.archive(args.name, args.version, actor=actor(args), reason=args.reason)
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


def _signature(version: ModelVersion) -> str:
    signature: Signature = version.signature
    text = " (text)" if signature.text_input else ""
    return f"{_tensors(signature.inputs)} -> {_tensors(signature.outputs)}{text}"


def _tensors(specs: Iterable[TensorSpec]) -> str:
    return ", ".join(
        f"{t.name}: {t.dtype}[{','.join('?' if d is None else str(d) for d in t.shape)}]"
        for t in specs
    )
