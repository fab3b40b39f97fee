"""The one error the OIP codec raises."""

from __future__ import annotations

from producer.contract.messages import DecodeError


class OipDecodeError(DecodeError):
    """An OIP document or binary body is not valid; ``tensor`` names the tensor at fault.

    A :class:`~producer.contract.messages.DecodeError`, so the worker answers it as
    INVALID_INPUT like any other bad job, and an HTTP gateway as 400. ``field`` is the
    JSON path (``inputs.pixels``) where one is known.
    """

    def __init__(self, message: str, *, tensor: str | None = None, field: str | None = None):
        super().__init__(message, field=field)
        self.tensor = tensor
