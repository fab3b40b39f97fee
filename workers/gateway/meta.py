"""OIP's metadata documents: the server's (``GET /v2``) and a model's, from its signature.

A model's inputs and outputs are its registry signature's, with OIP datatypes and ``-1``
for an open dimension; a text model is fed one BYTES tensor of texts (its tokenizer's
inputs are its own business), so that is what its metadata shows.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

import numpy as np

from producer.contract.oip.datatypes import BYTES, datatype_of
from registry.entities import ModelVersion, Signature, TensorSpec

EXTENSIONS = ("binary_tensor_data", "model_metadata", "async_infer")
PLATFORMS = {"onnx": "onnxruntime_onnx", "torchscript": "pytorch_libtorch"}


def server_metadata() -> dict[str, Any]:
    try:
        release = package_version("maas")
    except PackageNotFoundError:  # pragma: no cover - a checkout that is not installed
        release = "unknown"
    return {"name": "maas", "version": release, "extensions": list(EXTENSIONS)}


def datatype(dtype: str) -> str:
    """The OIP datatype of a signature's numpy dtype name (strings and objects: BYTES)."""
    try:
        return datatype_of(np.empty(0, dtype=np.dtype(dtype)))
    except TypeError:
        return BYTES


def tensor(spec: TensorSpec) -> dict[str, Any]:
    shape = [d if isinstance(d, int) and d >= 0 else -1 for d in spec.shape]
    return {"name": spec.name, "datatype": datatype(spec.dtype), "shape": shape}


def inputs(signature: Signature) -> list[dict[str, Any]]:
    if signature.text_input:
        return [{"name": signature.text_input, "datatype": BYTES, "shape": [-1]}]
    return [tensor(spec) for spec in signature.inputs]


def model_metadata(found: ModelVersion) -> dict[str, Any]:
    return {
        "name": found.model,
        "versions": [str(found.version)],
        "platform": PLATFORMS.get(found.format, found.format),
        "inputs": inputs(found.signature),
        "outputs": [tensor(spec) for spec in found.signature.outputs],
    }
