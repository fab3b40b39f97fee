"""The metric store: serving-metric windows, written in bulk by workers, read by policies."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, select

from registry import convert
from registry.db import Database
from registry.entities import MetricWindow
from registry.errors import ModelNotFound
from registry.rows import model_row, no_model
from registry.tables import AliasRow, MetricWindowRow, ModelRow


class MetricStore:
    """Metric windows of the registered models; every method is one transaction."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def record_windows(self, windows: Sequence[MetricWindow]) -> None:
        """Store serving-metric windows in one bulk insert."""
        if not windows:
            return
        with self._db.session() as session:
            names = {w.model for w in windows}
            ids = dict(
                session.execute(
                    select(ModelRow.name, ModelRow.id).where(ModelRow.name.in_(names))
                ).all()
            )
            missing = sorted(names - ids.keys())
            if missing:
                raise ModelNotFound(no_model(missing[0]))
            values = [convert.window_values(w, ids[w.model]) for w in windows]
            session.execute(insert(MetricWindowRow), values)

    def windows(
        self, name: str, version: int | None = None, since: datetime | None = None
    ) -> list[MetricWindow]:
        """Metric windows of ``name`` (one version, those starting at or after ``since``)."""
        with self._db.session() as session:
            model = model_row(session, name)
            query = select(MetricWindowRow).where(MetricWindowRow.model_id == model.id)
            if version is not None:
                query = query.where(MetricWindowRow.version == version)
            if since is not None:
                query = query.where(MetricWindowRow.window_start >= since)
            rows = session.scalars(query.order_by(MetricWindowRow.window_start, MetricWindowRow.id))
            return [convert.window(row, name) for row in rows]

    def alias_windows(
        self, alias: str, since: datetime
    ) -> dict[tuple[str, int], list[MetricWindow]]:
        """By (model, version): the windows since ``since`` of the version ``alias`` holds now.

        Models whose ``alias`` is unset, or whose holder served nothing since, are absent.
        """
        with self._db.session() as session:
            rows = session.execute(
                select(ModelRow.name, MetricWindowRow)
                .join(ModelRow, ModelRow.id == MetricWindowRow.model_id)
                .join(
                    AliasRow,
                    (AliasRow.model_id == MetricWindowRow.model_id)
                    & (AliasRow.version == MetricWindowRow.version),
                )
                .where(AliasRow.alias == alias, MetricWindowRow.window_start >= since)
                .order_by(ModelRow.name, MetricWindowRow.window_start, MetricWindowRow.id)
            )
            served: dict[tuple[str, int], list[MetricWindow]] = {}
            for name, row in rows:
                served.setdefault((name, row.version), []).append(convert.window(row, name))
            return served
