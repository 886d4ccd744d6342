"""Notebook 03's Try-this lines do what they promise (papermill, reading the notebook's result_json)."""

from pathlib import Path

import pytest
from helpers import run_notebook

NOTEBOOK = "03_dual_early_exit"
# Smaller than the defaults, for speed (a two-point sweep on one prompt, one prompt per subtask for
# the confidence chart); the generation the effects below are read from keeps its defaults.
SMALL = {"sweep_thresholds": [0.0, 1.0], "num_prompts": 1, "confidence_prompts": 1}


def run(tmp_path: Path, name: str, **parameters) -> dict:
    """Run notebook 03 with `parameters` and return what it wrote to result_json."""
    return run_notebook(NOTEBOOK, tmp_path, name, **parameters)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict:
    """The defaults (tiny, η = 0.6, γ = 6, the shipped adapter at ℓ = 1) at the reduced size."""
    return run(tmp_path_factory.mktemp("course03"), "tiny", **SMALL)


def test_on_smollm2_most_judged_drafts_are_rejected_and_the_threshold_matters(tiny_run, tmp_path):
    real = run(tmp_path, "smollm2", model="smollm2", max_new_tokens=16, **SMALL)
    assert real["accepted_at_zero"] < 0.6 < 0.9 < tiny_run["accepted_at_zero"]
    sweep = real["sweep"]
    assert sweep["1.0"]["mean_draft_length"] < sweep["0.0"]["mean_draft_length"]
    assert sweep["1.0"]["mean_accepted"] < sweep["0.0"]["mean_accepted"]


def test_without_the_draft_step_early_exit_more_drafts_are_thrown_away(tiny_run, tmp_path):
    eager = run(tmp_path, "eager", threshold=0.0, **SMALL)
    assert eager["thrown_drafts"] > tiny_run["thrown_drafts"]
    assert eager["mean_draft_length"] > tiny_run["mean_draft_length"]


def test_a_deeper_exit_layer_makes_each_draft_step_dearer(tiny_run, tmp_path):
    deeper = run(tmp_path, "deeper", exit_layer=3, **SMALL)
    assert deeper["exit_layer"] == 3 and tiny_run["exit_layer"] == 1
    assert deeper["c"] > tiny_run["c"]
