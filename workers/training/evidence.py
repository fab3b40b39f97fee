"""What the evaluation gate compares: candidate and production on the same held-out rows.

A candidate's metrics come from the rows its recipe held out of the job's dataset.
Production's recorded metrics come from other rows (its own job's dataset and split),
so comparing the two would let a job win the gate by choosing easy rows. When the
gate decides, the trainer measures production again on the candidate's held-out rows
with the recipe (:class:`~workers.recipes.Measures`), and a gated job may not choose
how those rows are split off (the recipe's ``held_out_params``). The dataset itself
is one the operator allowed (``MAAS_DATA_ROOTS``). A recipe that cannot measure other
models is compared with production's recorded metrics.
"""

from __future__ import annotations

import structlog

from producer.contract.messages import ErrorCode, RetrainJob
from registry.artifacts import ArtifactStore, model_file
from registry.entities import ModelVersion
from registry.errors import ArtifactError
from workers.recipes import Measures, Recipe, RecipeError, TrainedModel, TrainRequest
from workers.training.allowed import Refused
from workers.training.gate import GateDecision, GatePolicy, PromoteMode, decide

log = structlog.get_logger(__name__)


def check_split(job: RetrainJob, recipe: Recipe) -> None:
    """Refuse a gated job that chooses how its recipe splits off the held-out rows."""
    if job.promote != "gate" or not isinstance(recipe, Measures):
        return
    chosen = sorted(set(recipe.held_out_params) & set(job.params))
    if chosen:
        raise Refused(
            ErrorCode.INVALID_INPUT,
            f"param(s) {', '.join(chosen)} choose the held-out rows the evaluation gate "
            'compares on, so a job asking for promote "gate" cannot set them; drop them, '
            'or use promote "never"',
        )


def judge(
    mode: PromoteMode,
    recipe: Recipe,
    request: TrainRequest,
    trained: TrainedModel,
    production: ModelVersion | None,
    policy: GatePolicy,
) -> GateDecision:
    """The gate's decision on ``trained``, with production measured on the same rows
    where the recipe can (reads files and runs a model: call it off the event loop)."""
    if production is None:
        return decide(mode, trained.metrics, None, None, policy)
    if mode != "gate" or not isinstance(recipe, Measures):
        return decide(mode, trained.metrics, production.metrics, production.version, policy)
    try:
        ArtifactStore.verify(production.path, production.sha256)
        measured = recipe.measure(model_file(production.path), request)
    except (ArtifactError, RecipeError) as exc:
        log.warning("production not measured on the held-out rows", error=str(exc))
        why = exc.public if isinstance(exc, RecipeError) else "its artifact fails its checksum"
        reason = (
            f"production {production.version} could not be measured on the candidate's "
            f"held-out rows ({why}), so the gate cannot compare; registered but not promoted"
        )
        return GateDecision(False, reason, policy.metric, trained.metrics.get(policy.metric))
    return decide(mode, trained.metrics, measured, production.version, policy)
