"""``maas models optimize``: an int8 version derived from a registered one, measured
against it on this machine (the work is :mod:`workers.optimize`'s; this is the glue)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from maas.commands.common import actor, console

if TYPE_CHECKING:
    from registry import ModelVersion, Registry
    from workers.optimize import Comparison, Optimized, Quality

Handler: TypeAlias = "Callable[[Registry, argparse.Namespace], int]"
Verb = Callable[[str, Handler, str], argparse.ArgumentParser]


def add_verb(verb: Verb) -> None:
    """Add ``optimize`` to the ``maas models`` group through its ``verb`` factory (which
    adds the model's NAME and the options of the verbs that change the registry)."""
    sub = verb(
        "optimize",
        _optimize,
        "register an int8 version derived from VERSION, measured against it",
    )
    sub.add_argument("version", metavar="VERSION", type=int)
    sub.add_argument(
        "--quantize",
        choices=("dynamic", "static"),
        default="dynamic",
        help="dynamic: int8 weights (default); static: int8 weights and activations (QDQ), "
        "calibrated on rows",
    )
    sub.add_argument(
        "--calibration",
        metavar="DATA",
        type=Path,
        help="rows to calibrate and measure on (JSONL, CSV or Parquet, as maas score reads; "
        "a 'label' column adds accuracy); default: the held-out rows the version carries",
    )
    sub.add_argument(
        "--max-drop",
        type=float,
        default=0.01,
        help="the most quality may drop for the version to be promoted (default 0.01)",
    )
    sub.add_argument(
        "--promote",
        action="store_true",
        help="promote it if its quality drop is within --max-drop and it is faster",
    )
    sub.add_argument("--alias", default="production", help="alias to promote (default: production)")


def _optimize(registry: Registry, args: argparse.Namespace) -> int:
    from workers.optimize import OptimizeError, Request, optimize  # onnxruntime.quantization

    try:
        request = Request(
            args.name,
            args.version,
            method=args.quantize,
            calibration=args.calibration,
            max_drop=args.max_drop,
            promote=args.promote,
            alias=args.alias,
        )
        with tempfile.TemporaryDirectory(prefix="maas-optimize-") as workdir, _bar() as bar:
            done = optimize(
                registry.models, request, Path(workdir), actor=actor(args), progress=bar
            )
    except (OptimizeError, ValueError) as exc:
        print(f"error: {exc}; nothing was registered", file=sys.stderr)
        return 1
    _print(done, args.alias)
    return 0


@contextmanager
def _bar() -> Iterator[Callable[[str, float], None]]:
    """A progress bar on stderr when it is a terminal, gone when done; yields the
    ``progress`` callback."""
    terminal = Console(stderr=True)
    if not terminal.is_terminal:
        yield lambda stage, fraction: None
        return
    columns = (
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=terminal, transient=True) as progress:
        task = progress.add_task("check", total=1.0)

        def update(stage: str, fraction: float) -> None:
            progress.update(task, description=stage, completed=fraction)

        yield update


def _print(done: Optimized, alias: str) -> None:
    version, candidate = done.version, done.candidate
    print(
        f"registered {version.model} version {version.version}: {candidate.method} of "
        f"version {version.derived_from} (sha256 {version.sha256[:12]}), measured on "
        f"{candidate.comparison.rows} {candidate.evaluated_on}"
        + (f", calibrated on {candidate.calibrated_on}" if candidate.calibrated_on else "")
    )
    console().print(figures(version, candidate.comparison))
    if done.verdict.promote:
        print(f"{alias} -> {version.version}: {done.verdict.decision}")
    else:
        print(done.verdict.decision)


def measured(versions: Iterable[ModelVersion]) -> Iterator[str]:
    """A line of figures for each version measured against the one it was derived from."""
    derived = [v for v in versions if v.method]
    if not derived:
        return
    from workers.optimize.report import from_metrics, summary

    for version in derived:
        comparison = from_metrics(version.metrics)
        if comparison is not None:
            yield (
                f"version {version.version} ({version.method} of {version.derived_from}) "
                f"measured {summary(comparison)}"
            )


def figures(version: ModelVersion, comparison: Comparison) -> Table:
    """The derived version against its source: quality, size and speed."""
    from workers.optimize.report import rate

    c = comparison
    table = Table("", f"VERSION {version.version}", f"VERSION {version.derived_from}", "", box=None)
    table.add_row(*_quality_cells(c.quality))
    table.add_row(
        "size", f"{c.candidate_bytes:,} B", f"{c.parent_bytes:,} B", f"{c.size_ratio:.2f}x"
    )
    table.add_row(
        "rows/s",
        f"{rate(c.candidate.rows_per_s)} (batch {c.candidate.batch_size})",
        f"{rate(c.parent.rows_per_s)} (batch {c.parent.batch_size})",
        f"{c.speedup:.2f}x",
    )
    return table


def _quality_cells(q: Quality) -> tuple[str, str, str, str]:
    drop = f"drop {q.drop:.4f}"
    if q.metric == "accuracy":
        agree = f", labels agree on {q.agreement:.2%}"
        return "accuracy", f"{q.accuracy:.4f}", f"{q.parent_accuracy:.4f}", drop + agree
    if q.metric == "agreement":
        return "labels", f"agree on {q.agreement:.2%}", "", drop
    cosine = f"mean {q.cosine_mean:.4f}, worst {q.cosine_min:.4f}"
    return "cosine", cosine, "", drop
