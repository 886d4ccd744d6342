"""Copy drafts: the context index, the copy source's value, copy-only decoding and Kangaroo with copies —
lossless greedy and sampled (a copied token is a point-mass draft)."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from kangaroo_lite.adapter.model import KangarooAdapter
from kangaroo_lite.core.context_index import ContextIndex
from kangaroo_lite.core.draft_length import AcceptanceRate, tokens_per_cost
from kangaroo_lite.core.sampling import accept_drafts, warp
from kangaroo_lite.decoding.autoregressive import autoregressive
from kangaroo_lite.decoding.copy_drafts import ACCEPTANCE_PRIORS, MATCH_BUCKETS, CopyDrafts, match_bucket, point_mass
from kangaroo_lite.decoding.kangaroo import kangaroo
from kangaroo_lite.decoding.lookup import lookup

torch.set_num_threads(1)

COSTLY = {1: 1.0, 2: 1.05, 3: 1.1, 4: 1.6}
PADDED = {1: 1.0, 2: 1.62, 3: 2.03, 4: 1.42, 5: 1.56, 8: 1.69}  # passes over 2-3 tokens padded to 4


def _target(family: str = "llama", vocab: int = 64, sharpness: float = 30.0, layers: int = 4) -> torch.nn.Module:
    return tiny_model(family, layers, vocab=vocab, seed=0, sharpness=sharpness, eos=None)


def _adapter(target: torch.nn.Module, exit_layer: int = 2, init: str = "copy") -> KangarooAdapter:
    torch.manual_seed(1)
    return KangarooAdapter.from_target(target, exit_layer, init=init).eval()


def _repetitive(count: int, vocab: int = 64, seed: int = 0) -> list[list[int]]:
    """Prompts that repeat themselves, so that copies are proposed."""
    generator = torch.Generator().manual_seed(seed)
    prompts = []
    for _ in range(count):
        phrase = torch.randint(0, vocab, (int(torch.randint(3, 7, (1,), generator=generator)),),
                               generator=generator).tolist()
        prompts.append(phrase * 3 + phrase[:2])
    return prompts


# ---------------------------------------------------------------- the index


def _longest_suffix_continuation(tokens: list[int], min_match: int, max_match: int, count: int) -> list[int]:
    """The index's answer by brute force: rescan the whole sequence."""
    for n in range(min(max_match, len(tokens) - 1), min_match - 1, -1):
        suffix = tokens[-n:]
        starts = [i for i in range(len(tokens) - n) if tokens[i: i + n] == suffix]
        if starts:
            return tokens[starts[-1] + n: starts[-1] + n + count]
    return []


@settings(max_examples=200, deadline=None)
@given(tokens=st.lists(st.integers(0, 5), min_size=0, max_size=40), min_match=st.integers(1, 3),
       extra=st.integers(0, 3), count=st.integers(1, 8), split=st.integers(0, 40))
def test_the_index_proposes_what_followed_the_latest_longest_suffix_match(tokens, min_match, extra, count, split):
    index = ContextIndex(tokens[:split], min_match, min_match + extra)
    index.extend(tokens[split:])  # built incrementally or at once: the same index
    assert index.propose(count) == _longest_suffix_continuation(tokens, min_match, min_match + extra, count)


def test_the_index_copies_a_repeated_phrase_and_nothing_from_fresh_text():
    index = ContextIndex([7, 1, 2, 3, 4, 9, 1, 2], min_match=2)
    assert index.propose(3) == [3, 4, 9]
    assert index.match() == (2, 3)
    assert ContextIndex([1, 2, 3, 4]).propose(4) == []
    assert index.propose(0) == []


def test_the_index_rejects_bad_match_lengths():
    with pytest.raises(ValueError, match="min_match"):
        ContextIndex([], min_match=0)
    with pytest.raises(ValueError, match="max_match"):
        ContextIndex([], min_match=3, max_match=2)


def test_extending_the_index_costs_the_same_after_a_long_context():
    index = ContextIndex(range(10_000), 2, 4)
    before = len(index.continuation)
    index.extend([5, 6])
    assert len(index.continuation) - before <= 2 * 3  # a constant number of n-grams per token, not a rescan


# ---------------------------------------------------------------- the copy source's value


def test_a_copy_source_learns_its_acceptance_and_is_valued_by_it():
    rate = AcceptanceRate(prior_rate=0.5, prior=2.0)
    assert rate.rate == 0.5
    rate.update(verified=4, accepted=4)  # 4 reached, 4 accepted
    assert rate.rate == pytest.approx(5 / 6)
    rate.update(verified=4, accepted=0)  # only the first was reached
    assert rate.rate == pytest.approx(5 / 7)
    assert tokens_per_cost([0.5, 0.5], None) == pytest.approx(1.75)
    assert tokens_per_cost([0.0] * 4, COSTLY) == pytest.approx(1.0)  # worthless drafts are not verified
    assert tokens_per_cost([0.9] * 4, COSTLY) > tokens_per_cost([0.5] * 4, COSTLY)


