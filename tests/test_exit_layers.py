"""Comparing exit layers: every adapter decodes the same prompts losslessly, timed against the baseline."""

from kangaroo_lite.adapter.model import KangarooAdapter
from kangaroo_lite.bench.exit_layers import compare_exit_layers


def test_every_exit_layer_is_measured_on_the_same_prompts_and_stays_lossless(shipped, questions):
    adapters = {layer: KangarooAdapter.from_target(shipped.target, layer) for layer in (1, 3)}
    report = compare_exit_layers(shipped, adapters, questions, ["qa", "math_reasoning"], per_subtask=1,
                                 max_new_tokens=12, repeats=1, options={"max_draft_tokens": 3, "threshold": 0.0})
    assert sorted(report) == [1, 3]
    for row in report.values():
        assert row["prompts"] == 2 and row["identical"] == 2
        assert row["speedup"] > 0 and row["mean_accepted"] >= 1 and 0 <= row["acceptance_rate"] <= 1
