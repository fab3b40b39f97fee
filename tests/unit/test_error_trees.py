"""Each package has one root error with a documented tree: no other exception class
derives from a built-in exception directly (a read of the source, no imports)."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("producer", "registry", "workers", "maas", "migrations")
BUILTIN_ERRORS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}
# The documented roots: each package's errors.py says what hangs below it.
ROOTS = {
    "producer/contract/errors.py": "ContractError",
    "producer/errors.py": "ClientError",
    "registry/errors.py": "RegistryError",
    "workers/errors.py": "WorkerError",
    "workers/recipes/base.py": "RecipeError",
    "workers/optimize/errors.py": "OptimizeError",
    "maas/errors.py": "CommandError",
}


def rooted_in_builtins() -> set[tuple[str, str]]:
    """(module path, class) of every class whose first base is a built-in exception."""
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ClassDef) or not node.bases:
                    continue
                first = node.bases[0]
                if isinstance(first, ast.Name) and first.id in BUILTIN_ERRORS:
                    found.add((path.relative_to(ROOT).as_posix(), node.name))
    return found


def test_every_exception_hangs_below_its_packages_documented_root() -> None:
    assert rooted_in_builtins() == set(ROOTS.items())


def test_each_root_is_documented_with_its_tree() -> None:
    for path, root in ROOTS.items():
        docstring = ast.get_docstring(ast.parse((ROOT / path).read_text(encoding="utf-8")))
        package_doc = ast.get_docstring(
            ast.parse((ROOT / path).parent.joinpath("__init__.py").read_text(encoding="utf-8"))
        )
        assert root in f"{docstring}\n{package_doc}", path
