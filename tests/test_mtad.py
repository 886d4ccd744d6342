"""MTAD: beam-sampled drafts verified on joint likelihoods, and the exact-MTJD reference it approximates."""

import itertools
import math

import pytest
import torch
from helpers import FALSE_ALARM, tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare
from transformers import DynamicCache

from kangaroo_lite.bench.mtjd import (
    beam_search_joint,
    joint_argmax,
    joint_logprobs,
    mtad_gap,
    outcome_distribution,
    sample_joint,
)
from kangaroo_lite.core.result import Recorder
from kangaroo_lite.core.sampling import make_generator, warp
from kangaroo_lite.decoding.beam_tree import (
    _sample_distinct,
    beam_sample,
    select_accepted,
    target_joint_logp,
    tree_attention,
)
from kangaroo_lite.decoding.mtad import MTADDecoder, mtad
from kangaroo_lite.models.loading import encode_chat

PROMPT = torch.tensor([[5, 6, 7]])
PROMPT5 = torch.tensor([[3, 4, 2]])  # for the 5-token vocabularies


pytestmark = pytest.mark.usefixtures("one_thread")


def chi2_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """p-value of observed counts against a probability vector (renormalised, for float rounding)."""
    expected = probs.double() / probs.double().sum() * float(counts.sum())
    return float(chisquare(counts.double().numpy(), expected.numpy()).pvalue)


def pair(vocab: int = 64, arch: str = "llama", eos: int | None = 1):
    """A tiny target (3 layers) and a tinier draft (1 layer) sharing a vocabulary."""
    return (
        tiny_model(arch, layers=3, vocab=vocab, seed=7, sharpness=3.0, eos=eos),
        tiny_model(arch, layers=1, hidden=16, vocab=vocab, seed=8, sharpness=3.0, eos=eos),
    )


def fresh_cache(model, ids: torch.Tensor) -> DynamicCache:
    """The KV cache a plain forward over `ids` produces."""
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=ids, cache=cache, use_cache=True)
    return cache


