"""``maas tenants token`` and ``maas gateway``'s flags through ``maas.cli.main``."""

from __future__ import annotations

import pytest

from maas.cli import main
from registry import Registry, RegistrySettings
from tests.cli_helpers import one_error_line


def test_token_create_list_revoke(
    registry_settings: RegistrySettings, capsys: pytest.CaptureFixture[str]
) -> None:
    with Registry.open(registry_settings) as registry:
        registry.tenants.add("acme", actor="ops")
    where = ["--database-url", registry_settings.database_url]
    assert main(["tenants", "token", "create", "acme", *where, "--actor", "ops"]) == 0
    created = capsys.readouterr()
    secret = created.out.strip()
    assert secret.startswith("maas_") and "shown once" in created.err
    token_id = secret.split("_")[1]
    assert main(["tenants", "token", "list", "acme", *where]) == 0
    listed = capsys.readouterr().out
    assert token_id in listed and secret not in listed
    assert main(["tenants", "token", "revoke", token_id, *where]) == 0
    assert "revoked" in capsys.readouterr().out
    with Registry.open(registry_settings) as registry:
        assert registry.tokens.tenant_of(secret) is None
    assert main(["tenants", "token", "create", "nope", *where]) == 1
    one_error_line(capsys.readouterr().err, "nope", "maas tenants list")


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--tls-cert", "x.pem"], ("--tls-cert and --tls-key",)),
        (["--tls-cert", "x.pem", "--tls-key", "y.pem"], ("x.pem", "not a readable file")),
        (["--timeout-s", "0"], ("--timeout-s",)),
    ],
)
def test_gateway_flags_that_cannot_work_are_one_line(
    flags: list[str], words: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gateway", *flags]) == 1
    one_error_line(capsys.readouterr().err, *words)
