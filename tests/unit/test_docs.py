"""The users' reference, docs/contract.md, lists everything the code exposes on the wire."""

from __future__ import annotations

import re
from pathlib import Path

from producer.contract.messages import ErrorCode

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = (ROOT / "docs" / "contract.md").read_text()
PACKAGES = ("maas", "producer", "workers", "registry")


def _environment_variables() -> set[str]:
    """Every ``MAAS_*`` name that the code (and the test fixtures) read."""
    names: set[str] = set()
    for package in (*PACKAGES, "tests"):
        for path in (ROOT / package).rglob("*.py"):
            names.update(re.findall(r"MAAS_[A-Z_]*[A-Z]", path.read_text()))
    # MAAS_KAFKA_SECURITY_PROTOCOL and friends are instances of the MAAS_KAFKA_* rule.
    return {n for n in names if not n.startswith("MAAS_KAFKA")} | {"MAAS_KAFKA_*"}


def test_every_error_code_is_documented() -> None:
    missing = [code.value for code in ErrorCode if f"`{code.value}`" not in CONTRACT]
    assert not missing, f"docs/contract.md lacks error codes {missing}"


def test_every_environment_variable_is_documented() -> None:
    variables = _environment_variables()
    assert "MAAS_BOOTSTRAP_SERVERS" in variables  # the scan finds what it should
    missing = sorted(v for v in variables if f"`{v}`" not in CONTRACT)
    assert not missing, f"docs/contract.md lacks environment variables {missing}"


def test_no_doc_points_at_a_file_that_is_not_in_the_repository() -> None:
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