def assert_same_cache(cache: DynamicCache, reference: DynamicCache) -> None:
    assert cache.get_seq_length() == reference.get_seq_length()
    for layer, expected in zip(cache.layers, reference.layers, strict=True):
        assert layer.keys.shape[0] == 1
        torch.testing.assert_close(layer.keys, expected.keys, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(layer.values, expected.values, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("multi_candidate", [False, True])
def test_same_seed_gives_the_same_tokens_and_trace(multi_candidate):
    target, draft = pair()
    runs = [mtad(target, draft, PROMPT, 30, seed=3, multi_candidate=multi_candidate) for _ in range(2)]
    assert runs[0].tokens == runs[1].tokens
    assert [(s.drafted, s.accepted, s.info) for s in runs[0].steps] == [
        (s.drafted, s.accepted, s.info) for s in runs[1].steps
    ]
    other = mtad(target, draft, PROMPT, 30, seed=4, multi_candidate=multi_candidate)
    assert other.tokens != runs[0].tokens


@settings(max_examples=10, deadline=None)
@given(
    gamma=st.integers(1, 5),
    beams=st.integers(1, 5),
    tau=st.sampled_from([0.05, 0.5, 1.0]),
    multi=st.booleans(),
    new=st.integers(1, 20),
    seed=st.integers(0, 1000),
)
def test_every_step_emits_the_accepted_prefix_of_its_candidate_plus_one_target_token(
    gamma, beams, tau, multi, new, seed
):
    target, draft = pair()
    result = mtad(
        target,
        draft,
        PROMPT,
        new,
        num_draft_tokens=gamma,
        num_beams=beams,
        accept_threshold=tau,
        seed=seed,
        multi_candidate=multi,
    )
    assert 1 <= len(result.tokens) <= new
    assert result.target_forwards == len(result.steps)
    for step in result.steps:
        assert len(step.emitted) >= 1
        assert step.accepted <= len(step.drafted) <= gamma
        assert step.emitted[: step.accepted] == step.drafted[: step.accepted]
    assert sum(len(s.emitted) for s in result.steps) == len(result.tokens)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
@pytest.mark.parametrize("multi_candidate", [False, True])
@pytest.mark.parametrize("confidence_threshold", [0.0, 0.05])
def test_kv_caches_equal_a_fresh_forward_on_the_accepted_sequence_after_every_step(
    arch, multi_candidate, confidence_threshold
):
    target, draft = pair(arch=arch, eos=None)
    decoder = MTADDecoder(
        target,
        draft,
        PROMPT,
        num_beams=3,
        accept_threshold=0.3,
        temperature=1.0,
        top_p=1.0,
        generator=make_generator(5),
        multi_candidate=multi_candidate,
        confidence_threshold=confidence_threshold,
    )
    recorder = Recorder("mtad", PROMPT[0].tolist(), 40, None)
    reordered, stopped_early = False, False
    with torch.inference_mode():
        while not recorder.done:
            step = decoder.step(min(4, recorder.remaining - 1))
            reordered |= step.info.get("beams", [0])[0] > 1 and len(step.info["beams"]) > 2
            stopped_early |= 0 < len(step.info.get("beams", [0])) < min(4, recorder.remaining - 1)
            kept = recorder.record(step)
            decoder.sequence = torch.cat([decoder.sequence, torch.tensor([kept])], 1)
            sequence = decoder.sequence
            assert_same_cache(decoder.target_cache, fresh_cache(target, sequence[:, :-1]))
            drafted = decoder.draft_cache.get_seq_length()
            assert drafted <= sequence.shape[1] - 1
            assert_same_cache(decoder.draft_cache, fresh_cache(draft, sequence[:, :drafted]))
    if confidence_threshold:
        assert stopped_early  # the confidence stop ended some rounds early
    else:
        assert reordered and not stopped_early  # the beams were expanded and reordered by parent


def test_tree_mask_gives_every_node_the_logits_of_its_own_path():
    target, draft = pair()
    prompt = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.inference_mode():
        tree = beam_sample(draft, DynamicCache(config=draft.config), prompt, 3, 3, 1.0, 1.0, make_generator(1))
        cache = fresh_cache(target, prompt[:, :2])  # two positions cached, three fresh
        mask, positions = tree_attention(tree, 2, 3, target.dtype)
        nodes = torch.cat(tree.tokens)[None]
        logits = target(
            input_ids=torch.cat([prompt[:, 2:], nodes], 1),
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
        ).logits[0]
        offsets = tree.offsets()
        for depth, width in enumerate(tree.widths, start=1):
            for i in range(width):
                path = torch.tensor([tree.path_tokens(depth, i)])
                alone = target(input_ids=torch.cat([prompt, path], 1)).logits[0, -1]
                torch.testing.assert_close(logits[3 + offsets[depth - 1] + i], alone, atol=1e-4, rtol=1e-4)


def test_distinct_sampling_draws_first_in_proportion_to_the_weights_then_without_replacement():
    weights = torch.tensor([[0.5, 0.25], [0.15, 0.1]])
    generator, trials = make_generator(3), 4000
    firsts = torch.zeros(4)
    for _ in range(trials):
        picked = _sample_distinct(weights.log(), 2, generator)
        assert len(set(picked.tolist())) == 2
        firsts[picked[0]] += 1
    assert chisquare(firsts.numpy(), weights.flatten().numpy() * trials).pvalue > FALSE_ALARM
    impossible = torch.tensor([0.0, 1.0]).log()  # a zero weight is never drawn, even when more are asked for
    assert _sample_distinct(impossible, 2, generator).tolist() == [1]


def test_beam_sampling_keeps_distinct_beams_and_exact_joint_draft_logprobs():
    _, draft = pair()
    prompt = torch.tensor([[5, 6, 7]])
    with torch.inference_mode():
        tree = beam_sample(draft, DynamicCache(config=draft.config), prompt, 3, 4, 1.0, 1.0, make_generator(2))
        assert tree.widths == [4, 4, 4]
        for depth in range(1, 4):
            paths = [tree.path_tokens(depth, i) for i in range(4)]
            assert len(set(map(tuple, paths))) == 4  # sampled without replacement
            for i, path in enumerate(paths):
                ids = torch.cat([prompt, torch.tensor([path])], 1)
                logq = torch.log_softmax(draft(input_ids=ids).logits[0, 2:-1], -1)
                expected = float(logq[torch.arange(depth), torch.tensor(path)].sum())
                assert math.isclose(float(tree.joint_logq[depth - 1][i]), expected, abs_tol=1e-4)


def test_acceptance_is_the_deepest_depth_where_a_node_beats_the_best_draft_likelihood_by_tau():
    log_tau = math.log(0.5)
    joint_logq = [torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -3.0]), torch.tensor([-3.0, -4.0])]
    joint_logp = [
        torch.tensor([-3.0, -3.0]),  # depth 1: both fail (vs max q = -1)
        torch.tensor([-2.5, -2.2]),  # depth 2: both pass; the higher target likelihood wins
        torch.tensor([-9.0, -9.0]),  # depth 3: both fail
    ]
    assert select_accepted(joint_logp, joint_logq, log_tau) == (2, 1)
    assert select_accepted([torch.tensor([-5.0])], [torch.tensor([-1.0])], log_tau) == (0, 0)
    # The comparison is with the best draft likelihood at that depth, not the node's own.
    assert select_accepted([torch.tensor([-1.8, -2.0])], [torch.tensor([-1.0, -3.0])], log_tau) == (0, 0)


