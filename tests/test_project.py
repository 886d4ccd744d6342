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


def test_environment_yml_and_pyproject_name_the_same_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_deps = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(conda_pip) - {"-e ."} == pip_deps
    assert "torch==2.13.0" in pip_deps


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
