"""The package's folders form layers: each imports only the folders below it, as its docstring says."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kangaroo_lite"

# Each folder and the folders it may import (besides itself).
ALLOWED = {
    "core": set(),
    "models": {"core"},
    "adapter": {"core", "models"},
    "model_sets": {"core", "models", "adapter"},
    "decoding": {"core", "models", "adapter"},
    "bench": {"core", "models", "adapter", "model_sets", "decoding"},
    "notebook": {"core", "models", "adapter", "model_sets", "decoding", "bench"},
    "cli": {"core", "models", "adapter", "model_sets", "decoding", "bench", "notebook"},
}


def imported_folders(path: Path) -> set[str]:
    """The kangaroo_lite folders a module imports, at module level or inside functions."""
    module = path.relative_to(PACKAGE).with_suffix("").parts
    folders = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(module[:-1])[: len(module) - node.level]
                parts = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "kangaroo_lite":
                parts = node.module.split(".")[1:]
            else:
                continue
            if parts:
                folders.add(parts[0])
        elif isinstance(node, ast.Import):
            folders |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("kangaroo_lite.")}
    return folders


def test_every_folder_has_a_rule_and_a_docstring_naming_it():
    folders = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert folders == set(ALLOWED)
    for folder in folders:
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
        assert doc and "May import" in doc, folder


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_folder_imports_only_the_layers_below_it(folder):
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        wrong = imported_folders(path) - ALLOWED[folder] - {folder}
        assert not wrong, f"{path.relative_to(PACKAGE)} imports {sorted(wrong)}"


def test_the_rule_reads_relative_imports_right(tmp_path):
    assert imported_folders(PACKAGE / "decoding" / "kangaroo.py") >= {"core", "adapter"}
    assert "core" in imported_folders(PACKAGE / "adapter" / "training.py")
