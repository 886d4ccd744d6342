"""Every notebook runs under papermill with non-default parameters, and the parameters change its result."""

import json
from pathlib import Path

import papermill
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

# notebook → (non-default parameters, a check that the written result reflects them)
CASES = {
    "00_autoregressive_baseline": (
        {"subtask": "qa", "max_new_tokens": 64, "cache_positions": [64, 512]},
        lambda r: r["subtask"] == "qa" and r["stop_reason"] == "eos" and "The answer is" not in r["greedy_text"],
    ),
    "01_speculative_decoding": (
        {"model": "tiny", "subtask": "qa", "num_draft_tokens": 2, "num_prompts": 2, "sampling_runs": 40},
        lambda r: r["model"] == "tiny" and len(r["acceptance_by_position"]) == 2,
    ),
    "02_kangaroo_adapter": (
        {"exit_layer": 2, "train_steps": 10, "train_examples": 300, "compare_layers": [1, 3], "compare_steps": 5,
         "eval_examples": 20},
        lambda r: r["exit_layer"] == 2 and sorted(int(k) for k in r["exit_layers"]) == [1, 3],
    ),
    "03_dual_early_exit": (
        {"subtask": "qa", "threshold": 0.95, "sweep_thresholds": [0.0, 0.95], "num_prompts": 1},
        lambda r: sorted(float(k) for k in r["sweep"]) == [0.0, 0.95]
        and r["sweep"]["0.0"]["mean_draft_length"] > r["sweep"]["0.95"]["mean_draft_length"],
    ),
    "04_mtad": (
        {"num_beams": 4, "subtasks": ["qa", "math_reasoning"], "per_subtask": 1, "seeds": [0],
         "scan_temperatures": [1.5], "gap_runs": 20},
        lambda r: r["num_beams"] == 4 and r["metrics"],
    ),
    "05_spec_bench": (
        {"methods": ["autoregressive", "kangaroo"], "subtasks": ["qa"], "questions_per_subtask": 1,
         "threshold": 0.2, "max_new_tokens": 24},
        lambda r: set(r["results"]["summary"]) == {"autoregressive", "kangaroo"} and r["threshold"] == 0.2,
    ),
    "06_batching": (
        {"cost_batch_sizes": [1, 3], "cost_tokens_per_row": [1, 3], "cost_repeats": 2,
         "demo_subtasks": ["qa", "translation"], "demo_max_new_tokens": 16, "batch_sizes": [1, 3],
         "methods": ["autoregressive", "kangaroo"], "subtasks": ["qa", "math_reasoning"], "questions_per_subtask": 2,
         "max_new_tokens": 16, "repeats": 3},
        lambda r: sorted(int(b) for b in r["pass_costs_ms"]) == [1, 3]
        and sorted(int(k) for k in r["pass_costs_ms"]["3"]) == [1, 3]
        and sorted(d["subtask"] for d in r["demo"]) == ["qa", "translation"] and r["batch_sizes"] == [1, 3]
        and set(r["bench"]["by_batch_size"]["3"]["methods"]) == {"autoregressive", "kangaroo"}
        and set(r["crossover"]) == {"kangaroo"},
    ),
    "07_copy_drafts": (
        {"model": "tiny", "subtasks": ["qa", "rag"], "max_new_tokens": 24, "max_copy_tokens": 3, "min_match": 2,
         "cost_repeats": 3},
        lambda r: r["model"] == "tiny" and sorted(r["by_subtask"]) == ["qa", "rag"] and r["max_copy_tokens"] == 3
        and sorted(int(n) for n in r["cost_curve"]) == [1, 2, 3, 4, 9],  # 9: the longest pass always measured
    ),
    "08_token_trees": (
        {"model": "tiny", "subtasks": ["qa", "rag"], "math_prompts": 2, "per_subtask": 1, "max_new_tokens": 24,
         "top_k": 2, "max_nodes": 6, "cost_repeats": 2},
        lambda r: r["model"] == "tiny" and set(r["ctar"]) == {"math_reasoning", "qa", "rag", "overall"}
        and r["max_nodes"] == 6 and max(r["decode"]["medusa"]["tree_nodes"]) <= 6
        and sorted(int(n) for n in r["cost_curve"]) == list(range(1, 8)),
    ),
}


def test_every_notebook_has_a_parameter_case():
    assert {p.stem for p in NOTEBOOKS.glob("*.ipynb")} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_notebook_runs_with_other_parameters_and_they_change_its_result(name, tmp_path):
    parameters, check = CASES[name]
    result = tmp_path / "result.json"
    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
                               parameters={**parameters, "result_json": str(result)}, cwd=str(NOTEBOOKS),
                               progress_bar=False)
    assert check(json.loads(result.read_text())), name
