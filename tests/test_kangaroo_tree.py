"""Kangaroo's tree mode: lossless (greedy identity, sampled distribution), trees that branch and pay off, exact caches,
clear errors."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from helpers import FALSE_ALARM, chi_square_pvalue, exact_two_token_distribution
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_kangaroo import _check_caches, random_prompts, tiny_adapter, tiny_target
from transformers import MistralConfig, MistralForCausalLM

from kangaroo_lite import encode_chat
from kangaroo_lite.adapter.model import KangarooAdapter
from kangaroo_lite.core.result import Step
from kangaroo_lite.decoding.autoregressive import autoregressive
from kangaroo_lite.decoding.kangaroo import kangaroo

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = ("llama", "qwen2", "mistral")
DEAR = {1: 1.0, 2: 1.15, 4: 1.6, 8: 2.6, 16: 5.0}  # verification far from free, as on a CPU: small trees
PADDED = {1: 1.0, 2: 1.6, 3: 2.0, 4: 1.4, 13: 4.0}  # passes over 2-3 tokens cost more than over 4
SHIPPED_TOKENS = 48


def children(step: Step, node: int) -> list[int]:
    """The children of `node` (-1: the root) in the tree a step verified, in the order they were tried."""
    return [i for i, parent in enumerate(step.info["tree"]["parents"]) if parent == node]


def took_a_second_choice(step: Step) -> bool:
    """Whether the step's accepted path goes through a node that is not its parent's first child."""
    path = step.info["path"]
    return any(children(step, parent)[0] != node for parent, node in zip([-1, *path], path, strict=False))


@pytest.fixture(scope="module")
def shipped_cases(shipped, questions) -> list[tuple[torch.Tensor, list[int]]]:
    """Six prompts of the shipped tiny set, one per stretch of the question file, and the target's greedy replies."""
    prompts = [encode_chat(shipped.tokenizer, q["turns"][0]) for q in questions[:: len(questions) // 6][:6]]
    return [(ids, autoregressive(shipped.target, ids, SHIPPED_TOKENS).tokens) for ids in prompts]


# ---------------------------------------------------------------- greedy: token-identical to the target


@pytest.mark.parametrize("cost_curve", [None, DEAR, PADDED])
@pytest.mark.parametrize("copy_drafts", [True, False])
@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_output_is_token_identical_to_autoregressive_with_an_untrained_adapter(family, copy_drafts, cost_curve):
    target, adapter = tiny_target(family), tiny_adapter(family, 2)
    for prompt in random_prompts(4, seed=5):
        expected = autoregressive(target, prompt, 24).tokens
        for threshold in (0.0, 0.3):
            result = kangaroo(target, adapter, prompt, 24, tree=True, threshold=threshold, copy_drafts=copy_drafts,
                              cost_curve=cost_curve)
            assert result.tokens == expected, (family, threshold, prompt.tolist())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prompt_length=st.integers(1, 10),
    depth=st.integers(1, 7),
    top_k=st.integers(1, 4),
    max_nodes=st.integers(1, 16),
    max_new_tokens=st.integers(1, 20),
    threshold=st.sampled_from([0.0, 0.2, 0.6, 1.0]),
    exit_layer=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_greedy_identity_holds_for_any_tree_shape_and_budget(prompt_length, depth, top_k, max_nodes, max_new_tokens,
                                                             threshold, exit_layer, seed):
    target, adapter = tiny_target("qwen2"), tiny_adapter("qwen2", exit_layer)
    prompt = torch.randint(0, 64, (prompt_length,), generator=torch.Generator().manual_seed(seed))
    result = kangaroo(target, adapter, prompt, max_new_tokens, tree=True, max_draft_tokens=depth, top_k=top_k,
                      max_nodes=max_nodes, threshold=threshold, copy_drafts=seed % 2 == 0)
    assert result.tokens == autoregressive(target, prompt, max_new_tokens).tokens
    for step in result.steps:
        assert step.info["tree_nodes"] <= max_nodes
        assert step.emitted[: step.accepted] == step.drafted[: step.accepted]
        assert len(step.drafted) - step.accepted <= 1  # the path, then the first child below its end


@pytest.mark.parametrize("cost_curve", [None, DEAR])
@pytest.mark.parametrize("copy_drafts", [True, False])
def test_greedy_output_is_token_identical_on_the_shipped_tiny_set(shipped, shipped_cases, copy_drafts, cost_curve):
    for ids, expected in shipped_cases:
        result = kangaroo(shipped.target, shipped.adapter, ids, SHIPPED_TOKENS, tree=True, copy_drafts=copy_drafts,
                          cost_curve=cost_curve, tokenizer=shipped.tokenizer)
        assert result.tokens == expected
        assert result.text == shipped.tokenizer.decode(expected, skip_special_tokens=True)


def test_greedy_identity_holds_with_eager_attention():
    target = copy.deepcopy(tiny_target("qwen2"))
    target.set_attn_implementation("eager")
    adapter = KangarooAdapter.from_target(target, 2)
    for prompt in random_prompts(3, seed=8):
        assert kangaroo(target, adapter, prompt, 20, tree=True, threshold=0.0).tokens == autoregressive(
            target, prompt, 20).tokens


def test_greedy_output_stops_at_the_same_eos_as_autoregressive():
    target = copy.deepcopy(tiny_target("llama"))
    prompt = torch.tensor([5, 9, 2])
    free = autoregressive(target, prompt, 30).tokens
    target.generation_config.eos_token_id = next(t for i, t in enumerate(free) if i >= 4 and t not in free[:i])
    expected = autoregressive(target, prompt, 30)
    result = kangaroo(target, tiny_adapter("llama", 2), prompt, 30, tree=True, threshold=0.0)
    assert result.tokens == expected.tokens and result.stop_reason == "eos"


# ---------------------------------------------------------------- trees branch, and pay off


def test_trees_branch_and_some_accepted_path_goes_through_a_second_choice(shipped, shipped_cases):
    steps = [step for ids, _ in shipped_cases
             for step in kangaroo(shipped.target, shipped.adapter, ids, SHIPPED_TOKENS, tree=True).steps]
    assert any(len(children(step, node)) >= 2 for step in steps for node in range(-1, step.info["tree_nodes"]))
    assert any(took_a_second_choice(step) for step in steps)


def test_tree_mode_accepts_at_least_as_many_tokens_per_pass_as_the_chain_with_the_same_adapter(shipped, shipped_cases):
    def mean_accepted(**options) -> float:
        results = [kangaroo(shipped.target, shipped.adapter, ids, SHIPPED_TOKENS, **options)
                   for ids, _ in shipped_cases]
        return sum(len(r.tokens) for r in results) / sum(r.target_forwards for r in results)

    chain, tree = mean_accepted(), mean_accepted(tree=True)
    assert tree >= chain > 1.0, (tree, chain)


def test_where_verification_is_dear_the_cost_curve_keeps_trees_small():
    target, adapter, prompt = tiny_target("llama"), tiny_adapter("llama", 2), [4, 8, 15, 16]
    free = kangaroo(target, adapter, prompt, 30, tree=True, threshold=0.0, copy_drafts=False)
    dear = kangaroo(target, adapter, prompt, 30, tree=True, threshold=0.0, copy_drafts=False, cost_curve=DEAR)
    assert free.steps[0].info["tree_nodes"] == 12  # max_nodes
    assert max(step.info["tree_nodes"] for step in dear.steps) < 12 and "calibration" in dear.steps[0].info
    assert "cost" in {step.info["draft_stop"] for step in dear.steps}  # deeper nodes could not have been verified


def test_each_step_records_its_tree_and_path():
    result = kangaroo(tiny_target(), tiny_adapter(), [3, 1, 4, 1, 5], 30, tree=True, threshold=0.1, top_k=2,
                      max_draft_tokens=4, copy_drafts=False)
    assert result.method == "kangaroo_tree" and result.target_forwards == len(result.steps)
    for step in result.steps:
        tree, path = step.info["tree"], step.info["path"]
        assert step.info["exit_layer"] == 2 and step.info["copied"] == 0
        assert len(tree["tokens"]) == len(tree["parents"]) == step.info["tree_nodes"] <= 12
        assert 0 < step.info["tree_depth"] <= 4 or step.info["tree_nodes"] == 0
        assert all(len(children(step, node)) <= 2 for node in range(-1, len(tree["tokens"])))
        assert step.accepted == len(path) and step.emitted[:-1] == [tree["tokens"][node] for node in path]
        assert step.info["draft_stop"] in ("threshold", "cost", "eos", "max_draft_tokens", "budget")
        assert len(step.draft_probs) == len(step.target_probs) == len(step.drafted)


def test_accepted_copies_lead_the_path_and_are_counted():
    prompt = [7, 3, 9, 5, 2, 7, 3, 9, 5, 2, 7, 3]  # a context that repeats: copies on offer
    result = kangaroo(tiny_target(), tiny_adapter(), prompt, 30, tree=True, threshold=0.3)
    assert result.tokens == autoregressive(tiny_target(), prompt, 30).tokens
    assert sum(step.info["copied"] for step in result.steps) > 0
    assert all(step.info["copied"] <= step.accepted for step in result.steps)


# ---------------------------------------------------------------- KV caches hold exactly the accepted context


@pytest.mark.parametrize(("temperature", "cost_curve"), [(0.0, None), (1.0, None), (0.0, PADDED)])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_cache_holds_exactly_the_accepted_context_after_every_round(family, temperature, cost_curve):
    target, adapter = tiny_target(family), tiny_adapter(family, 2)
    errors: list[float] = []
    with torch.inference_mode():
        result = kangaroo(target, adapter, [4, 8, 15, 16, 4, 8], 40, tree=True, threshold=0.1,
                          temperature=temperature, seed=0, cost_curve=cost_curve,
                          on_round=functools.partial(_check_caches, target, 2, errors))
    assert {"accepted", "correction"} <= set(result.fates())  # paths accepted, and the target's corrections
    assert len(errors) >= 2 * target.config.num_hidden_layers * len(result.steps)  # checked every round
    assert max(errors) < 1e-4


# ---------------------------------------------------------------- sampling keeps the target's distribution


@pytest.mark.parametrize(("temperature", "top_p", "prompt", "cost_curve"),
                         [(1.0, 1.0, (1, 2, 3), None), (0.7, 0.9, (1, 2, 3), None),
                          (1.0, 1.0, (1, 2, 3, 1, 2), PADDED)])
def test_sampling_keeps_the_target_distribution(temperature, top_p, prompt, cost_curve):
    """Chi-square test of the first two generated tokens against the target's exact joint (seeds fixed).

    The last case repeats its context, so that a copy is one more branch, and its passes are padded.
    """
    vocab, runs = 8, 1500
    target = tiny_target("llama", layers=2, vocab=vocab, sharpness=20.0)
    adapter = tiny_adapter("llama", 1, "random", layers=2, vocab=vocab, sharpness=20.0)
    samples, second_choices, copies = [], 0, 0
    for seed in range(runs):
        result = kangaroo(target, adapter, list(prompt), 3, tree=True, threshold=0.0, top_k=2, temperature=temperature,
                          top_p=top_p, seed=seed, cost_curve=cost_curve)
        samples.append(tuple(result.tokens[:2]))
        first = result.steps[0]
        second_choices += took_a_second_choice(first)
        copies += first.info["copied"] > 0
    assert second_choices > 0.05 * runs  # a rejected first child, then a sibling accepted from the residual
    assert (copies > 0.05 * runs) == (prompt[-2:] == prompt[:2])
    exact = exact_two_token_distribution(target, list(prompt), temperature, top_p)
    assert chi_square_pvalue(samples, exact) > FALSE_ALARM


def test_seeded_sampling_is_reproducible():
    run = functools.partial(kangaroo, tiny_target(), tiny_adapter(), [1, 2, 3], 25, temperature=0.8, top_p=0.95,
                            tree=True)
    assert run(seed=7).tokens == run(seed=7).tokens
    assert run(seed=7).tokens != run(seed=8).tokens


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ["top_k", "max_nodes"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_top_k_and_max_nodes_below_one_are_rejected(name, value):
    with pytest.raises(ValueError, match=name):
        kangaroo(tiny_target(), tiny_adapter(), [1, 2], 5, tree=True, **{name: value})


def test_a_batch_in_tree_mode_is_rejected():
    with pytest.raises(ValueError, match="tree mode decodes one prompt at a time"):
        kangaroo(tiny_target(), tiny_adapter(), [[1, 2], [3, 4, 5]], 5, tree=True)


def test_attention_without_custom_masks_is_rejected():
    target = copy.deepcopy(tiny_target())
    target.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="4D attention mask"):
        kangaroo(target, tiny_adapter(), [1, 2], 5, tree=True)


def test_a_tree_that_could_outgrow_a_sliding_window_is_rejected():
    config = MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=16, eos_token_id=None)
    target = MistralForCausalLM(config).eval()
    adapter = KangarooAdapter.from_target(target, 1)
    # prompt + new tokens + the drafting scratch (top_k per level) or the verified tree: 3 + 5 + 6 fit in 16
    assert len(kangaroo(target, adapter, [1, 2, 3], 5, tree=True, top_k=2, max_draft_tokens=3, max_nodes=6).tokens) == 5
    with pytest.raises(ValueError, match="sliding attention window"):
        kangaroo(target, adapter, [1, 2, 3], 5, tree=True)  # 3 + 5 + 3 * 6
