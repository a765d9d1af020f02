"""The package's shape: one import name, and imports that go one way (data <- model <- train)."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# what each subpackage may import of calcidet besides itself
ALLOWED = {"data": set(), "model": {"data"}, "train": {"data", "model"}}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_go_one_way(package: str) -> None:
    wrong = []
    for path in sorted((REPO / package).glob("*.py")):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] in ("data", "model", "train"):  # the folder name, not the installed package
                wrong.append(f"{path.name}: import {name} (use calcidet.{name})")
            elif parts[0] == "calcidet" and len(parts) > 1 and parts[1] not in ALLOWED[package] | {package}:
                wrong.append(f"{path.name}: import {name}")
    assert not wrong, f"calcidet.{package} may import only {sorted(ALLOWED[package])}: {wrong}"


def test_tests_and_benchmarks_import_the_installed_name() -> None:
    wrong = [f"{path.relative_to(REPO)}: {name}"
             for folder in ("tests", "benchmarks") for path in sorted((REPO / folder).glob("*.py"))
             for name in _imports(path) if name.split(".")[0] in ("data", "model", "train")]
    assert not wrong, wrong
