"""Every lossless method reproduces the shipped target's greedy output on every evaluation prompt."""

from conftest import LOSSLESS_TOKENS

from kangaroo_lite import kangaroo, load_medusa_heads, medusa, speculative


def test_speculative_greedy_output_identical_to_autoregressive_on_every_evaluation_prompt(shipped, baseline_greedy):
    for qid, (ids, expected) in baseline_greedy.items():
        assert speculative(shipped.target, shipped.draft, ids, LOSSLESS_TOKENS).tokens == expected, qid


def test_kangaroo_greedy_output_identical_to_autoregressive_on_every_evaluation_prompt(shipped, baseline_greedy):
    for qid, (ids, expected) in baseline_greedy.items():
        assert kangaroo(shipped.target, shipped.adapter, ids, LOSSLESS_TOKENS).tokens == expected, qid


def test_medusa_greedy_output_identical_to_autoregressive_on_every_third_evaluation_prompt(shipped, baseline_greedy):
    heads = load_medusa_heads(shipped.target)
    for qid, (ids, expected) in list(baseline_greedy.items())[::3]:
        assert medusa(shipped.target, heads, ids, LOSSLESS_TOKENS).tokens == expected, qid


def test_kangaroo_with_a_low_threshold_and_long_drafts_is_still_identical(shipped, baseline_greedy):
    for qid, (ids, expected) in list(baseline_greedy.items())[::12]:
        result = kangaroo(shipped.target, shipped.adapter, ids, LOSSLESS_TOKENS, threshold=0.0, max_draft_tokens=8)
        assert result.tokens == expected, qid


def test_no_method_drafts_past_the_end_of_text_token(shipped, baseline_greedy):
    eos = shipped.tokenizer.eos_token_id
    prompts = [ids for ids, _ in list(baseline_greedy.values())[::40]]
    results = [kangaroo(shipped.target, shipped.adapter, ids, LOSSLESS_TOKENS) for ids in prompts]
    results += [speculative(shipped.target, shipped.draft, ids, LOSSLESS_TOKENS, num_draft_tokens=20)
                for ids in prompts]
    drafts = [step.drafted for result in results for step in result.steps]
    assert all(eos not in drafted[:-1] for drafted in drafts)
    assert sum(bool(drafted) and drafted[-1] == eos for drafted in drafts) >= len(prompts)  # rounds it ended
    assert any(step.info.get("draft_stop") == "eos" for result in results[: len(prompts)] for step in result.steps)
