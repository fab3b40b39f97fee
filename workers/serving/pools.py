"""Which models a pinned pool serves, so that the general pool leaves their jobs to it.

``maas worker --model iris`` (a pinned pool) consumes the predict topics in a consumer
group of its own, ``<group_id>.iris``; ``maas worker`` (the general pool, every model)
consumes them in ``<group_id>``. Both read every job, so without a rule an iris job
would be answered by each. The rule: a model that a live pinned pool serves is that
pool's alone. The general pool learns which from the group membership: every
``interval_s`` it describes the consumer groups named ``<group_id>.<model>[+<model>...]``
(model names hold no ``+``): those the broker lists, and ``<group_id>.<model>`` for
every registered model (the embedded broker lists no groups); it takes the models of
those that have members. Its edge
passes over those models' jobs (as a pinned pool passes over the others'), and takes
them up again once their pool's group is empty.

While a pinned pool starts or stops (up to ``interval_s`` after its group gains or
loses its members) a job of its models can be answered by both pools, or, when the
pinned pool stops for good, be passed over by the general pool and left to the pinned
pool's group: started again, the pinned pool answers it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import structlog
from aiokafka.admin import AIOKafkaAdminClient

from producer.kafka import KafkaSettings

log = structlog.get_logger(__name__)

_LIVE = frozenset({"Stable", "PreparingRebalance", "CompletingRebalance"})


def pinned_models(group_id: str, groups: Iterable[tuple[str, str, int]]) -> frozenset[str]:
    """The models of the pinned pools among ``groups`` (name, state, members) that
    have members; a pinned pool's group is ``<group_id>.<model>[+<model>...]``."""
    prefix = f"{group_id}."
    models: set[str] = set()
    for name, state, members in groups:
        if name.startswith(prefix) and members and state in _LIVE:
            models.update(name[len(prefix) :].split("+"))
    return frozenset(models)


class PinnedPools:
    """The models served by live pinned pools beside the general pool in ``group_id``,
    read every ``interval_s`` (:meth:`run`); ``models`` is the last reading."""

    def __init__(
        self,
        kafka: KafkaSettings,
        group_id: str,
        registered: Callable[[], Awaitable[Iterable[str]]],
        *,
        interval_s: float = 2.0,
    ) -> None:
        """``registered``: the registry's model names (a pinned pool of one model is
        looked for by its group's name: the embedded broker lists no groups)."""
        self._kafka, self._group_id, self._interval_s = kafka, group_id, interval_s
        self._registered = registered
        self.models: frozenset[str] = frozenset()

    async def _candidates(self, admin: AIOKafkaAdminClient) -> list[str]:
        """The groups that may be pinned pools': those listed under the general group's
        name, and one per registered model."""
        prefix = f"{self._group_id}."
        try:
            listed = {name for name, *_ in await admin.list_consumer_groups()}
        except Exception as exc:  # the embedded broker may drop the request
            log.debug("consumer groups not listed", error=repr(exc))
            listed = set()
        names = {f"{prefix}{model}" for model in await self._registered()}
        return sorted(names | {name for name in listed if name.startswith(prefix)})

    async def refresh(self) -> None:
        """Read the groups once; on failure keep the last reading (logged)."""
        admin = AIOKafkaAdminClient(**self._kafka.common())
        try:
            async with asyncio.timeout(max(self._interval_s, 5.0)):
                await admin.start()
                names = await self._candidates(admin)
                groups = await self._describe(admin, names) if names else []
        except Exception as exc:  # the broker away: keep what was known
            log.warning("consumer groups not read; pinned pools as before", error=repr(exc))
            return
        finally:
            await admin.close()
        models = pinned_models(self._group_id, groups)
        if models != self.models:
            log.info("pinned pools serve these models; leaving them", models=sorted(models))
        self.models = models

    @staticmethod
    async def _describe(admin: AIOKafkaAdminClient, names: list[str]) -> list[tuple[str, str, int]]:
        described = []
        for response in await admin.describe_consumer_groups(names):
            for group in response.groups:
                if group[1]:  # a group the broker does not know may come back unnamed
                    described.append((group[1], group[2], len(group[5] or ())))
        return described

    async def run(self) -> None:
        """Read the groups every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self._interval_s)
            await self.refresh()


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
