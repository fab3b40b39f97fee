"""MLServer runtimes that run maas's own ONNX files, so both servers run the same model.

Imported by MLServer inside its own virtualenv (scripts/mlserver_venv.sh), never by
maas: bench/mlserver.py copies this file into the model repository and names the
classes in each model-settings.json. The runtime does what maas's does: one
onnxruntime session on the CPU, its threads not spinning; MiniLM's texts tokenized by the model's own
tokenizer.json, truncated to 256 tokens and padded to the longest of the batch.
MLServer's adaptive batching (max_batch_size, max_batch_time) merges requests before
``predict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse

MAX_LENGTH = 256  # maas's text runtime's default (workers/runtime/text.py)


def _session(path: Path) -> ort.InferenceSession:
    """As maas opens one (workers/runtime/onnxrt.py): default threads, no busy-waiting."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _answer(model: MLModel, request: InferenceRequest, found: dict[str, Any]) -> InferenceResponse:
    wanted = [o.name for o in request.outputs or []] or list(found)
    outputs = [NumpyCodec.encode_output(name, found[name]) for name in wanted]
    return InferenceResponse(model_name=model.name, outputs=outputs)


class OnnxDigits(MLModel):
    """The digits classifier: ``x`` float32 [N, 64] -> ``probabilities``, ``label``."""

    async def load(self) -> bool:
        uri = self.settings.parameters.uri if self.settings.parameters else None
        self._session = _session(Path(uri or "model.onnx"))
        self._names = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32).reshape(-1, 64)
        found = dict(zip(self._names, self._session.run(None, {"x": x}), strict=True))
        return _answer(self, payload, found)


class OnnxMiniLM(MLModel):
    """The MiniLM sentence encoder: ``text`` BYTES [N] -> ``embedding`` float32 [N, 384]."""

    async def load(self) -> bool:
        from tokenizers import Tokenizer

        uri = self.settings.parameters.uri if self.settings.parameters else None
        folder = Path(uri or ".")
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_LENGTH)
        self._tokenizer.enable_padding()
        self._session = _session(folder / "model.onnx")
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        texts = StringCodec.decode_input(payload.inputs[0])
        encoded = self._tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
        }
        (embedding,) = self._session.run(["embedding"], feeds)
        return _answer(self, payload, {"embedding": embedding})
