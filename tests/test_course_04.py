"""Notebook 04's Try-this lines do what they promise (papermill, reading the notebook's result_json)."""

from pathlib import Path

import pytest
from helpers import run_notebook

NOTEBOOK = "04_mtad"
# Smaller than the defaults, for speed (no temperature scan, fewer samples and MTJD runs); the effects
# below hold at this size too.
SMALL = {"per_subtask": 1, "seeds": [0, 1], "max_new_tokens": 32, "scan_temperatures": [], "gap_runs": 50}


def run(tmp_path: Path, name: str, **parameters) -> dict:
    """Run notebook 04 with `parameters` and return what it wrote to result_json."""
    return run_notebook(NOTEBOOK, tmp_path, name, **parameters)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict:
    """The defaults (tiny, T = 1.5, top-p 1, τ = 0.5) at the reduced size."""
    return run(tmp_path_factory.mktemp("course04"), "tiny", **SMALL)


def test_the_official_defaults_draft_exactly_four_tokens_a_round(tmp_path):
    r = run(tmp_path, "official", num_beams=4, num_draft_tokens=4, confidence_threshold=0, **SMALL)
    assert r["num_beams"] == 4 and r["num_draft_tokens"] == 4
    assert 1 < r["methods"]["mtad"]["mean_accepted"] <= 5 and r["methods"]["mmtad"]["mean_accepted"] <= 5


def test_one_beam_makes_the_draft_tree_a_chain(tmp_path):
    r = run(tmp_path, "one_beam", num_beams=1, **SMALL)
    assert r["metrics"]["demo_tree_widths"] and set(r["metrics"]["demo_tree_widths"]) == {1}


def test_at_temperature_one_the_tiny_target_leaves_little_to_gain(tmp_path):
    methods = run(tmp_path, "t1", temperature=1.0, **SMALL)["methods"]
    assert abs(1 - methods["mtad"]["perplexity"] / methods["autoregressive"]["perplexity"]) < 0.05


def test_a_nucleus_of_0_9_makes_single_token_sampling_less_noisy(tiny_run, tmp_path):
    nucleus = run(tmp_path, "top_p", top_p=0.9, **SMALL)["methods"]
    assert nucleus["autoregressive"]["perplexity"] < tiny_run["methods"]["autoregressive"]["perplexity"]


def test_a_stricter_threshold_yields_fewer_tokens_per_target_pass(tiny_run, tmp_path):
    strict = run(tmp_path, "strict", accept_threshold=0.9, **SMALL)["metrics"]
    mats = [k for k in strict if k.startswith("gap_") and k.endswith("_mat")]
    assert len(mats) == 4
    assert sum(strict[k] for k in mats) < sum(tiny_run["metrics"][k] for k in mats)


def test_multi_candidate_shows_mmtad_round_by_round(tmp_path):
    metrics = run(tmp_path, "mmtad", multi_candidate=True, **SMALL)["metrics"]
    assert metrics["walkthrough_multi_candidate"] is True and metrics["walkthrough_shortened_rounds"] > 0


def test_smollm2_drafts_are_rejected_more_often(tiny_run, tmp_path):
    real = run(tmp_path, "smollm2", model="smollm2", subtasks=["mt_bench", "qa"], per_subtask=1, seeds=[0],
               max_new_tokens=16, scan_temperatures=[], gap_runs=20)
    assert real["methods"]["mtad"]["mean_accepted"] < tiny_run["methods"]["mtad"]["mean_accepted"] / 2
