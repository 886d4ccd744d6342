"""Project hygiene: the two dependency lists agree and notebooks are stored without outputs."""

import json
import re
import tomllib
import warnings
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower()


# The extras environment.yml installs (a checkout's whole test environment), and those it leaves to pip:
# `book` (Jupyter Book, for `make book`, which installs it).
CONDA_EXTRAS = {"test"}
PIP_ONLY_EXTRAS = {"book"}


def test_environment_yml_and_pyproject_name_the_same_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert set(extras) == CONDA_EXTRAS | PIP_ONLY_EXTRAS, "a new extra: decide whether environment.yml lists it"
    pip_deps = set(project["dependencies"]).union(*(extras[name] for name in CONDA_EXTRAS))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(conda_pip) - {"-e ."} == pip_deps
    assert "torch==2.13.0" in pip_deps


def test_the_packages_listed_in_pyproject_are_every_package_folder_and_the_mapped_ones():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "kangaroo_lite").rglob("__init__.py")}
    mapped = setuptools["package-dir"]
    assert set(setuptools["packages"]) == folders | set(mapped)
    assert mapped == {"kangaroo_lite.data": "data", "kangaroo_lite.notebooks": "notebooks"}


def test_the_version_is_written_once():
    import kangaroo_lite

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", kangaroo_lite.__version__)


def test_notebooks_are_numbered_start_with_parameters_and_have_no_outputs():
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), path.name
        cells = json.loads(path.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert "parameters" in code[0]["metadata"].get("tags", []), path.name
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), path.name


def test_a_deprecation_raised_from_our_code_fails_the_tests():
    with pytest.raises(FutureWarning):
        warnings.warn_explicit("renamed", FutureWarning, "kangaroo.py", 1, module="kangaroo_lite.decoding.kangaroo")


def test_a_deprecated_keyword_passed_to_a_model_fails_the_tests():
    from helpers import tiny_model

    with pytest.raises(FutureWarning, match="past_key_values"):
        tiny_model()(input_ids=torch.tensor([[1, 2]]), past_key_values=None)


def test_the_book_has_a_page_for_every_notebook_in_order():
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert toc["root"] == "intro" and (ROOT / "book" / "intro.md").is_file()
    assert [chapter["file"] for chapter in toc["chapters"]] == notebooks
