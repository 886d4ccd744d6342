"""Kangaroo decoding: lossless (greedy identity, sampled distribution), exact KV rollback, clear errors."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from helpers import tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare
from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel, MistralConfig, MistralForCausalLM

from kangaroo_lite.adapter.model import KangarooAdapter
from kangaroo_lite.core.sampling import warp
from kangaroo_lite.decoding.autoregressive import autoregressive
from kangaroo_lite.decoding.kangaroo import SelfDraft, kangaroo

torch.set_num_threads(1)

FAMILIES = ("llama", "qwen2", "mistral")  # qwen2: q/k/v projections with bias; mistral: sliding-window layers


@functools.cache
def tiny_target(
    family: str = "llama", layers: int = 4, vocab: int = 64, seed: int = 0, sharpness: float = 30.0
) -> torch.nn.Module:
    """A random tiny target with GQA (4 query heads, 2 KV heads) and no EOS.

    Its LM head is scaled up so that next-token distributions are peaked, as in a trained model,
    rather than nearly uniform.
    """
    return tiny_model(family, layers, vocab=vocab, seed=seed, sharpness=sharpness, eos=None)


@functools.cache
def tiny_adapter(family: str = "llama", exit_layer: int = 2, init: str = "copy", **target) -> KangarooAdapter:
    """An untrained adapter for `tiny_target(family, **target)`."""
    torch.manual_seed(1)
    return KangarooAdapter.from_target(tiny_target(family, **target), exit_layer, init=init).eval()


def random_prompts(count: int, vocab: int = 64, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 13, (count,), generator=generator)
    return [torch.randint(0, vocab, (int(n),), generator=generator) for n in lengths]


# ---------------------------------------------------------------- greedy: token-identical to the target


@pytest.mark.parametrize("init", ["copy", "random"])
@pytest.mark.parametrize("exit_layer", [1, 2, 3])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_greedy_output_is_token_identical_to_autoregressive_with_an_untrained_adapter(family, exit_layer, init):
    target, adapter = tiny_target(family), tiny_adapter(family, exit_layer, init)
    for prompt in random_prompts(5, seed=exit_layer):
        expected = autoregressive(target, prompt, 20).tokens
        for threshold in (0.0, 0.6, 1.0):
            result = kangaroo(target, adapter, prompt, 20, max_draft_tokens=4, threshold=threshold)
            assert result.tokens == expected, (family, exit_layer, init, threshold, prompt.tolist())


def test_greedy_output_stops_at_the_same_eos_as_autoregressive():
    target = copy.deepcopy(tiny_target("llama"))
    prompt = torch.tensor([5, 9, 2])
    free = autoregressive(target, prompt, 30).tokens
    # An EOS that first appears mid-generation, so the stop happens inside a round of drafts.
    eos = next(t for i, t in enumerate(free) if i >= 4 and t not in free[:i])
    target.generation_config.eos_token_id = eos
    adapter = tiny_adapter("llama", 2)
    expected = autoregressive(target, prompt, 30)
    assert expected.stop_reason == "eos" and 4 < len(expected.tokens) < 30
    for threshold in (0.0, 0.6):
        result = kangaroo(target, adapter, prompt, 30, threshold=threshold)
        assert result.tokens == expected.tokens
        assert result.stop_reason == "eos"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prompt_length=st.integers(1, 10),
    max_draft_tokens=st.integers(1, 8),
    max_new_tokens=st.integers(1, 24),
    threshold=st.sampled_from([0.0, 0.3, 0.6, 0.9, 1.0]),
    exit_layer=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_greedy_identity_holds_for_any_prompt_length_draft_length_and_budget(
    prompt_length, max_draft_tokens, max_new_tokens, threshold, exit_layer, seed
):
    target, adapter = tiny_target("qwen2"), tiny_adapter("qwen2", exit_layer)
    prompt = torch.randint(0, 64, (prompt_length,), generator=torch.Generator().manual_seed(seed))
    result = kangaroo(target, adapter, prompt, max_new_tokens, max_draft_tokens=max_draft_tokens, threshold=threshold)
    assert result.tokens == autoregressive(target, prompt, max_new_tokens).tokens
    assert len(result.tokens) == max_new_tokens
    # the adapter drafts at most max_draft_tokens, after at most max_copy_tokens (8) copied ones
    assert all(len(step.drafted) - step.info["copied"] <= max_draft_tokens for step in result.steps)
    assert all(step.info["copied"] <= 8 for step in result.steps)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_greedy_identity_holds_when_the_draft_vocabulary_lacks_tokens_the_target_says(family):
    target = tiny_target(family)
    adapter = copy.deepcopy(tiny_adapter(family, 2))
    prompts = random_prompts(5, seed=11)
    expected = [autoregressive(target, prompt, 20).tokens for prompt in prompts]
    said = sorted({token for tokens in expected for token in tokens})
    vocab = said[::2]  # the other half can only come from the target itself
    adapter.set_draft_vocab(vocab)
    fates = set()
    for prompt, tokens in zip(prompts, expected, strict=True):
        result = kangaroo(target, adapter, prompt, 20, max_draft_tokens=4, threshold=0.0)
        assert result.tokens == tokens
        # the adapter drafts from its vocabulary alone; a copy may hold any token of the context
        assert all(token in vocab for step in result.steps for token in step.drafted[step.info["copied"]:])
        fates |= set(result.fates())
    assert {"accepted", "correction"} <= fates


# ---------------------------------------------------------------- the draft-step early exit


def test_threshold_zero_always_drafts_max_draft_tokens():
    result = kangaroo(tiny_target(), tiny_adapter(), [1, 2, 3], 40, max_draft_tokens=5, threshold=0.0,
                      copy_drafts=False)
    full = [step for step in result.steps[1:] if step.info["draft_stop"] != "budget"]
    assert full and all(len(step.drafted) == 5 for step in full)
    assert all(step.info["draft_stop"] == "max_draft_tokens" for step in full)


def test_threshold_one_drafts_a_single_token_per_round():
    result = kangaroo(tiny_target(), tiny_adapter(), [1, 2, 3], 30, max_draft_tokens=5, threshold=1.0,
                      copy_drafts=False)
    rounds = [step for step in result.steps[1:] if step.info["draft_stop"] != "budget"]
    assert len(rounds) >= 10
    assert all(len(step.drafted) == 1 and step.info["draft_stop"] == "threshold" for step in rounds)


def test_drafting_stops_right_after_the_first_token_below_the_threshold_and_keeps_it():
    threshold = 0.4
    result = kangaroo(tiny_target(), tiny_adapter(), [7, 3, 1, 4], 60, max_draft_tokens=3, threshold=threshold,
                      copy_drafts=False)
    assert {step.info["draft_stop"] for step in result.steps[1:]} >= {"threshold", "max_draft_tokens"}
    for step in result.steps[1:]:
        confidences = step.info["confidences"]
        assert len(confidences) == len(step.drafted) == len(step.draft_probs) == len(step.target_probs)
        assert all(c >= threshold for c in confidences[:-1])  # the loop only continues past confident tokens
        if step.info["draft_stop"] == "threshold":
            assert confidences[-1] < threshold  # the unconfident token is still a draft
        # Greedy: the draft's probability of its token is its top-1 probability.
        assert step.draft_probs == pytest.approx(confidences)


def test_never_drafts_past_the_token_budget():
    for max_new_tokens in range(1, 9):
        result = kangaroo(tiny_target(), tiny_adapter(), [2, 4], max_new_tokens, max_draft_tokens=6, threshold=0.0)
        assert len(result.tokens) == max_new_tokens
        emitted = 0
        for step in result.steps:
            assert emitted + len(step.drafted) + 1 <= max_new_tokens
            emitted += len(step.emitted)
        if max_new_tokens > 1:
            assert result.steps[0].drafted  # no separate prefill: the first round drafts too
            assert result.steps[-1].info["draft_stop"] in ("budget", "max_draft_tokens")


def test_the_result_records_each_step_and_counts_target_passes():
    result = kangaroo(tiny_target(), tiny_adapter(), [3, 1, 4, 1, 5], 30, threshold=0.3)
    assert result.method == "kangaroo"
    assert result.target_forwards == len(result.steps)
    assert sum(len(step.emitted) for step in result.steps) == len(result.tokens) == 30
    assert result.mean_accepted > 1.0
    for step in result.steps[1:]:
        assert step.info["exit_layer"] == 2
        assert step.emitted[: step.accepted] == step.drafted[: step.accepted]


# ---------------------------------------------------------------- KV caches hold exactly the accepted context


def _check_caches(
    target: torch.nn.Module, exit_layer: int, errors: list[float], state: SelfDraft, sequence: torch.Tensor
) -> None:
    """Compare every cache with a fresh forward pass over the accepted context (all but the last token)."""
    context = sequence[:, :-1]
    n = context.shape[1]
    assert [layer.get_seq_length() for layer in state.cache.layers] == [n] * target.config.num_hidden_layers
    assert state.adapter_length() == n
    fresh = DynamicCache(config=target.config)
    out = target(context, cache=fresh, use_cache=True, output_hidden_states=True)
    for ours, theirs in zip(state.cache.layers, fresh.layers, strict=True):
        errors += [(ours.keys - theirs.keys).abs().max().item(), (ours.values - theirs.values).abs().max().item()]
    # The adapter's cache and its pending states: as if it had read the exited states of the whole context.
    exited = out.hidden_states[exit_layer]
    positions = torch.arange(n).unsqueeze(0)
    adapter_cache = DynamicCache()
    rope = target.model.rotary_emb(exited, positions)
    state.adapter(exited, rope, state.adapter.causal_mask(exited, positions, adapter_cache), adapter_cache)
    read = state.adapter_cache.get_seq_length()
    if read:
        errors.append(
            (state.adapter_cache.layers[0].keys - adapter_cache.layers[0].keys[:, :, :read]).abs().max().item()
        )
        errors.append(
            (state.adapter_cache.layers[0].values - adapter_cache.layers[0].values[:, :, :read]).abs().max().item()
        )
    if state.pending is not None:
        errors.append((state.pending - exited[:, read:]).abs().max().item())


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("threshold", [0.0, 0.6])
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_every_cache_holds_exactly_the_accepted_context_after_every_round(family, threshold, temperature):
    target, adapter = tiny_target(family), tiny_adapter(family, 2)
    errors: list[float] = []
    with torch.inference_mode():
        result = kangaroo(
            target,
            adapter,
            [4, 8, 15, 16],
            40,
            threshold=threshold,
            temperature=temperature,
            seed=0,
            on_round=functools.partial(_check_caches, target, 2, errors),
        )
    fates = result.fates()
    assert "accepted" in fates and ("correction" in fates or "bonus" in fates)
    assert len(errors) >= 2 * target.config.num_hidden_layers * len(result.steps)  # checked every round
    assert max(errors) < 1e-4


def test_after_a_fully_accepted_round_the_adapter_reads_two_positions_next():
    target, adapter = tiny_target(), tiny_adapter()
    seen = []

    def record(state: SelfDraft, sequence: torch.Tensor) -> None:
        seen.append((0 if state.pending is None else state.pending.shape[1], state.adapter_cache.get_seq_length()))

    result = kangaroo(target, adapter, [4, 8, 15, 16], 40, threshold=0.0, max_draft_tokens=2, on_round=record)
    full = [i for i, step in enumerate(result.steps) if step.drafted and step.accepted == len(step.drafted)]
    assert full, "no fully accepted round: the test needs one"
    assert all(seen[i][0] == 1 for i in full)  # the last accepted draft is still pending


# ---------------------------------------------------------------- sampling keeps the target's distribution


def _exact_joint(target: torch.nn.Module, prompt: list[int], temperature: float, top_p: float) -> torch.Tensor:
    """p(x2, x3 | prompt) = Σ_x1 p(x1) p(x2 | x1) p(x3 | x1, x2), by enumerating the vocabulary."""
    vocab, n = target.config.vocab_size, len(prompt)
    pairs = torch.cartesian_prod(torch.arange(vocab), torch.arange(vocab))  # (x1, x2)
    sequences = torch.cat([torch.tensor(prompt).expand(len(pairs), n), pairs], dim=1)
    with torch.no_grad():
        probs = warp(target(sequences).logits[:, n - 1 :], temperature, top_p)
    p1 = probs[0, 0]  # p(x1): the same for every pair
    p2 = probs[::vocab, 1]  # [x1, x2]: rows with x2 = 0, one per x1
    p3 = probs[:, 2].view(vocab, vocab, vocab)  # [x1, x2, x3]
    return (p1[:, None, None] * p2[:, :, None] * p3).sum(0)


COSTLY = {1: 1.0, 2: 1.3, 3: 1.9}  # a cost curve under which unconfident drafts are not verified
PADDED = {1: 1.0, 2: 1.6, 3: 2.0, 4: 1.4}  # verification passes over 2-3 tokens padded to 4


@pytest.mark.parametrize(("temperature", "top_p", "draft_vocab", "cost_curve"),
                         [(1.0, 1.0, None, None), (0.7, 0.9, None, None), (1.0, 1.0, (0, 2, 3, 5, 6), None),
                          (0.7, 0.9, (0, 2, 3, 5, 6), None), (1.0, 1.0, None, COSTLY), (1.0, 1.0, None, PADDED)])
def test_sampling_keeps_the_target_distribution(temperature, top_p, draft_vocab, cost_curve):
    """Chi-square test of the joint of two drafted tokens; false alarm rate 1e-3 (seeds fixed).

    With a draft vocabulary, the tokens outside it can only come from the residual distribution.
    With a cost curve, a round verifies 0, 1 or 2 of its drafts.
    """
    vocab, runs, prompt = 8, 2000, [1, 2, 3]
    target = tiny_target("llama", layers=2, vocab=vocab, sharpness=60.0)
    adapter = copy.deepcopy(tiny_adapter("llama", 1, "random", layers=2, vocab=vocab, sharpness=60.0))
    adapter.set_draft_vocab(draft_vocab)
    counts = torch.zeros(vocab, vocab)
    drafted = accepted = 0
    for seed in range(runs):
        # 4 tokens: the prefill's, then one round of 2 drafts (x2, x3) and the target's own.
        result = kangaroo(
            target,
            adapter,
            prompt,
            4,
            max_draft_tokens=2,
            threshold=0.0,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            cost_curve=cost_curve,
        )
        x2, x3 = result.tokens[1:3]
        counts[x2, x3] += 1
        drafted += len(result.steps[1].drafted)
        accepted += result.steps[1].accepted
    assert 0.1 < accepted / drafted < 0.95, "both the accept and the reject path must be exercised"
    expected = _exact_joint(target, prompt, temperature, top_p).flatten() * runs
    observed = counts.flatten()
    assert observed[expected == 0].sum() == 0  # nothing outside the nucleus
    # Pool cells expected fewer than 5 times, as the chi-square approximation needs.
    small = expected < 5
    observed = torch.cat([observed[~small], observed[small].sum().view(1)])
    expected = torch.cat([expected[~small], expected[small].sum().view(1)])
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    assert chisquare(observed.numpy(), expected.numpy() * observed.sum().item() / expected.sum().item()).pvalue > 1e-3


def test_padded_verification_passes_leave_every_cache_holding_exactly_the_accepted_context():
    target, adapter = tiny_target("llama"), tiny_adapter("llama", 2)
    errors: list[float] = []
    with torch.inference_mode():
        result = kangaroo(target, adapter, [4, 8, 15, 16, 4, 8], 40, threshold=0.3, cost_curve=PADDED,
                          on_round=functools.partial(_check_caches, target, 2, errors))
    assert result.tokens == autoregressive(target, [4, 8, 15, 16, 4, 8], 40).tokens
    assert any(0 < len(step.drafted) < 3 for step in result.steps)  # some passes were padded to 4 tokens
    assert max(errors) < 1e-4


def test_seeded_sampling_is_reproducible():
    run = functools.partial(kangaroo, tiny_target(), tiny_adapter(), [1, 2, 3], 25, temperature=0.8, top_p=0.95)
    assert run(seed=7).tokens == run(seed=7).tokens
    assert run(seed=7).tokens != run(seed=8).tokens


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("threshold", [-0.1, 1.01, float("nan"), "0.5", None, True])
def test_a_threshold_outside_zero_one_is_rejected(threshold):
    with pytest.raises(ValueError, match="threshold"):
        kangaroo(tiny_target(), tiny_adapter(), [1, 2], 5, threshold=threshold)


@pytest.mark.parametrize("max_draft_tokens", [0, -1, 1.5, True])
def test_max_draft_tokens_below_one_is_rejected(max_draft_tokens):
    with pytest.raises(ValueError, match="max_draft_tokens"):
        kangaroo(tiny_target(), tiny_adapter(), [1, 2], 5, max_draft_tokens=max_draft_tokens)


@pytest.mark.parametrize("exit_layer", [0, 4, -1, 2.0, True])
def test_an_exit_layer_outside_one_to_num_layers_minus_one_is_rejected(exit_layer):
    with pytest.raises(ValueError, match=r"exit_layer must be an integer in \[1, 3\]"):
        KangarooAdapter.from_target(tiny_target(), exit_layer)


@pytest.mark.parametrize("other", [dict(layers=3), dict(vocab=80)])
def test_an_adapter_built_for_another_target_is_rejected(other):
    adapter = tiny_adapter("llama", 2, **other)
    with pytest.raises(ValueError, match="another target"):
        kangaroo(tiny_target(), adapter, [1, 2], 5)


def test_an_adapter_for_another_family_is_rejected():
    with pytest.raises(ValueError, match="another target"):
        kangaroo(tiny_target("qwen2"), tiny_adapter("llama"), [1, 2], 5)


def test_an_unsupported_architecture_is_rejected():
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2)).eval()
    with pytest.raises(ValueError, match="Kangaroo supports"):
        KangarooAdapter.from_target(gpt2, 1)
    with pytest.raises(ValueError, match="Kangaroo supports"):
        kangaroo(gpt2, tiny_adapter(), [1, 2], 5)


def test_something_else_than_an_adapter_is_rejected():
    with pytest.raises(TypeError, match="KangarooAdapter"):
        kangaroo(tiny_target(), tiny_target(), [1, 2], 5)


def test_prompt_and_sampling_arguments_are_validated_like_every_method():
    target, adapter = tiny_target(), tiny_adapter()
    with pytest.raises(ValueError, match="empty"):
        kangaroo(target, adapter, torch.tensor([], dtype=torch.long), 5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        kangaroo(target, adapter, [1], 0)
    with pytest.raises(ValueError, match="vocabulary"):
        kangaroo(target, adapter, [64], 5)
    with pytest.raises(ValueError, match="temperature"):
        kangaroo(target, adapter, [1], 5, temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        kangaroo(target, adapter, [1], 5, top_p=0.0)


def test_a_sequence_beyond_a_sliding_window_is_rejected():
    config = MistralConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=8,
        eos_token_id=None,
    )
    target = MistralForCausalLM(config).eval()
    adapter = KangarooAdapter.from_target(target, 1)
    assert len(kangaroo(target, adapter, [1, 2, 3], 5).tokens) == 5
    with pytest.raises(ValueError, match="sliding attention window"):
        kangaroo(target, adapter, [1, 2, 3], 6)
