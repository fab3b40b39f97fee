"""What the trainer asks of the registry, as narrow Protocols: the model store's
production version and a new version (or two: a trained one and one derived from it),
and the run store's runs by job id."""

from __future__ import annotations

from typing import Any, Protocol

from registry.drafts import Draft
from registry.entities import ModelVersion, RetrainRun
from registry.runs import RunOutcome


class Registrar(Protocol):
    """What the trainer asks of the model store: production's version, and new ones."""

    def resolve(self, name: str, alias: str = ...) -> ModelVersion: ...

    def register(
        self, name: str, draft: Draft, *, actor: str, run_job_id: str | None = ...
    ) -> ModelVersion: ...

    def register_derived(
        self,
        name: str,
        base: Draft,
        derived: Draft,
        *,
        actor: str,
        alias: str = ...,
        run_job_id: str | None = ...,
    ) -> tuple[ModelVersion, ModelVersion]: ...


class RunLog(Protocol):
    """What the trainer asks of the run store: start, fail and read a run by its job id."""

    def start_run(
        self, job_id: str, model: str, *, trigger: str, params: dict[str, Any] | None = ...
    ) -> tuple[RetrainRun, bool]: ...

    def finish_run(self, job_id: str, outcome: RunOutcome) -> RetrainRun: ...

    def get_run(self, job_id: str) -> RetrainRun | None: ...