def test_copies_are_proposed_only_when_they_are_worth_more_than_the_rival():
    copies = CopyDrafts([1, 2, 3, 4, 5, 1, 2], max_copy_tokens=4, min_match=2)
    assert copies.propose(10, None, rival=1.0) == [3, 4, 5, 1]
    assert copies.kind == (2, None) and copies.confidences(4) == pytest.approx([0.5, 0.8, 0.8, 0.8])
    assert copies.propose(2, None, rival=1.0) == [3, 4]  # never past the budget
    assert copies.propose(10, None, rival=10.0) == []  # a rival worth more wins
    for _ in range(20):  # copies after 2-token matches that are always rejected lose their value
        copies.propose(10, None, rival=1.0)
        copies.record(4, 0, [])
    assert copies.propose(10, COSTLY, rival=1.0) == []


def test_longer_matches_are_trusted_more_and_each_match_length_learns_on_its_own():
    copies = CopyDrafts([1, 2, 3, 4, 9, 8, 1, 2, 3, 4])  # the suffix [1, 2, 3, 4] matched in full
    assert copies.propose(8, None, rival=1.0) == [9, 8, 1, 2, 3, 4]
    assert copies.kind == (4, None) and copies.confidences(2) == pytest.approx([0.85, 0.9])
    copies.record(6, 6, [9, 8, 1, 2, 3, 4, 7])  # all six accepted, then the target's own 7
    first, later = copies.rates[4, None]
    assert first.rate > 0.85 and later.rate > 0.9 and list(copies.rates) == [(4, None)]
    long = CopyDrafts(list(range(10)) + [50] + list(range(10)), max_copy_tokens=4)  # a 10-token suffix matched
    assert long.propose(8, None, rival=1.0) == [50, 0, 1, 2]
    assert long.kind == (8, None) and long.confidences(1)[0] == pytest.approx(ACCEPTANCE_PRIORS[8, None][0])


def test_match_lengths_count_in_buckets():
    assert [match_bucket(n) for n in (1, 2, 3, 4, 7, 8, 15, 16, 40)] == [1, 2, 3, 4, 4, 8, 8, 16, 16]
    assert set(ACCEPTANCE_PRIORS) == {(b, agree) for b in MATCH_BUCKETS for agree in (None, True, False)}


def test_a_copy_worth_more_than_the_adapter_at_its_best_is_taken_without_running_the_adapter():
    target = _target()
    adapter = _adapter(target)
    calls, after_round = [], []
    adapter.register_forward_hook(lambda *_: calls.append(1))
    prompt = [3, 9, 4, 7, 1, 8, 2, 6, 5] * 3  # its last 9 tokens were seen before: a long match
    result = kangaroo(target, adapter, prompt, 12, max_draft_tokens=2, cost_curve=COSTLY,
                      on_round=lambda *_: after_round.append(len(calls)))
    assert result.steps[0].info["copied"] > 0 and after_round[0] == 0  # no adapter step in the first round
    assert result.tokens == autoregressive(target, prompt, 12).tokens


def test_a_copy_the_rival_drafter_agrees_with_is_trusted_more():
    copies = CopyDrafts([5, 1, 6, 7, 2, 1], min_match=1)  # only the last token matches: a weak copy
    assert copies.propose(4, None, rival=1.0, rival_choice=6) == [6, 7, 2, 1]
    agreed = copies.confidences(1)[0]
    assert copies.propose(4, None, rival=1.0, rival_choice=3) == [6, 7, 2, 1]
    assert copies.kind == (1, False) and copies.confidences(1)[0] < agreed
    dear = {1: 1.0, 2: 1.2, 3: 1.4, 4: 1.9}
    assert copies.propose(4, dear, rival=1.0, rival_choice=3) == []  # a 1-token match the drafter doubts
    assert copies.propose(4, dear, rival=1.0, rival_choice=6) == [6, 7]  # the same copy, agreed with


def test_a_copied_token_is_accepted_with_its_target_probability_and_otherwise_resampled_without_it():
    """The point-mass rule: accept x with p(x), else sample from p with x removed (exact enumeration)."""
    p = torch.tensor([[0.5, 0.3, 0.2, 0.0]])
    q = point_mass([1], 4)
    generator = torch.Generator().manual_seed(0)
    runs = 20_000
    counts = torch.zeros(4)
    accepted = 0
    for _ in range(runs):
        kept, token = accept_drafts(torch.cat([p, p]), q, [1], generator)
        accepted += kept
        counts[1 if kept else token] += 1
    assert accepted / runs == pytest.approx(0.3, abs=0.015)
    assert chisquare(counts[:3].numpy(), (p[0, :3] * runs).numpy()).pvalue > 1e-3


