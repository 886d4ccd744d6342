"""Notebook 01's Try-this lines do what they promise (papermill, reading the notebook's result_json)."""

from pathlib import Path

from helpers import run_notebook

NOTEBOOK = "01_speculative_decoding"


def run(tmp_path: Path, name: str, **parameters) -> dict:
    """Run notebook 01 with `parameters` and return what it wrote to result_json."""
    return run_notebook(NOTEBOOK, tmp_path, name, **parameters)


def test_with_eight_drafts_the_last_position_is_kept_in_under_a_quarter_of_the_first_ones_rounds(tmp_path):
    # SmolLM2 (the default); fewer sampling runs and timing repeats, for speed: acceptance does not depend on them.
    r = run(tmp_path, "gamma8", num_draft_tokens=8, sampling_runs=30, cost_repeats=9)
    kept = r["acceptance_by_position"]
    assert r["model"] == "smollm2" and len(kept) == 8 and kept[-1] < kept[0] / 4


def test_on_tiny_the_draft_is_almost_always_right(tmp_path):
    r = run(tmp_path, "tiny", model="tiny", sampling_runs=100)
    assert r["alpha"] > 0.9 and r["mean_accepted"] > 0.8 * (r["num_draft_tokens"] + 1)
