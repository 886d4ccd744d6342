"""Notebook 00's Try-this lines do what they promise (papermill, reading the notebook's result_json)."""

from pathlib import Path

from helpers import run_notebook

NOTEBOOK = "00_autoregressive_baseline"


def run(tmp_path: Path, name: str, **parameters) -> dict:
    """Run notebook 00 with `parameters` and return what it wrote to result_json."""
    return run_notebook(NOTEBOOK, tmp_path, name, **parameters)


def test_at_a_low_temperature_every_seed_prints_the_greedy_answer(tmp_path):
    r = run(tmp_path, "cold", temperature=0.3)
    assert r["temperature"] == 0.3 and r["sampled_texts"] == [r["greedy_text"]] * 3


def test_a_qa_answer_stops_after_about_ten_tokens(tmp_path):
    r = run(tmp_path, "qa", subtask="qa")
    assert r["subtask"] == "qa" and r["stop_reason"] == "eos" and r["greedy_tokens"] <= 12


def test_smollm2_runs_the_same_lessons_with_every_check(tmp_path):
    # A shorter answer and two context lengths, for speed; every assert of the notebook still runs.
    r = run(tmp_path, "smollm2", model="smollm2", max_new_tokens=24, cache_positions=[32, 512])
    assert r["model"] == "smollm2" and r["target_parameters"] > 100e6
    assert r["step_growth"]["no_cache"] > 3 and r["step_growth"]["no_cache"] > 2 * r["step_growth"]["cache"]
