"""Plain, frozen entities returned by the registry. Never ORM rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Shapes use None (or a symbolic name) for dynamic dimensions, as ONNX does.
Dim = int | str | None


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One named input or output of a model: numpy dtype name and shape."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(name=data["name"], dtype=data["dtype"], shape=tuple(data["shape"]))


@dataclass(frozen=True, slots=True)
class Signature:
    """A model's inputs and outputs; ``text_input`` names the input fed by a tokenizer."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    text_input: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "text_input": self.text_input,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        return cls(
            inputs=tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
            text_input=data.get("text_input"),
        )
