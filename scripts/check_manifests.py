"""Validate the Kubernetes manifests of deploy/kubernetes offline, without kustomize.

Every resource the kustomization lists (and no YAML file it leaves out) is checked
strictly against the Kubernetes API schemas that ``kubernetes-validate`` ships, for the
oldest and the newest Kubernetes versions below. KEDA's ScaledObject is a custom
resource, absent from those schemas: it is checked against the schema written from
KEDA's documentation, deploy/schemas/keda-scaledobject-v1alpha1.json.

    python scripts/check_manifests.py [deploy/kubernetes]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")
CUSTOM_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): ROOT / "deploy/schemas/keda-scaledobject-v1alpha1.json",
}


def resources(base: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Each document of each file the kustomization lists; every YAML file must be listed."""
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    listed = [base / name for name in kustomization["resources"]]
    unlisted = sorted(
        p.name for p in base.glob("*.yaml") if p.name != "kustomization.yaml" and p not in listed
    )
    if unlisted:
        raise SystemExit(f"{base}/kustomization.yaml does not list {', '.join(unlisted)}")
    for path in listed:
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                yield path, document


def problems(document: dict[str, Any]) -> list[str]:
    """What is wrong with one resource (empty when it is valid)."""
    schema_path = CUSTOM_SCHEMAS.get((str(document.get("apiVersion")), str(document.get("kind"))))
    if schema_path is not None:
        validator = jsonschema.Draft202012Validator(json.loads(schema_path.read_text()))
        messages = (
            f"{'.'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
            for error in validator.iter_errors(document)
        )
        return list(dict.fromkeys(messages))  # one error can break two subschemas
    found = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.utils.ValidationError as exc:
            found.append(f"Kubernetes {version}: {exc.message}")
        except kubernetes_validate.utils.SchemaNotFoundError as exc:
            found.append(f"Kubernetes {version}: no schema for it ({exc})")
    return found


def main(argv: list[str]) -> int:
    base = Path(argv[0]) if argv else ROOT / "deploy" / "kubernetes"
    failed = 0
    for path, document in resources(base):
        name = f"{path.name}: {document.get('kind')}/{document.get('metadata', {}).get('name')}"
        found = problems(document)
        for problem in found:
            print(f"FAILED {name}: {problem}")
        if not found:
            print(f"ok     {name}")
        failed += bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
