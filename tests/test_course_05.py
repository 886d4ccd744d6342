"""Notebook 05's Try-this lines do what they promise (papermill, reading the notebook's result_json)."""

from pathlib import Path

import pytest
from helpers import run_notebook

NOTEBOOK = "05_spec_bench"
# Smaller than the defaults, for speed; the effects below hold at this size too.
SMALL = {"methods": ["autoregressive", "kangaroo"], "subtasks": ["mt_bench", "qa"], "questions_per_subtask": 1,
         "max_new_tokens": 32, "cost_repeats": 3}


def run(tmp_path: Path, name: str, **parameters) -> dict:
    """Run notebook 05 with `parameters` and return what it wrote to result_json."""
    return run_notebook(NOTEBOOK, tmp_path, name, **parameters)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict:
    """The tiny model set with the notebook's own Kangaroo settings, at the reduced size."""
    return run(tmp_path_factory.mktemp("course05"), "tiny", **SMALL)


def test_smollm2_lowers_kangaroos_acceptance_and_mat(tiny_run, tmp_path):
    real = run(tmp_path, "smollm2", model="smollm2", **SMALL)
    tiny, smol = tiny_run["metrics"], real["metrics"]
    assert smol["kangaroo_acceptance_rate"] < tiny["kangaroo_acceptance_rate"] - 0.2
    assert smol["kangaroo_judged_acceptance_rate"] < tiny["kangaroo_judged_acceptance_rate"]
    assert smol["kangaroo_mean_accepted"] < tiny["kangaroo_mean_accepted"]


def test_max_draft_tokens_4_caps_gamma_and_lowers_mat(tiny_run, tmp_path):
    capped = run(tmp_path, "capped", max_draft_tokens=4, **SMALL)["metrics"]
    assert capped["kangaroo_mean_drafted"] * (1 - capped["kangaroo_copied_drafts"]) <= 4  # the adapter's, copies aside
    assert capped["kangaroo_mean_drafted"] < tiny_run["metrics"]["kangaroo_mean_drafted"]
    assert capped["kangaroo_mean_accepted"] < tiny_run["metrics"]["kangaroo_mean_accepted"]


def test_a_high_threshold_shortens_kangaroos_drafts(tiny_run, tmp_path):
    strict = run(tmp_path, "strict", threshold=0.9, **SMALL)["metrics"]
    assert strict["kangaroo_mean_drafted"] < tiny_run["metrics"]["kangaroo_mean_drafted"]


def test_prompt_lookup_gets_drafts_accepted_on_summaries(tmp_path):
    copy = run(tmp_path, "lookup", subtasks=["summarization"], questions_per_subtask=1, max_new_tokens=32,
               cost_repeats=3, methods=["autoregressive", "hf_prompt_lookup", "kangaroo"])["metrics"]
    assert copy["hf_prompt_lookup_mean_accepted"] > 1.2
