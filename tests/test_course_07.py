"""Notebook 07's Try-this lines do what they promise (papermill, reading the notebook's result_json)."""

from pathlib import Path

import pytest
from helpers import run_notebook

NOTEBOOK = "07_copy_drafts"
# Smaller than the defaults, for speed: one cheap subtask in section 4 (its 40-token QA prompt) and a short
# cost curve. The summarization reply of sections 1-3, whose numbers the lines promise, keeps its defaults.
SMALL = {"subtasks": ["qa"], "per_subtask": 1, "cost_repeats": 3}


def run(tmp_path: Path, name: str, **parameters) -> dict:
    """Run notebook 07 with `parameters` (and SMALL) and return what it wrote to result_json."""
    return run_notebook(NOTEBOOK, tmp_path, name, **{**SMALL, **parameters})


@pytest.fixture(scope="module")
def default(tmp_path_factory) -> dict:
    """The notebook's result with its default model (SmolLM2) and copy settings, run once for the module."""
    return run(tmp_path_factory.mktemp("default"), "default")


def test_shorter_copies_need_more_target_passes_for_the_same_summary(tmp_path, default):
    short = run(tmp_path, "short", max_copy_tokens=2)
    assert short["max_copy_tokens"] == 2 and default["max_copy_tokens"] > 2
    assert short["lookup_demo"]["mean_accepted"] < default["lookup_demo"]["mean_accepted"]
    assert short["lookup_demo"]["passes"] > default["lookup_demo"]["passes"]


def test_a_longer_minimum_match_offers_a_copy_at_fewer_steps(tmp_path, default):
    strict = run(tmp_path, "strict", min_match=3)
    assert strict["min_match"] == 3 and default["min_match"] < 3
    assert strict["offered"] < default["offered"]


def test_the_tiny_world_copies_a_smaller_share_of_kangaroos_accepted_drafts(tmp_path, default):
    tiny = run(tmp_path, "tiny", model="tiny")

    def share(r: dict) -> float:
        demo = r["kangaroo_demo"]
        return demo["copied"] / (demo["copied"] + demo["drafted"])

    assert tiny["model"] == "tiny" and default["model"] == "smollm2"
    assert share(tiny) < share(default)
