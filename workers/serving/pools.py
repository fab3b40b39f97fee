"""Which models a pinned pool serves, so that the general pool leaves their jobs to it.

``maas worker --model iris`` (a pinned pool) consumes the predict topics in a consumer
group of its own; ``maas worker`` (the general pool, every model) in ``<group_id>``.
Both read every job, so without a rule an iris job would be answered by each. The
rule: a model that a live pinned pool serves is that pool's alone.

The general pool learns which from the control topic, which every worker follows: a
pinned pool announces its models there every ``interval_s`` (a ``pool`` event), and a
model counts as pinned while its last announcement is under three intervals old. The
general pool's edge passes over those models' jobs (as a pinned pool passes over the
others'), and takes them up again once their pool has gone quiet. (Group membership
would say the same, but the embedded broker cannot describe groups.)

While a pinned pool starts or stops (up to one interval after it starts, three after it
stops) a job of its models can be answered by both pools, or, when the pinned pool stops
for good, be passed over by the general pool and left to the pinned pool's group:
started again, the pinned pool answers it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from producer.contract.messages import ControlEvent

log = structlog.get_logger(__name__)

SEPARATOR = "+"  # between a pinned pool's models in its announcement (names hold none)


def announcement(models: Iterable[str], worker: str) -> ControlEvent:
    """The control event by which a pinned pool says which models it serves."""
    return ControlEvent(
        event="pool",
        model=SEPARATOR.join(sorted(models)),
        actor=worker,
        at_ms=int(time.time() * 1000),
    )


@dataclass(slots=True)
class PinnedPools:
    """The models live pinned pools serve, from their announcements (:meth:`saw`)."""

    interval_s: float = 2.0
    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, float] = field(default_factory=dict)

    def saw(self, event: ControlEvent) -> None:
        """A pinned pool announced its models (a ``pool`` control event)."""
        now = self.clock()
        fresh = [m for m in event.model.split(SEPARATOR) if m and m not in self.models]
        for model in event.model.split(SEPARATOR):
            if model:
                self._seen[model] = now
        if fresh:
            log.info("a pinned pool serves these models; leaving them", models=fresh)

    @property
    def models(self) -> frozenset[str]:
        """The models announced within the last three intervals."""
        horizon = self.clock() - 3 * self.interval_s
        return frozenset(model for model, at in self._seen.items() if at >= horizon)


@dataclass(frozen=True, slots=True)
class PoolShare:
    """Which jobs a pool answers: a pinned pool's, those of ``models``; the general
    pool's (``models`` empty), every model but those ``pinned`` pools serve."""

    models: frozenset[str] = frozenset()
    pinned: PinnedPools | None = None

    def serves(self, model: str) -> bool:
        if self.models:
            return model in self.models
        return self.pinned is None or model not in self.pinned.models