def test_trace_records_the_candidate_and_its_joint_likelihoods():
    target, draft = pair()
    for multi in (False, True):
        result = mtad(target, draft, PROMPT, 25, num_draft_tokens=3, seed=1, multi_candidate=multi)
        for step in result.steps[:-1]:
            info = step.info
            assert len(info["draft_logprob"]) == len(info["target_logprob"]) == len(step.drafted)
            assert math.isclose(sum(math.log(q) for q in step.draft_probs), info["draft_logprob"][-1], abs_tol=1e-4)
            assert math.isclose(sum(math.log(p) for p in step.target_probs), info["target_logprob"][-1], abs_tol=1e-4)
            passing = [
                lp - mq > info["log_threshold"]
                for lp, mq in zip(info["target_logprob"], info["max_draft_logprob"], strict=False)
            ]
            assert step.accepted == max((d + 1 for d, ok in enumerate(passing) if ok), default=0)
            assert info["verified_nodes"] == (sum(info["beams"]) if multi else len(info["beams"]))


@pytest.mark.parametrize("multi_candidate", [False, True])
def test_a_draft_equal_to_the_target_gets_every_draft_accepted(multi_candidate):
    target, _ = pair(eos=None)  # no end of sequence to cut a round short
    result = mtad(target, target, PROMPT, 30, num_draft_tokens=4, seed=2, multi_candidate=multi_candidate)
    assert result.acceptance_by_position() == [1.0] * 4


def test_with_one_beam_and_one_draft_token_acceptance_is_a_deterministic_threshold_not_speculative_sampling():
    """γ = 1, B = 1 keeps speculative decoding's shape but not its rule: the draft x ~ q is kept iff
    p(x)/q(x) > τ (no coin flip), and otherwise the next token comes from p itself (no residual).
    So the first token follows q·1[p/q > τ] + P(reject)·p, which is not p."""
    target, draft = pair(vocab=5, eos=None)
    tau = 0.5
    with torch.inference_mode():
        p = warp(target(input_ids=PROMPT5).logits[0, -1], 1.0, 1.0).double()
        q = warp(draft(input_ids=PROMPT5).logits[0, -1], 1.0, 1.0).double()
    keep = p / q > tau
    expected = q * keep + (q * ~keep).sum() * p
    assert 0.5 * float((expected - p).abs().sum()) > 0.05  # the two rules really differ here

    runs = 1500
    first = torch.zeros(5)
    for seed in range(runs):
        result = mtad(target, draft, PROMPT5, 2, num_draft_tokens=1, num_beams=1, accept_threshold=tau, seed=seed)
        step = result.steps[0]
        x = step.drafted[0]
        assert step.accepted == int(bool(keep[x]))
        first[result.tokens[0]] += 1
    assert chi2_pvalue(first, expected) > FALSE_ALARM
    assert chi2_pvalue(first, p) < FALSE_ALARM


def test_exact_mtjd_agrees_with_brute_force_on_a_five_token_vocabulary():
    model = tiny_model(layers=2, vocab=5, seed=3, sharpness=2.0, eos=None)
    k, prompt = 3, [2, 4]
    logp = joint_logprobs(model, torch.tensor([prompt]), k)
    assert logp.shape == (5, 5, 5)
    with torch.no_grad():
        for seq in itertools.product(range(5), repeat=k):
            rows = torch.log_softmax(model(input_ids=torch.tensor([prompt + list(seq)])).logits[0].double(), -1)
            brute = sum(float(rows[len(prompt) - 1 + i, t]) for i, t in enumerate(seq))
            assert math.isclose(float(logp[seq]), brute, abs_tol=1e-4)
    assert math.isclose(float(logp.exp().sum()), 1.0, abs_tol=1e-6)
    best, best_logp = joint_argmax(logp)
    exhaustive = beam_search_joint(model, torch.tensor([prompt]), k)
    assert exhaustive[0] == (best, best_logp) or math.isclose(exhaustive[0][1], best_logp, abs_tol=1e-9)
    assert len(exhaustive) == 5**k
    assert beam_search_joint(model, torch.tensor([prompt]), k, num_beams=25)[0][0] == best  # 25 = V**(k-1)
    for seq, score in beam_search_joint(model, torch.tensor([prompt]), k, num_beams=2):
        assert math.isclose(score, float(logp[tuple(seq)]), abs_tol=1e-9)


def test_joint_samples_and_outcomes_cut_at_eos_follow_the_exact_joint():
    model = tiny_model(layers=1, vocab=5, seed=4, eos=None)
    logp = joint_logprobs(model, PROMPT5, 2)
    outcomes = outcome_distribution(logp, eos=1)
    assert math.isclose(sum(outcomes.values()), 1.0, abs_tol=1e-6)
    assert math.isclose(outcomes[(1,)], float(logp[1].exp().sum()), abs_tol=1e-12)
    samples = sample_joint(logp, 4000, torch.Generator().manual_seed(0))
    counts = torch.zeros(25)
    for a, b in samples:
        counts[5 * a + b] += 1
    assert chi2_pvalue(counts, logp.flatten().exp()) > FALSE_ALARM


