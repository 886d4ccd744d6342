"""The hindsight bound of chain drafting: run lengths read off a reply, the least-cost plan, no policy beats it."""

import pytest
import torch
from helpers import tiny_model
from hypothesis import given
from hypothesis import strategies as st

from kangaroo_lite import KangarooAdapter, autoregressive, kangaroo
from kangaroo_lite.bench.draft_bounds import (
    adapter_top1,
    chain_bound,
    chain_runs,
    copy_runs,
    hindsight_bounds,
    matching_runs,
)
from kangaroo_lite.core.draft_length import curve_at, padded_curve

PADDED = {1: 1.0, 2: 1.6, 3: 1.9, 4: 1.45, 8: 1.7, 16: 2.1}


def test_runs_count_the_leading_drafts_that_match_the_reply():
    reply = [1, 2, 3, 4]
    assert matching_runs([[1, 2, 9], [2, 3, 4, 5], [], [7]], reply) == [2, 3, 0, 0]
    assert chain_runs([1, 2, 9, 4], reply) == [2, 1, 0, 1]  # a chain is right while its top-1 stays right
    assert copy_runs([5, 1, 2, 3, 8], reply) == [0, 2, 1, 0]  # after "1" the context offers "2 3 8 …"
    with pytest.raises(ValueError, match="proposals"):
        matching_runs([[1]], reply)


def test_the_bound_is_one_pass_per_token_without_drafts_and_one_pass_in_all_with_a_perfect_source():
    free = {1: 1.0, 16: 1.0}
    assert chain_bound({"a": [0] * 5}, free) == pytest.approx(5.0)
    assert chain_bound({"a": [4, 3, 2, 1, 0]}, free, longest=8) == pytest.approx(1.0)
    assert chain_bound({"a": [4, 3, 2, 1, 0]}, {1: 1.0, 5: 3.0}, longest=8) == pytest.approx(3.0)  # or 5 plain passes
    assert chain_bound({"a": [4, 3, 2, 1, 0]}, {1: 1.0, 5: 6.0}, longest=8) == pytest.approx(5.0)


def test_a_second_source_may_continue_where_the_first_ended():
    runs = {"copy": [2, 1, 0, 0, 0], "adapter": [0, 0, 2, 1, 0]}
    # copy 2 then adapter 2 in one pass over 5 tokens: the whole reply of 5 in one round
    assert chain_bound(runs, {1: 1.0, 8: 1.0}, longest=4) == pytest.approx(1.0)
    assert chain_bound({"copy": runs["copy"]}, {1: 1.0, 8: 1.0}, longest=4) == pytest.approx(3.0)


@given(st.lists(st.integers(0, 6), min_size=1, max_size=12), st.lists(st.integers(0, 6), min_size=1, max_size=12))
def test_more_sources_never_raise_the_least_cost(a, b):
    size = min(len(a), len(b))
    a, b = ([min(r, size - i - 1) for i, r in enumerate(runs[:size])] for runs in (a, b))
    one, both = chain_bound({"a": a}, PADDED), chain_bound({"a": a, "b": b}, PADDED)
    assert both <= one + 1e-9 and one <= size + 1e-9


def test_no_kangaroo_run_costs_less_than_its_hindsight_bound():
    target = tiny_model("llama", 4, vocab=64, seed=0, sharpness=30.0, eos=None)
    torch.manual_seed(1)
    adapter = KangarooAdapter.from_target(target, 2, init="random").eval()
    curve = padded_curve(PADDED)
    for prompt in ([3, 9, 4, 7, 1, 8] * 3, [5, 9, 2, 11]):
        reply = autoregressive(target, prompt, 24).tokens
        result = kangaroo(target, adapter, prompt, 24, max_draft_tokens=4, threshold=0.2, cost_curve=PADDED)
        assert result.tokens == reply
        spent = sum(curve_at(curve, len(step.drafted) + 1) for step in result.steps)
        runs = {"adapter": chain_runs(adapter_top1(target, adapter, prompt, reply), reply, 16),
                "copy": copy_runs(prompt, reply, 16)}
        assert chain_bound(runs, curve, longest=16) <= spent + 1e-9


def test_bounds_per_subtask_and_overall():
    target = tiny_model("llama", 4, vocab=64, seed=0, sharpness=30.0, eos=None)
    adapter = KangarooAdapter.from_target(target, 2).eval()
    replies = [(subtask, prompt, autoregressive(target, prompt, 12).tokens)
               for subtask, prompt in (("rag", [3, 9, 4, 7] * 3), ("qa", [5, 9, 2]))]
    bounds = hindsight_bounds(target, adapter, replies, PADDED)
    assert set(bounds) == {"rag", "qa", "overall"} and bounds["overall"]["tokens"] == 24
    for row in bounds.values():
        assert row["adapter or copies"] >= max(row["adapter"], row["copies"]) - 1e-9
        assert row["adapter"] >= 1.0 - 1e-9  # drafting nothing is always an option
