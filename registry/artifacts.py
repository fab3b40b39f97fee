"""Content-addressed artifact storage and model inspection.

An artifact is a single model file (``model.onnx``, ``model.pt``) or a directory
holding one (``model.onnx`` plus ``tokenizer.json`` and any sidecar files). It is
stored under ``root/<sha256>/`` (a single file as ``model.<suffix>``), so equal content
is stored once; a stored copy found corrupt is replaced when its content is put again.
The digest of a directory covers every file's relative path and content, in sorted
order; a directory holding a symbolic link is refused, never copied through the link.
Nothing is ever unpickled: TorchScript files are described by a sidecar
``signature.json`` instead of being loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import Any

import structlog

from registry.entities import Signature, TensorSpec
from registry.errors import ArtifactError

ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".pt", ".ts")
MODEL_FILES = ("model.onnx", "model.pt", "model.ts")
SIGNATURE_FILE = "signature.json"
TOKENIZER_FILE = "tokenizer.json"
_CHUNK = 1 << 20

log = structlog.get_logger(__name__)


def sha256_of(path: Path) -> str:
    """Digest of a file, or of a directory's files (relative path and content, sorted)."""
    if path.is_file():
        return _file_digest(path)
    if not path.is_dir():
        raise ArtifactError(f"artifact {path} does not exist; pass a model file or directory")
    digest = hashlib.sha256()
    for file in tree_files(path):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(b"\0")
        digest.update(_file_digest(file).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def tree_files(directory: Path) -> list[Path]:
    """Every file under ``directory``, sorted. An artifact holds its own bytes: a symbolic
    link (whose target would be copied into the store) or a special file raises
    :class:`ArtifactError`."""
    files: list[Path] = []
    for here, folders, names in os.walk(directory):
        for name in (*folders, *names):
            entry = Path(here, name)
            if entry.is_symlink() or not (entry.is_dir() or entry.is_file()):
                kind = "a symbolic link" if entry.is_symlink() else "a special file"
                raise ArtifactError(
                    f"artifact directory {directory} holds {kind}, "
                    f"{entry.relative_to(directory).as_posix()}; an artifact must hold its own "
                    "regular files: copy the file itself into the directory"
                )
        files.extend(Path(here, name) for name in names)
    return sorted(files)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_tree(source: Path, staging: Path) -> None:
    for file in tree_files(source):
        copy = staging / file.relative_to(source)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, copy)


def _intact(stored: Path, sha: str) -> bool:
    try:
        return sha256_of(stored) == sha
    except ArtifactError:  # gone, or a link planted in it
        return False


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
        """Copy a model file or directory into the store; returns ``(uri, sha256)``.

        The digest is taken of the copy, so what is stored is what was hashed. A stored
        copy that no longer has its digest (tampered with, half-deleted) is replaced by
        this one: registering the original file again repairs the store.
        """
        path = Path(path)
        single = path.is_file()
        if not (single or path.is_dir()):
            raise ArtifactError(f"artifact {path} does not exist; pass a model file or directory")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".put-", dir=self.root))
        try:
            if single:
                shutil.copy2(path, staging / _stored_name(path))
            else:
                _copy_tree(path, staging)
            sha = sha256_of(staging / _stored_name(path) if single else staging)
            self._settle(staging, sha, _stored_name(path) if single else None)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        stored = self.root / sha / _stored_name(path) if single else self.root / sha
        return stored.resolve().as_uri(), sha

    def _settle(self, staging: Path, sha: str, file_name: str | None) -> None:
        """Move ``staging`` to ``root/<sha>`` unless an intact copy is there already."""
        target = self.root / sha
        if target.exists() and not _intact(
            target if file_name is None else target / file_name, sha
        ):
            log.warning("replacing a corrupt stored artifact with a fresh copy", sha256=sha)
            spoiled = self.root / f".corrupt-{uuid.uuid4().hex}"
            with contextlib.suppress(FileNotFoundError):  # another put moved it first
                os.replace(target, spoiled)
            shutil.rmtree(spoiled, ignore_errors=True)
        try:
            os.replace(staging, target)
        except OSError:
            if not target.exists():  # anything but losing a race to an equal copy
                raise

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
    if path.is_dir():
        tree_files(path)  # refuses links before anything in the directory is read
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
