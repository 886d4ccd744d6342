"""Notebook 06's Try-this lines do what they promise (papermill, reading the notebook's result_json)."""

from pathlib import Path

import pytest
from helpers import run_notebook

NOTEBOOK = "06_batching"
# Smaller than the defaults, for speed: two subtasks, batches of 1 and 2, short answers; three timing repeats
# (the median), since a tiny run of a few tens of milliseconds is otherwise at the mercy of one preemption.
SMALL = {"cost_batch_sizes": [1, 4], "cost_repeats": 3, "demo_subtasks": ["qa", "math_reasoning"],
         "demo_max_new_tokens": 16, "batch_sizes": [1, 2], "methods": ["autoregressive", "kangaroo"],
         "subtasks": ["qa", "math_reasoning"], "questions_per_subtask": 1, "max_new_tokens": 24, "repeats": 3}


def run(tmp_path: Path, name: str, **parameters) -> dict:
    """Run notebook 06 with `parameters` and return what it wrote to result_json."""
    return run_notebook(NOTEBOOK, tmp_path, name, **parameters)


def kangaroo_at_batch_1(result: dict) -> dict:
    """Kangaroo's row of the benchmark at batch size 1."""
    return result["bench"]["by_batch_size"]["1"]["methods"]["kangaroo"]


def test_smollm2s_drafter_buys_less_at_batch_1(tmp_path):
    tiny, real = run(tmp_path, "tiny", **SMALL), run(tmp_path, "smollm2", model="smollm2", **SMALL)
    assert kangaroo_at_batch_1(real)["mean_accepted"] < kangaroo_at_batch_1(tiny)["mean_accepted"] / 2
    assert kangaroo_at_batch_1(real)["speedup"] < kangaroo_at_batch_1(tiny)["speedup"]


@pytest.mark.parametrize("tokens", [[1, 4, 16, 32]])
def test_many_tokens_per_row_cost_several_plain_steps_at_the_largest_batch(tmp_path, tokens):
    r = run(tmp_path, "deep", **{**SMALL, "cost_tokens_per_row": tokens, "cost_batch_sizes": [1, 4, 16]})
    largest = r["pass_costs_ms"]["16"]
    assert largest["32"] > 3 * largest["1"]
