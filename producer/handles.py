"""A submitted job's handle, without the waiting: the part both clients share.

A handle is settled once: by its reply, by a failed send, or by the client's
``close()``. :class:`producer.client.Handle` waits for that on a thread event,
:class:`producer.aio.AsyncHandle` on an asyncio event.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Self

from producer.contract.messages import Result, RetrainResult
from producer.errors import JobTimeout

if TYPE_CHECKING:
    from producer.core import BaseClient

Reply = Result | RetrainResult


class BaseHandle(ABC):
    """A submitted job; ``job_id`` matches it to its reply."""

    def __init__(self, job_id: str, client: BaseClient) -> None:
        self.job_id = job_id
        self._client = client
        self._reply: Reply | None = None
        self._error: BaseException | None = None
        self._settled = False
        self._callbacks: list[Callable[[Self], object]] = []
        self._lock = threading.Lock()  # the reader settles, any thread may add callbacks

    def done(self) -> bool:
        return self._settled

    def add_done_callback(self, callback: Callable[[Self], object]) -> None:
        """Call ``callback(handle)`` once the handle is settled (now, if it is)."""
        with self._lock:
            if not self._settled:
                self._callbacks.append(callback)
                return
        callback(self)

    @abstractmethod
    def _wake(self) -> None:
        """Release whoever waits in ``result()``."""

    def _settle(self: Self, reply: Reply | None, error: BaseException | None) -> None:
        with self._lock:
            if self._settled:
                return
            self._reply, self._error, self._settled = reply, error, True
            callbacks, self._callbacks = self._callbacks, []
        self._wake()
        for callback in callbacks:
            callback(self)

    def _outcome(self) -> Reply:
        """The reply (error Results included), or the error that settled the handle."""
        if self._error is not None:
            raise self._error
        assert self._reply is not None
        return self._reply

    def _wait_s(self, timeout_s: float | None) -> float:
        return self._client._wait_s(timeout_s)

    def _timed_out(self, waited_s: float) -> JobTimeout:
        return self._client._timed_out(self.job_id, waited_s)
