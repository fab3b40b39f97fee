"""A version's reference profile, made from rows: the trainer's training split, a data
file (``maas models baseline NAME VERSION --data FILE``) or captured traffic.

The version's artifact is checked against its sha256 and run on the rows, so the profile
holds its outputs (predicted classes, confidences, scores) beside the inputs. Rows are
bounded by ``limit``: a profile summarises; it never needs the whole data set.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from registry.artifacts import ArtifactStore
from registry.drift import Reference
from registry.entities import ModelVersion
from workers.drift.profile import ReferenceProfile, build_profile
from workers.optimize.rows import from_file
from workers.runtime.loader import RuntimeSettings, load_runtime

DEFAULT_ROWS = 10_000
BATCH = 512


def profile_of_rows(
    version: ModelVersion, inputs: Mapping[str, NDArray[np.generic]], source: str
) -> ReferenceProfile:
    """Run ``version`` on ``inputs`` (validated arrays, rows first) and profile both."""
    ArtifactStore.verify(version.path, version.sha256)
    runtime = load_runtime(version.path, version.format, version.signature, RuntimeSettings())
    try:
        rows = len(next(iter(inputs.values()))) if inputs else 0
        parts = [
            runtime.infer({k: v[start : start + BATCH] for k, v in inputs.items()})
            for start in range(0, rows, BATCH)
        ]
    finally:
        runtime.close()
    outputs = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    return build_profile(inputs, outputs, source=source)


def profile_of_file(
    version: ModelVersion, path: Path, limit: int = DEFAULT_ROWS
) -> ReferenceProfile:
    """The profile of the first ``limit`` rows of ``path`` (JSONL, CSV or Parquet, read as
    ``maas score`` reads them) and of what ``version`` answers for them."""
    rows = from_file(path, version.signature, limit=limit)
    return profile_of_rows(version, rows.inputs, f"data {path.name}")


def reference(version: ModelVersion, profile: ReferenceProfile, actor: str) -> Reference:
    """What the registry stores for ``profile`` of ``version``."""
    return Reference(
        version.model,
        version.version,
        profile.rows,
        profile.source,
        profile.encode().decode(),
        actor,
        version.created_at,
    )
