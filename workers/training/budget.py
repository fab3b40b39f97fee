"""What one retrain job may spend of the trainer: time, work, and starts after a crash.

The operator sets the limits when the trainer starts (flags, else the environment:
``MAAS_TRAIN_TIME_BUDGET_S``, ``MAAS_TRAIN_MAX_WORK``, ``MAAS_TRAIN_MAX_ATTEMPTS``):

- ``time_s``: a job's time budget. Training stops at the first optimiser step past it
  and the job is answered ``EXPIRED``. A job may ask for less with the param
  ``time_budget_s``; asking for more is refused naming the limit.
- ``max_work``: optimiser steps times model parameters, computed from the data and the
  params before training starts; a job over it is answered ``TOO_LARGE`` naming it.
- ``max_attempts``: how often a run may be started. A run left "running" by a trainer
  that crashed or was stopped is trained again on redelivery, up to this many starts in
  all; then it is answered ``INTERNAL`` instead of holding the trainer again.

``maas runs cancel JOB_ID`` finishes a run in the registry; the trainer training it
sees that within ``cancel_poll_s`` and stops at the next optimiser step.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from workers.recipes import Limits, ParamsError

TIME_PARAM = "time_budget_s"


@dataclass(frozen=True, slots=True)
class TrainBudget:
    """The operator's limits on one retrain job."""

    time_s: float = 3600.0
    max_work: int = 10**11
    max_attempts: int = 3
    cancel_poll_s: float = 2.0

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        time_s: float | None = None,
        max_work: int | None = None,
        max_attempts: int | None = None,
    ) -> TrainBudget:
        """From ``MAAS_TRAIN_TIME_BUDGET_S``, ``MAAS_TRAIN_MAX_WORK`` and
        ``MAAS_TRAIN_MAX_ATTEMPTS``; arguments, when given, win."""
        env = os.environ if env is None else env
        default = cls()
        budget = cls(
            time_s=_pick(time_s, env, "MAAS_TRAIN_TIME_BUDGET_S", float, default.time_s),
            max_work=_pick(max_work, env, "MAAS_TRAIN_MAX_WORK", _integer, default.max_work),
            max_attempts=_pick(
                max_attempts, env, "MAAS_TRAIN_MAX_ATTEMPTS", int, default.max_attempts
            ),
        )
        if budget.time_s <= 0 or budget.max_work < 1 or budget.max_attempts < 1:
            raise ValueError(
                "the trainer's time budget, max work and max attempts must be positive; "
                f"got {budget.time_s:g} s, {budget.max_work}, {budget.max_attempts}"
            )
        return budget

    def limits(self, params: Mapping[str, Any], stop: threading.Event) -> Limits:
        """The limits of a job with ``params`` (its ``time_budget_s``, if any, checked)."""
        asked = params.get(TIME_PARAM)
        seconds = self.time_s if asked is None else self._asked_time(asked)
        return Limits(
            max_work=self.max_work,
            deadline=time.monotonic() + seconds,
            time_budget_s=seconds,
            stop=stop,
        )

    def _asked_time(self, asked: Any) -> float:
        number = isinstance(asked, int | float) and not isinstance(asked, bool)
        if not number or not 0 < asked <= self.time_s:
            raise ParamsError(
                f"param {TIME_PARAM!r} must be a number of seconds above 0 and at most "
                f"{self.time_s:g} (this trainer's time budget), got {asked!r}"
            )
        return float(asked)


def without_budget(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` less the ones the trainer reads itself (the recipe never sees them)."""
    return {name: value for name, value in params.items() if name != TIME_PARAM}


@contextlib.asynccontextmanager
async def cancel_watch(
    still_running: Callable[[], bool], stop: threading.Event, every_s: float
) -> AsyncIterator[None]:
    """Set ``stop`` once ``still_running()`` (called in a thread every ``every_s``) says
    False, for as long as the block runs."""

    async def watch() -> None:
        while not stop.is_set():
            await asyncio.sleep(every_s)
            try:
                running = await asyncio.to_thread(still_running)
            except Exception:  # the registry being down must not stop the training
                continue
            if not running:
                stop.set()

    watching = asyncio.create_task(watch())
    try:
        yield
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)


def _integer(text: str) -> int:
    return int(float(text)) if "e" in text.lower() else int(text)


def _pick(
    given: Any, env: Mapping[str, str], name: str, kind: Callable[[str], Any], default: Any
) -> Any:
    if given is not None:
        return given
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return kind(text)
    except ValueError as exc:
        raise ValueError(f"{name}={text!r} is not a number") from exc
