"""Notebook 02's Try-this lines do what they promise (papermill, reading the notebook's result_json)."""

from pathlib import Path

import pytest
from helpers import run_notebook

NOTEBOOK = "02_kangaroo_adapter"
# Smaller than the defaults, for speed (fewer evaluation examples, a short exit-layer comparison, a
# short timing); the live training keeps its default length, so the effects below hold at this size too.
SMALL = {"eval_examples": 30, "compare_layers": [1, 2], "compare_steps": 5, "timing_tokens": 16, "timing_repeats": 1}


def run(tmp_path: Path, name: str, **parameters) -> dict:
    """Run notebook 02 with `parameters` and return what it wrote to result_json."""
    return run_notebook(NOTEBOOK, tmp_path, name, **parameters)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict:
    """The defaults (tiny, exit layer 1, 100 live steps) at the reduced size."""
    return run(tmp_path_factory.mktemp("course02"), "tiny", **SMALL)


def test_on_smollm2_early_exits_fail_without_adapter_and_the_shipped_adapter_carries_the_drafter(tmp_path):
    r = run(tmp_path, "smollm2", model="smollm2", train_steps=10, distill_prompts=4, compare_layers=[1],
            compare_steps=5, timing_tokens=8)
    layer = r["shipped"]["exit_layer"]
    assert r["no_adapter"][str(layer)] < 0.1  # a few percent of the tokens without an adapter
    assert r["shipped"]["acceptance"] > r["no_adapter"][str(layer)] + 0.1


def test_a_deeper_exit_layer_trains_a_live_adapter_that_ends_higher(tiny_run, tmp_path):
    deeper = run(tmp_path, "deeper", exit_layer=4, **SMALL)
    assert deeper["exit_layer"] == 4 and tiny_run["exit_layer"] == 1
    assert deeper["live_acceptance"][1] > tiny_run["live_acceptance"][1]


def test_a_fifth_of_the_live_run_stops_lower(tiny_run, tmp_path):
    short = run(tmp_path, "short", train_steps=20, **SMALL)
    assert short["live_acceptance"][1] > short["live_acceptance"][0]  # it still rises
    assert short["live_acceptance"][1] < tiny_run["live_acceptance"][1]
