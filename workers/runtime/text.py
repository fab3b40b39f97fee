"""Text models: validate ``{"text": [...]}`` jobs, tokenize, and run length buckets.

A text model's version directory carries ``tokenizer.json`` (Hugging Face
``tokenizers``). Jobs send strings; the runtime tokenizes a whole batch at once,
truncating to ``max_length`` tokens, then sorts it by token length and runs
sub-batches of similar length, each padded only to its own longest text, so a
batch of short texts never pays for one long one. Outputs come back in the
original order. Outputs must not have a sequence axis (pool inside the model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer

from workers.errors import InferenceError, InvalidInput, RuntimeLoadError

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "TOKEN_INPUTS",
    "TextEncoder",
    "TextShapes",
    "length_buckets",
    "prepare_text",
]

Tensors = dict[str, np.ndarray]
RunFn = Callable[[Tensors], Tensors]

# Model inputs a tokenizer can feed, all int64 [N, seq].
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
DEFAULT_MAX_LENGTH = 256


def prepare_text(inputs: Mapping[str, Sequence[Any]], name: str = "text") -> Tensors:
    """Check that a job is ``{name: [str, ...]}``; return it as a 1-D object array."""
    if len(inputs) != 1 or name not in inputs:
        _no_unknown(inputs, name)
    texts = inputs.get(name)
    if not isinstance(texts, list | tuple) or not texts:
        raise InvalidInput(f"input {name!r} must be a non-empty list of strings")
    for text in texts:
        if not isinstance(text, str):
            _not_text(texts, name)
    array = np.empty(len(texts), dtype=object)
    array[:] = texts
    return {name: array}


def _no_unknown(inputs: Mapping[str, Any], name: str) -> None:
    unknown = [key for key in inputs if key != name]
    if unknown:
        raise InvalidInput(
            f"unknown input {unknown[0]!r}; this text model takes one input, "
            f'{name!r}: a list of strings, e.g. {{"{name}": ["first text", "second"]}}'
        )


def _not_text(texts: Sequence[Any], name: str) -> None:
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInput(
                f"input {name!r} row {row} is {type(text).__name__} ({text!r:.40}), "
                "expected a string"
            )


def length_buckets(lengths: Sequence[int] | np.ndarray, *, slack: int = 8) -> list[np.ndarray]:
    """Split row indices into buckets of similar length, shortest first.

    A bucket grows while a text is at most ``max(slack, 25%)`` tokens longer than
    the bucket's shortest, which bounds the padding each bucket wastes.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(lengths, kind="stable")
    buckets: list[np.ndarray] = []
    start = 0
    for end in range(1, len(order) + 1):
        if end == len(order) or lengths[order[end]] > _bucket_limit(lengths[order[start]], slack):
            buckets.append(order[start:end])
            start = end
    return buckets


def _bucket_limit(shortest: int, slack: int) -> int:
    return int(shortest) + max(slack, int(shortest) // 4)


@dataclass(frozen=True, slots=True)
class TextShapes:
    """How finely batches of text are cut into tensor shapes.

    On a CPU every token of padding costs compute and a new shape costs nothing, so
    buckets are tight and padding stops at the longest text. A GPU pays per kernel
    launch and per shape it has not seen (memory planning, kernel choice), and little
    for a few more tokens: there, fewer and rounder shapes win.
    """

    slack: int = 8  # a bucket takes texts up to max(slack, 25%) tokens longer than its shortest
    multiple: int = 1  # pad each bucket's width up to a multiple of this

    @classmethod
    def for_device(cls, gpu: bool) -> TextShapes:
        return cls(slack=64, multiple=16) if gpu else cls()

    def width(self, longest: int, max_length: int) -> int:
        rounded = -(-longest // self.multiple) * self.multiple
        return min(rounded, max(max_length, longest))


class TextEncoder:
    """Tokenizes a batch of texts and runs a model over it in length buckets.

    ``model_inputs`` are the token tensors the model takes, a subset of
    :data:`TOKEN_INPUTS`; ``run`` maps those tensors to the model's outputs.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        model_inputs: Sequence[str],
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        bucket: bool = True,
        shapes: TextShapes | None = None,
    ) -> None:
        extra = [name for name in model_inputs if name not in TOKEN_INPUTS]
        if extra or "input_ids" not in model_inputs:
            raise RuntimeLoadError(
                f"a text model must take input_ids (and optionally attention_mask, "
                f"token_type_ids); this one takes {list(model_inputs)}"
            )
        padding = tokenizer.padding
        self.pad_id = int(padding["pad_id"]) if padding else 0
        tokenizer.no_padding()  # padding happens per bucket, below
        tokenizer.enable_truncation(max_length)
        self.tokenizer = tokenizer
        self.model_inputs = tuple(model_inputs)
        self.max_length = max_length
        self.bucket = bucket
        self.shapes = shapes or TextShapes()

    @classmethod
    def from_file(cls, path: Path, model_inputs: Sequence[str], **options: Any) -> TextEncoder:
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise RuntimeLoadError(f"cannot load tokenizer {path}: {exc}") from exc
        return cls(tokenizer, model_inputs, **options)

    def encode(self, texts: Sequence[str]) -> list[Encoding]:
        encodings: list[Encoding] = self.tokenizer.encode_batch(list(texts))
        return encodings

    def feeds(self, encodings: Sequence[Encoding]) -> Tensors:
        """Pad ``encodings`` to their longest and build the model's int64 inputs."""
        width = self.shapes.width(max(len(e.ids) for e in encodings), self.max_length)
        shape = (len(encodings), width)
        tensors = {
            "input_ids": np.full(shape, self.pad_id, dtype=np.int64),
            "attention_mask": np.zeros(shape, dtype=np.int64),
            "token_type_ids": np.zeros(shape, dtype=np.int64),
        }
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            tensors["input_ids"][row, :n] = encoding.ids
            tensors["attention_mask"][row, :n] = 1
            tensors["token_type_ids"][row, :n] = encoding.type_ids
        return {name: tensors[name] for name in self.model_inputs}

    def infer(self, texts: np.ndarray | Sequence[str], run: RunFn) -> Tensors:
        """Tokenize ``texts``, run ``run`` per length bucket, restore the input order."""
        encodings = self.encode([str(text) for text in texts])
        if not self.bucket:
            return run(self.feeds(encodings))
        buckets = length_buckets([len(e.ids) for e in encodings], slack=self.shapes.slack)
        parts = [run(self.feeds([encodings[i] for i in bucket])) for bucket in buckets]
        return _unsort(parts, np.concatenate(buckets))


def _unsort(parts: list[Tensors], order: np.ndarray) -> Tensors:
    """Concatenate bucket outputs (rows in ``order``) and put rows back in input order."""
    merged: Tensors = {}
    for name in parts[0]:
        try:
            stacked = np.concatenate([part[name] for part in parts])
        except ValueError as exc:
            raise InferenceError(
                f"text model output {name!r} differs in shape between length buckets "
                f"({exc}); a text model's outputs must not have a sequence axis"
            ) from exc
        restored = np.empty_like(stacked)
        restored[order] = stacked
        merged[name] = restored
    return merged