def test_mtad_with_the_target_as_its_own_one_beam_draft_samples_the_exact_joint():
    target, _ = pair(vocab=5, eos=None)
    gap = mtad_gap(target, target, PROMPT5, k=2, runs=300, num_beams=1, num_draft_tokens=2)
    assert gap.tv < gap.tv_floor + 0.08
    assert gap.optimum_logprob >= gap.sampling_logprob
    assert abs(gap.mtad_logprob - gap.sampling_logprob) < 0.3


def test_mtad_gap_is_measured_for_both_variants():
    target, draft = pair(vocab=5, eos=None)
    for multi in (False, True):
        gap = mtad_gap(target, draft, PROMPT5, k=2, runs=60, multi_candidate=multi)
        assert 0 <= gap.tv_floor <= 1 and 0 <= gap.tv <= 1
        assert gap.mtad_logprob <= gap.optimum_logprob
        assert gap.mean_accepted >= 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_beams": 0}, "num_beams"),
        ({"num_draft_tokens": 0}, "num_draft_tokens"),
        ({"accept_threshold": 0.0}, "accept_threshold"),
        ({"accept_threshold": 1.5}, "accept_threshold"),
        ({"accept_threshold": float("nan")}, "accept_threshold"),
        ({"temperature": 0.0}, "sampling method"),
        ({"top_p": 0.0}, "top_p"),
        ({"confidence_threshold": 1.5}, "confidence_threshold"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(kwargs, message):
    target, draft = pair()
    with pytest.raises(ValueError, match=message):
        mtad(target, draft, PROMPT, 5, **kwargs)


def test_models_with_different_vocabularies_are_refused():
    target, _ = pair(vocab=64)
    draft = tiny_model(layers=1, hidden=16, vocab=32, seed=8)
    with pytest.raises(ValueError, match="vocabulary"):
        mtad(target, draft, PROMPT, 5)


def test_enumeration_refuses_vocabularies_too_large_to_enumerate():
    model = tiny_model(layers=1, vocab=64, seed=1)
    with pytest.raises(ValueError, match="too many"):
        joint_logprobs(model, PROMPT, 4)


def test_tree_verification_refuses_attention_without_custom_masks():
    target, draft = pair()
    target.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="4D attention mask"):
        mtad(target, draft, PROMPT, 5, multi_candidate=True)


def test_tree_and_chain_verification_give_the_same_target_likelihoods():
    """The joint target log-likelihood of a node does not depend on how many other beams share the pass."""
    target, draft = pair()
    with torch.inference_mode():
        tree = beam_sample(draft, DynamicCache(config=draft.config), PROMPT, 3, 3, 1.0, 1.0, make_generator(9))
        mask, positions = tree_attention(tree, 0, 3, target.dtype)
        ids = torch.cat([PROMPT, torch.cat(tree.tokens)[None]], 1)
        logp = torch.log_softmax(target(input_ids=ids, attention_mask=mask, position_ids=positions).logits[0, 2:], -1)
        joint = target_joint_logp(tree, logp)
        for i in range(tree.widths[-1]):
            chain = tree.chain(3, i)
            ids = torch.cat([PROMPT, torch.cat(chain.tokens)[None]], 1)
            chain_logp = torch.log_softmax(target(input_ids=ids).logits[0, 2:], -1)
            assert math.isclose(float(target_joint_logp(chain, chain_logp)[-1][0]), float(joint[-1][i]), abs_tol=1e-4)


def test_several_beams_favour_continuations_more_likely_than_exact_sampling():
    """Where MTJD's gain comes from: with a perfect draft every beam passes, and keeping the most
    likely of B sampled beams raises the joint log-likelihood above ancestral sampling's."""
    target, _ = pair(vocab=5, eos=None)
    gap = mtad_gap(target, target, PROMPT5, k=3, runs=200, num_beams=4, num_draft_tokens=3)
    assert gap.mtad_logprob > gap.sampling_logprob + 0.3
    assert gap.optimum_rate > 0.1


def test_drafting_ends_when_the_most_likely_beam_reaches_the_end_of_text(shipped, questions):
    eos, gamma = shipped.tokenizer.eos_token_id, 30
    prompts = [encode_chat(shipped.tokenizer, record["turns"][0]) for record in questions[::60]]
    steps = [step for ids in prompts
             for step in mtad(shipped.target, shipped.draft, ids, 64, num_draft_tokens=gamma, num_beams=2,
                              temperature=1.0, seed=0).steps]
    ended = [step for step in steps if step.drafted and step.drafted[-1] == eos]
    assert ended and all(len(step.drafted) < gamma for step in ended)

