"""The console script's basics: what it can do, and which version it is."""

from __future__ import annotations

import pytest

from maas.cli import main


def test_maas_without_arguments_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for verb in ("up", "broker", "worker", "models", "submit", "score", "retrain", "trainer"):
        assert f"\n    {verb} " in out, f"`maas` does not list {verb}"


def test_maas_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("maas 0.")
