"""Content-addressed artifacts and model inspection (ONNX, tokenizer dirs, TorchScript)."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from registry import ArtifactError, ArtifactStore, Registry, Signature, inspect, sha256_of
from registry.drafts import Draft

MakeOnnx = Callable[..., Path]


def test_put_is_content_addressed_and_verifiable(tmp_path: Path, make_onnx: MakeOnnx) -> None:
    source = make_onnx()
    store = ArtifactStore(tmp_path / "store")
    uri, sha = store.put(source)
    again_uri, again_sha = store.put(source)
    assert (uri, sha) == (again_uri, again_sha)
    stored = tmp_path / "store" / sha / "model.onnx"
    assert uri == stored.as_uri() and stored.read_bytes() == source.read_bytes()
    ArtifactStore.verify(stored, sha)
    renamed = tmp_path / "elsewhere" / "digits-v1.onnx"
    renamed.parent.mkdir()
    shutil.copy(source, renamed)
    assert store.put(renamed) == (uri, sha)  # same bytes, same stored file
    stored.write_bytes(stored.read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match="is corrupt: sha256 is"):
        ArtifactStore.verify(stored, sha)


def test_directory_digest_covers_every_file(tmp_path: Path, make_onnx: MakeOnnx) -> None:
    bundle = make_onnx().parent
    (bundle / "tokenizer.json").write_text('{"version": "1.0"}')
    (bundle / "extra").mkdir()
    (bundle / "extra" / "labels.txt").write_text("a\nb\n")
    uri, sha = ArtifactStore(tmp_path / "store").put(bundle)
    stored = tmp_path / "store" / sha
    assert uri == stored.as_uri() and (stored / "extra" / "labels.txt").is_file()
    assert sha256_of(stored) == sha
    (stored / "extra" / "labels.txt").write_text("a\nc\n")
    with pytest.raises(ArtifactError):
        ArtifactStore.verify(stored, sha)


def test_inspect_onnx_signature(make_onnx: MakeOnnx) -> None:
    fmt, signature = inspect(make_onnx(features=8, classes=10))
    assert fmt == "onnx"
    assert signature.to_dict() == {
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 8]}],
        "outputs": [{"name": "probabilities", "dtype": "float32", "shape": ["batch", 10]}],
        "text_input": None,
    }


def test_tokenizer_directory_takes_text(make_onnx: MakeOnnx) -> None:
    bundle = make_onnx().parent
    (bundle / "tokenizer.json").write_text("{}")
    fmt, signature = inspect(bundle)
    assert fmt == "onnx" and signature.text_input == "text"


def test_corrupt_onnx_is_refused_with_the_file_named(tmp_path: Path, make_onnx: MakeOnnx) -> None:
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(make_onnx().read_bytes()[:40])
    with pytest.raises(ArtifactError, match=r"truncated\.onnx is not a loadable ONNX model"):
        inspect(truncated)


def test_directory_without_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="holds no model file"):
        inspect(tmp_path / "empty")
    with pytest.raises(ArtifactError, match="does not exist"):
        sha256_of(tmp_path / "missing")


def torchscript_archive(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:  # shaped like torch.jit.save output
        archive.writestr("model/version", "3\n")
    return path


def test_torchscript_needs_a_signature_sidecar(tmp_path: Path) -> None:
    model = torchscript_archive(tmp_path / "ts" / "model.pt")
    with pytest.raises(ArtifactError, match=r"needs a signature\.json beside it"):
        inspect(model)
    spec = {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [None, 4]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [None, 2]}],
    }
    (model.parent / "signature.json").write_text(json.dumps(spec))
    fmt, signature = inspect(model.parent)
    assert fmt == "torchscript"
    assert signature == Signature.from_dict({**spec, "text_input": None})


def test_pickle_is_not_torchscript(tmp_path: Path) -> None:
    bundle = tmp_path / "pickled"
    bundle.mkdir()
    (bundle / "model.pt").write_bytes(b"\x80\x04K\x01.")  # a pickle, never loaded
    (bundle / "signature.json").write_text('{"inputs": [], "outputs": []}')
    with pytest.raises(ArtifactError, match=r"torch\.jit\.save"):
        inspect(bundle)
    shutil.rmtree(bundle)


def test_a_tampered_copy_is_repaired_by_registering_the_original_again(
    registry: Registry, make_onnx: MakeOnnx
) -> None:
    original = make_onnx()
    first = registry.models.register("digits", Draft(original, promote=True), actor="t")
    first.path.write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="register the model again from its original file"):
        ArtifactStore.verify(first.path, first.sha256)
    again = registry.models.register("digits", Draft(original, promote=True), actor="t")
    assert (again.sha256, again.path) == (first.sha256, first.path)
    ArtifactStore.verify(first.path, first.sha256)  # both versions serve again
    assert first.path.read_bytes() == original.read_bytes()


def test_a_tampered_directory_is_repaired_by_putting_it_again(
    tmp_path: Path, make_onnx: MakeOnnx
) -> None:
    bundle = make_onnx().parent
    (bundle / "tokenizer.json").write_text("{}")
    store = ArtifactStore(tmp_path / "store")
    _, sha = store.put(bundle)
    stored = tmp_path / "store" / sha
    (stored / "tokenizer.json").unlink()
    (stored / "planted.txt").write_text("x")
    assert store.put(bundle)[1] == sha
    ArtifactStore.verify(stored, sha)
    assert sorted(p.name for p in stored.iterdir()) == ["model.onnx", "tokenizer.json"]
    assert [p.name for p in (tmp_path / "store").iterdir()] == [sha]  # nothing left behind


@pytest.mark.parametrize("link", ["file", "folder"])
def test_a_directory_holding_a_symlink_is_refused_not_copied_through(
    tmp_path: Path, make_onnx: MakeOnnx, link: str
) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("sk-live-123")
    bundle = make_onnx().parent
    if link == "file":
        (bundle / "tokenizer.json").symlink_to(secret / "key.txt")
    else:
        (bundle / "extra").symlink_to(secret, target_is_directory=True)
    store = ArtifactStore(tmp_path / "store")
    with pytest.raises(ArtifactError, match="holds a symbolic link"):
        store.put(bundle)
    with pytest.raises(ArtifactError, match="holds a symbolic link"):
        inspect(bundle)
    with pytest.raises(ArtifactError, match="holds a symbolic link"):
        sha256_of(bundle)
    assert list((tmp_path / "store").iterdir()) == []
