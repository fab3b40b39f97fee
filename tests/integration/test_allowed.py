"""What the operator allows retrain jobs: recipes, data roots, promote "always" (no broker)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pytest

from maas.cli import main
from maas.commands.schedule import register, trainer_settings
from producer.contract.messages import Dataset, ErrorCode
from workers.recipes import DigitsRecipe, RecipeNotFoundError
from workers.training.allowed import DEFAULT_DATA_ROOT, Allowed, Refused

USER_RECIPE = "tests.unit.recipes.test_recipes:TinyRecipe"


def test_settings_come_from_the_environment_and_flags_win() -> None:
    env = {"MAAS_RECIPES": " a.b:C, d.e:F ,", "MAAS_DATA_ROOTS": "/srv/data::/mnt/shared"}
    allowed = Allowed.from_env(env)
    assert allowed.recipes == ("a.b:C", "d.e:F")
    assert allowed.data_roots == (Path("/srv/data"), Path("/mnt/shared"))
    assert not allowed.promote_always
    flags = Allowed.from_env(env, recipes=["x.y:Z"], data_roots=["/here"], promote_always=True)
    assert (flags.recipes, flags.data_roots, flags.promote_always) == (
        ("x.y:Z",),
        (Path("/here"),),
        True,
    )
    assert Allowed.from_env({}) == Allowed() and Allowed().data_roots == (DEFAULT_DATA_ROOT,)
    with pytest.raises(ValueError, match="at least one folder"):
        Allowed(data_roots=())


@pytest.mark.parametrize(
    "name", ["os:abort", "antigravity:x", "subprocess:Popen", USER_RECIPE, "nope", "a" * 5000]
)
def test_a_recipe_the_operator_did_not_list_is_refused_and_nothing_imported(name: str) -> None:
    before = set(sys.modules)
    with pytest.raises(Refused) as refused:
        Allowed().recipe(name)
    assert set(sys.modules) == before
    assert refused.value.code == ErrorCode.INVALID_INPUT
    assert "is not one this trainer runs; it runs digits, tabular" in refused.value.message
    assert len(refused.value.message) < 400


def test_built_in_and_listed_recipes_are_run() -> None:
    assert isinstance(Allowed().recipe("digits"), DigitsRecipe)
    allowed = Allowed(recipes=(USER_RECIPE,))
    allowed.load_recipes()
    assert allowed.recipe(USER_RECIPE).name == "tiny"
    with pytest.raises(
        Refused, match=r"it runs digits, tabular, tests\.unit\.recipes\.test_recipes:TinyRecipe"
    ):
        allowed.recipe("tests.unit.recipes.test_recipes:TINY")


def test_a_listed_recipe_that_cannot_load_fails_at_start() -> None:
    with pytest.raises(RecipeNotFoundError, match="cannot import module 'no_such_module_x'"):
        Allowed(recipes=("no_such_module_x:R",)).load_recipes()


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """A data root with a file in it, and a folder outside it with a secret."""
    root, outside = tmp_path / "data", tmp_path / "outside"
    (root / "team").mkdir(parents=True)
    outside.mkdir()
    (root / "team" / "churn.csv").write_text("a,label\n1,0\n")
    (outside / "secret.csv").write_text("api_token,label\nsk-live-1,0\n")
    return root, outside


def test_files_inside_a_root_resolve_to_their_real_path(
    roots: tuple[Path, Path], tmp_path: Path
) -> None:
    root, _ = roots
    real = (root / "team" / "churn.csv").resolve()
    allowed = Allowed(data_roots=(tmp_path / "elsewhere", root))
    for uri in (str(root / "team" / "churn.csv"), real.as_uri(), f"{root}/team/../team/churn.csv"):
        assert allowed.confine(uri) == real
    assert Allowed(data_roots=(root,)).confine("team/churn.csv") == real  # relative: to the root
    (root / "alias.csv").symlink_to(root / "team" / "churn.csv")  # a link that stays inside
    assert allowed.confine(str(root / "alias.csv")) == real
    ref = allowed.dataset(Dataset(uri=str(root / "alias.csv")))
    assert ref is not None and (ref.uri, ref.path) == (str(root / "alias.csv"), real)
    assert allowed.dataset(Dataset(name="digits")) is not None
    assert allowed.dataset(None) is None


def test_paths_outside_the_roots_are_refused_alike_whether_or_not_they_exist(
    roots: tuple[Path, Path],
) -> None:
    root, outside = roots
    allowed = Allowed(data_roots=(root,))
    (root / "escape.csv").symlink_to(outside / "secret.csv")
    (root / "escape-dir").symlink_to(outside, target_is_directory=True)
    (root / "loop.csv").symlink_to(root / "loop.csv")
    uris = {
        "existing": str(outside / "secret.csv"),
        "missing": str(outside / "missing.csv"),
        "dotdot": "../outside/secret.csv",
        "link": str(root / "escape.csv"),
        "link-dir": str(root / "escape-dir" / "secret.csv"),
        "link-dir-missing": str(root / "escape-dir" / "missing.csv"),
        "loop": str(root / "loop.csv"),
        "nul": str(root / "a\x00.csv"),
        "etc": "file:///etc/passwd",
    }
    messages = {}
    for what, uri in uris.items():
        with pytest.raises(Refused) as refused:
            allowed.confine(uri)
        assert refused.value.code == ErrorCode.INVALID_INPUT, what
        messages[what] = refused.value.message.replace(repr(uri), "URI")
    assert len(set(messages.values())) == 1, messages
    assert "is not inside the trainer's data roots" in messages["existing"]
    assert str(root) not in messages["existing"]  # the server's folders are not told


def test_uris_that_are_not_local_files_are_refused(roots: tuple[Path, Path]) -> None:
    allowed = Allowed(data_roots=(roots[0],))
    with pytest.raises(Refused, match="scheme 's3' is not supported"):
        allowed.confine("s3://bucket/data.csv")
    with pytest.raises(Refused, match="names host"):
        allowed.confine("file://host/data.csv")


def test_promote_always_needs_the_operators_grant() -> None:
    with pytest.raises(Refused) as refused:
        Allowed().check_promote("always")
    assert refused.value.code == ErrorCode.UNAUTHORIZED
    assert "--allow-promote-always" in refused.value.message
    for mode in ("gate", "never"):
        Allowed().check_promote(mode)
    Allowed(promote_always=True).check_promote("always")


def test_a_root_given_as_a_link_is_followed(roots: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = roots
    link = tmp_path / "root-link"
    os.symlink(root, link)
    allowed = Allowed(data_roots=(link,))
    assert allowed.confine(str(link / "team" / "churn.csv")) == (root / "team/churn.csv").resolve()
    assert allowed.confine(str(root / "team" / "churn.csv")).name == "churn.csv"


def trainer_args(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["trainer", *flags])


def test_the_trainer_command_takes_the_operators_grants(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAAS_RECIPES", "from.env:R")
    monkeypatch.setenv("MAAS_DATA_ROOTS", "/env/a:/env/b")
    assert trainer_settings(trainer_args()).allowed == Allowed(
        recipes=("from.env:R",), data_roots=(Path("/env/a"), Path("/env/b"))
    )
    flags = ["--recipes", "a.b:C,d.e:F", "--data-root", "/x", "--data-root", "/y"]
    settings = trainer_settings(trainer_args(*flags, "--allow-promote-always"))
    assert settings.allowed == Allowed(
        recipes=("a.b:C", "d.e:F"), data_roots=(Path("/x"), Path("/y")), promote_always=True
    )


def test_the_trainer_command_stops_at_a_recipe_it_cannot_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = ["--database-url", f"sqlite:///{tmp_path / 'r.db'}", "--artifact-dir", str(tmp_path)]
    assert main(["trainer", "--recipes", "no_such_module_x:R", *registry]) == 2
    assert "cannot import module 'no_such_module_x'" in capsys.readouterr().err
