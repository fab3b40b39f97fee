"""Text models: job validation, length bucketing and a tokenizer-carrying ONNX model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from registry.entities import Signature, TensorSpec
from workers.errors import InvalidInput, RuntimeLoadError
from workers.runtime.loader import RuntimeSettings, load_runtime
from workers.runtime.text import TextEncoder, TextShapes, length_buckets, prepare_text

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "a", "mat", "dog"]


def build_tokenizer(path: Path) -> Path:
    """A tiny BERT-like tokenizer: whitespace words, [CLS] ... [SEP], pad id 0."""
    vocab = {word: index for index, word in enumerate(WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=32)  # the runtime undoes this
    tokenizer.save(str(path))
    return path


def build_text_onnx(path: Path, *, with_token_types: bool) -> Path:
    """Outputs per row: tokens = sum(mask), id_sum = sum(ids * mask), width = seq length.

    ``width`` shows how far each row was padded; the others must not depend on it.
    """
    seq = ["N", "S"]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, seq),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, seq),
    ]
    nodes = [
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["id_sum"], keepdims=1),
        helper.make_node("ReduceSum", ["attention_mask", "axis1"], ["tokens"], keepdims=1),
        helper.make_node("Shape", ["input_ids"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["seq_len"]),
        helper.make_node("Mul", ["tokens", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "seq_len"], ["width"]),
    ]
    if with_token_types:
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, seq))
        nodes[0] = helper.make_node("Mul", ["input_ids", "attention_mask"], ["masked0"])
        nodes.insert(1, helper.make_node("Add", ["masked0", "token_type_ids"], ["masked"]))
    graph = helper.make_graph(
        nodes,
        "text",
        inputs,
        [
            helper.make_tensor_value_info(name, TensorProto.INT64, ["N", 1])
            for name in ("tokens", "id_sum", "width")
        ],
        initializer=[
            helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
            helper.make_tensor("one", TensorProto.INT64, [1], [1]),
            helper.make_tensor("zero", TensorProto.INT64, [], [0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def text_signature(with_token_types: bool = False) -> Signature:
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_token_types else [])
    return Signature(
        inputs=tuple(TensorSpec(name, "int64", (None, None)) for name in names),
        outputs=tuple(TensorSpec(n, "int64", (None, 1)) for n in ("tokens", "id_sum", "width")),
        text_input="text",
    )


@pytest.fixture
def text_model(tmp_path: Path) -> Path:
    build_tokenizer(tmp_path / "tokenizer.json")
    build_text_onnx(tmp_path / "model.onnx", with_token_types=False)
    return tmp_path


def test_prepare_text_accepts_strings() -> None:
    batch = prepare_text({"text": ["the cat", ""]})
    assert batch["text"].dtype == object and batch["text"].shape == (2,)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"text": ["ok", 3]}, "input 'text' row 1 is int (3), expected a string"),
        ({"text": [["nested"]]}, "row 0 is list"),
        ({"text": "the cat"}, "input 'text' must be a non-empty list of strings"),
        ({"text": []}, "non-empty list of strings"),
        ({"x": [[1.0]]}, "unknown input 'x'; this text model takes one input, 'text'"),
        ({}, "input 'text' must be a non-empty list"),
    ],
)
def test_prepare_text_rejects(inputs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        prepare_text(inputs)


def test_length_buckets_group_similar_lengths() -> None:
    lengths = [5, 100, 6, 7, 120, 30]
    buckets = length_buckets(lengths)
    assert [sorted(lengths[i] for i in bucket) for bucket in buckets] == [
        [5, 6, 7],
        [30],
        [100, 120],
    ]
    assert sorted(np.concatenate(buckets).tolist()) == list(range(len(lengths)))


def test_text_model_restores_order_and_pads_per_bucket(text_model: Path) -> None:
    # On the CPU buckets are tight (TextShapes()); a GPU rounds shapes up, see below.
    runtime = load_runtime(text_model, "onnx", text_signature(), RuntimeSettings(device="cpu"))
    long = " ".join(["the cat sat on a mat"] * 10)  # 60 words
    texts = [long, "dog", "the cat", long + " dog", "a"]
    outputs = runtime.infer(runtime.prepare({"text": texts}))
    tokens = outputs["tokens"][:, 0].tolist()
    assert tokens == [62, 3, 4, 63, 3]  # [CLS] + words + [SEP], in input order
    assert outputs["id_sum"][1, 0] == 2 + 10 + 3  # [CLS] dog [SEP]
    widths = outputs["width"][:, 0].tolist()
    assert widths[1] == widths[2] == widths[4] == 4  # short texts are not padded to 63
    assert widths[0] == widths[3] == 63


def test_bucketing_gives_the_same_outputs_as_one_batch(text_model: Path) -> None:
    encoder = TextEncoder.from_file(text_model / "tokenizer.json", ["input_ids", "attention_mask"])
    texts = np.array(["the cat sat", "a", "the dog sat on a mat " * 5, "unknown words"], object)
    calls: list[int] = []

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(feeds["input_ids"]))
        return {"id_sum": (feeds["input_ids"] * feeds["attention_mask"]).sum(axis=1)}

    bucketed = encoder.infer(texts, run)
    encoder.bucket = False
    whole = encoder.infer(texts, run)
    np.testing.assert_array_equal(bucketed["id_sum"], whole["id_sum"])
    assert calls[-1] == 4 and len(calls) > 2  # one call unbucketed, several bucketed


def test_truncation(text_model: Path) -> None:
    encoder = TextEncoder.from_file(
        text_model / "tokenizer.json", ["input_ids", "attention_mask"], max_length=8
    )
    feeds = encoder.feeds(encoder.encode(["the cat " * 20, "a"]))
    assert feeds["input_ids"].shape == (2, 8)
    assert feeds["attention_mask"].sum(axis=1).tolist() == [8, 3]


def test_token_type_ids_are_fed_when_the_model_takes_them(tmp_path: Path) -> None:
    build_tokenizer(tmp_path / "tokenizer.json")
    build_text_onnx(tmp_path / "model.onnx", with_token_types=True)
    runtime = load_runtime(tmp_path, "onnx", text_signature(with_token_types=True))
    outputs = runtime.infer(runtime.prepare({"text": ["the cat"]}))
    assert outputs["id_sum"].tolist() == [[2 + 4 + 5 + 3]]  # token types are all 0


def test_text_model_without_tokenizer(text_model: Path) -> None:
    (text_model / "tokenizer.json").unlink()
    with pytest.raises(RuntimeLoadError, match=r"no tokenizer\.json"):
        load_runtime(text_model, "onnx", text_signature())


class TokenCounter(torch.nn.Module):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return attention_mask.sum(dim=1, keepdim=True)


def test_torchscript_text_model(tmp_path: Path) -> None:
    build_tokenizer(tmp_path / "tokenizer.json")
    torch.jit.script(TokenCounter()).save(str(tmp_path / "model.pt"))
    signature = Signature(
        inputs=(TensorSpec("text", "object", (None,)),),
        outputs=(TensorSpec("tokens", "int64", (None, 1)),),
        text_input="text",
    )
    runtime = load_runtime(tmp_path, "torchscript", signature)
    outputs = runtime.infer(runtime.prepare({"text": ["the cat sat on a mat", "a"]}))
    assert outputs["tokens"].tolist() == [[8], [3]]


def test_gpu_shapes_are_fewer_and_rounder() -> None:
    cpu, gpu = TextShapes.for_device(False), TextShapes.for_device(True)
    assert [cpu.width(n, 256) for n in (3, 17, 63)] == [3, 17, 63]
    assert [gpu.width(n, 256) for n in (3, 17, 63, 250)] == [16, 32, 64, 256]
    assert TextShapes(multiple=16).width(250, 250) == 250  # never past max_length
    lengths = [3, 9, 17, 30, 45, 63]
    assert len(length_buckets(lengths, slack=cpu.slack)) > 2
    assert len(length_buckets(lengths, slack=gpu.slack)) == 1


def test_encoder_pads_each_bucket_to_its_shape(text_model: Path) -> None:
    encoder = TextEncoder.from_file(
        text_model / "tokenizer.json",
        ["input_ids", "attention_mask"],
        shapes=TextShapes(multiple=16),
    )
    widths: list[int] = []

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        widths.append(feeds["input_ids"].shape[1])
        return {"id_sum": (feeds["input_ids"] * feeds["attention_mask"]).sum(axis=1)}

    padded = encoder.infer(np.array(["the cat sat", "a"], object), run)
    encoder.shapes = TextShapes()
    tight = encoder.infer(np.array(["the cat sat", "a"], object), run)
    np.testing.assert_array_equal(padded["id_sum"], tight["id_sum"])  # padding is masked
    assert widths[0] == 16 and max(widths[1:]) < 16
