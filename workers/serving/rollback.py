"""Automatic rollback from the serving side: judge fresh promotions after each metrics flush.

The worker writes its metric windows to the registry every few seconds. Right after
each write (in the same thread, off the event loop) the watcher runs
:func:`registry.policy.check_rollback` for the models in those windows whose alias
was promoted recently. A rollback goes through the worker's model store, whose
``on_alias_move`` hook announces it on the control topic, so every worker swaps back.
Several workers may judge the same promotion; the first rollback wins and the others
find the alias already restored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from prometheus_client import Counter

from registry.entities import AliasMove, MetricWindow
from registry.errors import RegistryError
from registry.policy import (
    AliasRollbacks,
    RollbackPolicy,
    WindowReader,
    check_rollback,
    last_move,
)

log = structlog.get_logger(__name__)

WriteWindows = Callable[[Sequence[MetricWindow]], None]

ROLLBACKS = Counter("maas_rollbacks", "Automatic rollbacks this worker made", ["model"])


@dataclass(frozen=True, slots=True)
class RollbackSettings:
    """Whether workers roll back bad promotions, and the limits they hold them to."""

    enabled: bool = True
    policy: RollbackPolicy = field(default_factory=RollbackPolicy)
    alias: str = "production"
    watch_s: float = 3600.0  # a promotion is judged for this long after it happened


class RollbackWatcher:
    """Checks recently promoted models against the policy after their windows are written."""

    def __init__(
        self,
        models: AliasRollbacks,
        metrics: WindowReader,
        settings: RollbackSettings,
        *,
        actor: str,
    ) -> None:
        self._models = models
        self._metrics = metrics
        self._settings = settings
        self._actor = actor

    def wrap(self, write: WriteWindows) -> WriteWindows:
        """``write``, followed by a rollback check of the models it wrote windows for."""
        if not self._settings.enabled:
            return write

        def write_then_check(windows: Sequence[MetricWindow]) -> None:
            write(windows)
            for model in sorted({w.model for w in windows}):
                self.check(model)

        return write_then_check

    def check(self, model: str) -> AliasMove | None:
        """Roll ``model`` back if its recent promotion breaches the policy (never raises)."""
        try:
            if not self._recently_promoted(model):
                return None
            move = check_rollback(
                self._models,
                self._metrics,
                model,
                alias=self._settings.alias,
                policy=self._settings.policy,
                actor=self._actor,
            )
        except RegistryError as exc:  # e.g. another worker rolled back first
            log.warning("rollback check failed", model=model, error=str(exc))
            return None
        if move is not None:
            ROLLBACKS.labels(model).inc()
            log.warning(
                "version rolled back automatically",
                model=model,
                from_version=move.previous_version,
                version=move.version,
                reason=move.reason,
            )
        return move

    def _recently_promoted(self, model: str) -> bool:
        promoted = last_move(self._models.alias_history(model, self._settings.alias))
        if promoted is None or promoted.kind != "promote":
            return False
        age = datetime.now(UTC) - promoted.at  # the registry's times are aware UTC
        return age <= timedelta(seconds=self._settings.watch_s)
