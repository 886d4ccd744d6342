"""Notebook 08's Try-this lines do what they promise (papermill, reading the notebook's result_json)."""

from pathlib import Path

import pytest
from helpers import run_notebook

NOTEBOOK = "08_token_trees"
# Smaller than the defaults, for speed: sections 4-5 on two subtasks (one prompt each to decode, the math CTAR
# prompts kept) and a short cost curve. The lines promise effects on section 5's unsized trees and section 4's CTAR.
SMALL = {"subtasks": ["qa", "math_reasoning"], "per_subtask": 1, "cost_repeats": 3}


def run(tmp_path: Path, name: str, **parameters) -> dict:
    """Run notebook 08 with `parameters` (and SMALL) and return what it wrote to result_json."""
    return run_notebook(NOTEBOOK, tmp_path, name, **{**SMALL, **parameters})


@pytest.fixture(scope="module")
def default(tmp_path_factory) -> dict:
    """The notebook's result with its default model (SmolLM2) and tree settings, run once for the module."""
    return run(tmp_path_factory.mktemp("default"), "default")


def test_one_candidate_per_node_turns_the_trees_into_chains_and_medusa_accepts_less(tmp_path, default):
    chains = run(tmp_path, "chains", top_k=1)
    assert chains["top_k"] == 1 and default["top_k"] > 1
    for method in ("kangaroo_tree", "kangaroo_tree_sized", "medusa", "medusa_sized"):
        decoded = chains["decode"][method]
        assert decoded["chains"] == len(decoded["tree_nodes"]) > 0, method  # every tree as deep as it is large
    for method in ("kangaroo_tree", "medusa"):
        assert default["decode"][method]["chains"] < len(default["decode"][method]["tree_nodes"]), method
    assert chains["decode"]["medusa"]["mean_accepted"] < default["decode"]["medusa"]["mean_accepted"]


def test_smaller_trees_accept_fewer_tokens_per_pass(tmp_path, default):
    small = run(tmp_path, "small", max_nodes=4)
    assert small["max_nodes"] == 4 and default["max_nodes"] > 4
    for method in ("kangaroo_tree", "medusa"):
        assert max(small["decode"][method]["tree_nodes"]) <= 4 < max(default["decode"][method]["tree_nodes"])
        assert small["decode"][method]["mean_accepted"] < default["decode"][method]["mean_accepted"], method


def test_the_tiny_world_puts_kangaroo_ahead_everywhere_and_leaves_its_tree_little_to_add(tmp_path, default):
    tiny = run(tmp_path, "tiny", model="tiny")
    assert tiny["model"] == "tiny" and default["model"] == "smollm2"
    for group, row in tiny["ctar"].items():
        assert all(k > m for k, m in zip(row["kangaroo"], row["medusa"], strict=True)), group

    def saved(r: dict) -> int:
        return r["decode"]["kangaroo"]["passes"] - r["decode"]["kangaroo_tree"]["passes"]

    assert saved(tiny) <= 2 < saved(default)
