"""The curl lines of docs/gateway.md and the README run, as written, against a gateway
in front of a real worker (the docs' 127.0.0.1:8080 pointed at the test's gateway)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.gateway_fixtures import GatewayStack

ROOT = Path(__file__).resolve().parents[2]
BASH = re.compile(r"^```bash\n(.*?)^```", re.DOTALL | re.MULTILINE)


def curl_blocks(doc: Path) -> list[str]:
    return [block for block in BASH.findall(doc.read_text()) if "curl " in block]


BLOCKS = [
    pytest.param(doc, i, id=f"{doc.name}-{i}")
    for doc in (ROOT / "docs" / "gateway.md", ROOT / "README.md")
    for i in range(len(curl_blocks(doc)))
]


@pytest.mark.parametrize(("doc", "index"), BLOCKS)
def test_the_docs_curl_lines_answer(gateway_stack: GatewayStack, doc: Path, index: int) -> None:
    script = curl_blocks(doc)[index].replace(
        "127.0.0.1:8080", f"127.0.0.1:{gateway_stack.http_port}"
    )
    env = {**os.environ, "TOKEN": gateway_stack.tokens["acme"]}
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    answers = [
        json.loads(line)
        for line in re.findall(r"^\{.*\}$", ran.stdout.replace("}{", "}\n{"), re.MULTILINE)
    ]
    assert answers, ran.stdout
    inferred = [a for a in answers if "model_name" in a]
    if "infer" in script:
        assert inferred and all(a["model_name"] == "digits" for a in inferred), ran.stdout
        labels = [o for a in inferred for o in a["outputs"] if o["name"] == "label"]
        assert labels and all(o["datatype"] == "INT64" and o["shape"] == [1] for o in labels)


def test_every_curl_block_is_found() -> None:
    assert len(BLOCKS) >= 3
