"""Content-addressed artifact storage and model inspection.

An artifact is a single model file (``model.onnx``, ``model.pt``) or a directory
holding one (``model.onnx`` plus ``tokenizer.json`` and any sidecar files). It is
stored under ``root/<sha256>/`` (a single file as ``model.<suffix>``) so equal content is stored once and never changes.
The digest of a directory covers every file's relative path and content, in
sorted order. Nothing is ever unpickled: TorchScript files are described by a
sidecar ``signature.json`` instead of being loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from registry.entities import Signature, TensorSpec
from registry.errors import ArtifactError

ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".pt", ".ts")
MODEL_FILES = ("model.onnx", "model.pt", "model.ts")
SIGNATURE_FILE = "signature.json"
TOKENIZER_FILE = "tokenizer.json"
_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """Digest of a file, or of a directory's files (relative path and content, sorted)."""
    if path.is_file():
        return _file_digest(path)
    if not path.is_dir():
        raise ArtifactError(f"artifact {path} does not exist; pass a model file or directory")
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(b"\0")
        digest.update(_file_digest(file).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_file(path: Path) -> Path:
    """The model file of an artifact: the path itself, or the model file in a directory."""
    if path.is_file():
        return path
    if not path.exists():
        raise ArtifactError(f"artifact {path} does not exist; pass a model file or directory")
    for name in MODEL_FILES:
        if (path / name).is_file():
            return path / name
    raise ArtifactError(
        f"artifact directory {path} holds no model file; put one of {', '.join(MODEL_FILES)} in it"
    )


def _stored_name(file: Path) -> str:
    # One name per content: equal bytes registered as a.onnx and b.onnx share one copy.
    return f"model{file.suffix}"


class ArtifactStore:
    """Artifacts under ``root/<sha256>/``; ``put`` is atomic and safe to race."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put(self, path: Path) -> tuple[str, str]:
        """Copy a model file or directory into the store; returns ``(uri, sha256)``."""
        path = Path(path)
        sha = sha256_of(path)
        target = self.root / sha
        if not target.exists():
            self._copy_into(path, target)
        stored = target / _stored_name(path) if path.is_file() else target
        return stored.resolve().as_uri(), sha

    def _copy_into(self, path: Path, target: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".put-", dir=self.root))
        try:
            if path.is_file():
                shutil.copy2(path, staging / _stored_name(path))
            else:
                shutil.copytree(path, staging, dirs_exist_ok=True)
            try:
                os.replace(staging, target)
            except OSError:
                if not target.exists():  # anything but losing a race to an equal copy
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def verify(path: Path, sha256: str) -> None:
        """Raise :class:`ArtifactError` unless ``path`` still has digest ``sha256``."""
        actual = sha256_of(Path(path))
        if actual != sha256:
            raise ArtifactError(
                f"artifact {path} is corrupt: sha256 is {actual}, the registry expects {sha256}; "
                "register the model again from its original file"
            )


def inspect(path: Path) -> tuple[str, Signature]:
    """The artifact's format (``onnx`` or ``torchscript``) and its signature."""
    path = Path(path)
    file = model_file(path)
    if file.suffix in ONNX_SUFFIXES:
        signature = _onnx_signature(file)
    elif file.suffix in TORCHSCRIPT_SUFFIXES:
        signature = _torchscript_signature(file)
    else:
        raise ArtifactError(
            f"{file} has an unknown model format; use an ONNX file (.onnx) or a "
            "TorchScript file (.pt/.ts) with a signature.json beside it"
        )
    if path.is_dir() and (path / TOKENIZER_FILE).is_file() and signature.text_input is None:
        signature = Signature(signature.inputs, signature.outputs, text_input="text")
    fmt = "onnx" if file.suffix in ONNX_SUFFIXES else "torchscript"
    return fmt, signature


def _onnx_signature(file: Path) -> Signature:
    import onnx
    import onnxruntime

    try:
        model = onnx.load(str(file))
        onnx.checker.check_model(model)
        onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnx and onnxruntime raise many unrelated types
        raise ArtifactError(
            f"{file} is not a loadable ONNX model ({type(exc).__name__}: {_first_line(exc)}); "
            "re-export it, e.g. with torch.onnx.export(model, example, path, "
            "input_names=[...], dynamic_axes=..., dynamo=False) (docs/models.md), and "
            "register it again"
        ) from exc
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    return Signature(
        inputs=tuple(_onnx_tensor(value) for value in inputs),
        outputs=tuple(_onnx_tensor(value) for value in model.graph.output),
    )


def _onnx_tensor(value: Any) -> TensorSpec:
    import onnx

    tensor_type = value.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
    dims = tuple(
        dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None)
        for dim in tensor_type.shape.dim
    )
    return TensorSpec(name=value.name, dtype=dtype, shape=dims)


def _torchscript_signature(file: Path) -> Signature:
    sidecar = file.parent / SIGNATURE_FILE
    if not sidecar.is_file():
        raise ArtifactError(
            f"TorchScript model {file} needs a {SIGNATURE_FILE} beside it describing its "
            'inputs and outputs, e.g. {"inputs": [{"name": "x", "dtype": "float32", '
            '"shape": [null, 64]}], "outputs": [...]}; put both in one directory and '
            "register the directory"
        )
    if not zipfile.is_zipfile(file):
        raise ArtifactError(
            f"{file} is not a TorchScript archive; save it with torch.jit.save (not torch.save)"
        )
    try:
        return Signature.from_dict(json.loads(sidecar.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(
            f"{sidecar} is not a valid signature ({exc}); it needs 'inputs' and 'outputs' "
            "lists of {name, dtype, shape}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no details"
