"""What the serving worker asks of the registry, as narrow Protocols: versions to
serve and rollbacks of bad ones from the model store; its metric windows, kept and read
back to judge a new version, from the metric store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from registry.entities import MetricWindow
from registry.policy import AliasRollbacks, WindowReader
from workers.serving.models import VersionLookup


class ServedModels(VersionLookup, AliasRollbacks, Protocol):
    """What a worker asks of the model store: versions to serve, rollbacks of bad ones."""


class ServedMetrics(WindowReader, Protocol):
    """What a worker asks of the metric store: keep its windows, read them back to judge."""

    def record_windows(self, windows: Sequence[MetricWindow]) -> None: ...