# ---------------------------------------------------------------- greedy: token-identical to the target


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_lookup_and_kangaroo_with_copies_are_token_identical_to_autoregressive(family):
    target = _target(family)
    adapter = _adapter(target, 2, "random")  # an adapter worse than copying, so both sources are used
    sources = set()
    for prompt in _repetitive(6) + [[5, 9, 2]]:
        expected = autoregressive(target, prompt, 30).tokens
        for cost_curve in (None, COSTLY, PADDED):
            assert lookup(target, prompt, 30, cost_curve=cost_curve).tokens == expected
            result = kangaroo(target, adapter, prompt, 30, threshold=0.3, cost_curve=cost_curve)
            assert result.tokens == expected
            for step in result.steps:
                sources |= {"copy"} if step.info["copied"] else set()
                sources |= {"adapter"} if len(step.drafted) > step.info["copied"] else set()
                assert step.info["copied"] <= 8 and len(step.info["confidences"]) == len(step.drafted)
    assert sources == {"copy", "adapter"}


def test_copies_lift_tokens_per_pass_on_repetitive_text_and_lookup_copies_without_a_draft():
    target = _target()
    adapter = _adapter(target, 2, "random")
    prompt = _repetitive(1, seed=3)[0]
    expected = autoregressive(target, prompt, 40)
    copied = lookup(target, prompt, 40)
    alone = kangaroo(target, adapter, prompt, 40, threshold=0.3, copy_drafts=False)
    both = kangaroo(target, adapter, prompt, 40, threshold=0.3)
    assert copied.tokens == alone.tokens == both.tokens == expected.tokens
    assert both.mean_accepted > alone.mean_accepted
    assert copied.mean_accepted > 1.0
    assert all(step.info["draft_stop"] == "copy" for step in copied.steps)


def test_without_a_match_copies_change_nothing():
    target = _target()
    adapter = _adapter(target)
    prompt = list(range(10))  # no token repeats: nothing to copy (until the reply repeats itself)
    on = kangaroo(target, adapter, prompt, 3, threshold=0.3)
    off = kangaroo(target, adapter, prompt, 3, threshold=0.3, copy_drafts=False)
    assert on.tokens == off.tokens
    assert [step.drafted for step in on.steps] == [step.drafted for step in off.steps]
    assert all(step.info["copied"] == 0 for step in on.steps)


def test_lookup_checks_its_arguments():
    target = _target()
    with pytest.raises(ValueError, match="max_copy_tokens"):
        lookup(target, [1, 2], 4, max_copy_tokens=0)
    with pytest.raises(ValueError, match="one prompt at a time"):
        lookup(target, [[1, 2], [3]], 4)
    with pytest.raises(ValueError, match="temperature"):
        lookup(target, [1, 2], 4, temperature=-1)


# ---------------------------------------------------------------- sampling keeps the target's distribution


def _exact_pair(target: torch.nn.Module, prompt: list[int], temperature: float) -> torch.Tensor:
    """p(x1, x2 | prompt), by enumerating the vocabulary."""
    vocab, n = target.config.vocab_size, len(prompt)
    sequences = torch.cat([torch.tensor(prompt).expand(vocab, n), torch.arange(vocab).view(-1, 1)], 1)
    with torch.no_grad():
        probs = warp(target(sequences).logits[:, n - 1:], temperature, 1.0)
    return probs[0, 0][:, None] * probs[:, 1]


@pytest.mark.parametrize("method", ["lookup", "kangaroo"])
def test_sampling_with_copied_drafts_keeps_the_target_distribution(method):
    """Chi-square test of the joint of the first two tokens, drafted as a copy of the prompt (and, for
    Kangaroo, an adapter draft after a one-token copy); false alarm rate 1e-3 (seeds fixed)."""
    vocab, runs, temperature = 8, 2000, 1.0
    target = _target(vocab=vocab, sharpness=8.0, layers=2)
    adapter = copy.deepcopy(_adapter(target, 1, "random"))
    prompt = [1, 2, 3, 1, 2]  # the suffix [1, 2] was followed by 3
    counts = torch.zeros(vocab, vocab)
    copied = accepted = 0
    for seed in range(runs):
        if method == "lookup":
            result = lookup(target, prompt, 3, max_copy_tokens=2, temperature=temperature, seed=seed)
        else:
            result = kangaroo(target, adapter, prompt, 3, max_draft_tokens=1, threshold=0.0, max_copy_tokens=1,
                              temperature=temperature, seed=seed)
        counts[result.tokens[0], result.tokens[1]] += 1
        copied += result.steps[0].info["copied"]
        accepted += min(result.steps[0].accepted, result.steps[0].info["copied"])
    assert copied == runs * (2 if method == "lookup" else 1), "every first round must copy"
    assert 0.05 < accepted / copied < 0.95, "both the accept and the reject path must be exercised"
    expected = _exact_pair(target, prompt, temperature).flatten() * runs
    observed = counts.flatten()
    small = expected < 5
    observed = torch.cat([observed[~small], observed[small].sum().view(1)])
    expected = torch.cat([expected[~small], expected[small].sum().view(1)])
    assert chisquare(observed.numpy(), expected.numpy() * observed.sum().item() / expected.sum().item()).pvalue > 1e-3
