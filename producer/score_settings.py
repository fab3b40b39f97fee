"""How ``maas score`` scores: kept apart from the scorer so that the CLI reads its
defaults without importing the Kafka client."""

from __future__ import annotations

from dataclasses import dataclass

from producer.contract.messages import DEFAULT_ALIAS


@dataclass(frozen=True, slots=True)
class ScoreSettings:
    """What to score with and how hard to push."""

    model: str
    version: int | None = None
    alias: str = DEFAULT_ALIAS
    rows_per_job: int = 32
    max_in_flight: int = 64
    timeout_s: float = 60.0
    input_name: str = "x"
    priority: int = 0
    encoding: str = "json"  # "binary": OIP binary requests (maas score --binary)

    def __post_init__(self) -> None:
        for name in ("rows_per_job", "max_in_flight"):
            if getattr(self, name) < 1:
                raise ValueError(f"ScoreSettings.{name} must be at least 1")
