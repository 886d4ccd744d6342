"""Every lossless method reproduces the shipped target's greedy output on every evaluation prompt."""

from conftest import LOSSLESS_TOKENS

from kangaroo_lite import kangaroo, speculative


def test_speculative_greedy_output_identical_to_autoregressive_on_every_evaluation_prompt(shipped, baseline_greedy):
    for qid, (ids, expected) in baseline_greedy.items():
        assert speculative(shipped.target, shipped.draft, ids, LOSSLESS_TOKENS).tokens == expected, qid


def test_kangaroo_greedy_output_identical_to_autoregressive_on_every_evaluation_prompt(shipped, baseline_greedy):
    for qid, (ids, expected) in baseline_greedy.items():
        assert kangaroo(shipped.target, shipped.adapter, ids, LOSSLESS_TOKENS).tokens == expected, qid


def test_kangaroo_with_a_low_threshold_and_long_drafts_is_still_identical(shipped, baseline_greedy):
    for qid, (ids, expected) in list(baseline_greedy.items())[::12]:
        result = kangaroo(shipped.target, shipped.adapter, ids, LOSSLESS_TOKENS, threshold=0.0, max_draft_tokens=8)
        assert result.tokens == expected, qid
