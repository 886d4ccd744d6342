"""Speculative decoding is lossless: greedy identity and a preserved sampling distribution."""

import pytest
import torch
from helpers import (
    ARCHITECTURES,
    FALSE_ALARM,
    chi_square_pvalue,
    eos_in_the_middle,
    exact_two_token_distribution,
    tiny_model,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from kangaroo_lite import autoregressive, encode_chat
from kangaroo_lite.decoding.speculative import speculative


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@settings(max_examples=12, deadline=None)
@given(prompt_length=st.integers(1, 12), k=st.integers(1, 7), new=st.integers(1, 30),
       adaptive=st.booleans(), confidence=st.sampled_from([0.0, 0.4, 1.0]), seed=st.integers(0, 10_000))
def test_greedy_output_identical_to_autoregressive_on_random_models(arch, prompt_length, k, new, adaptive,
                                                                    confidence, seed):
    target = tiny_model(arch, layers=3, seed=7, sharpness=3.0)
    draft = tiny_model(arch, layers=1, hidden=16, seed=8, sharpness=3.0)
    ids = torch.randint(3, 64, (1, prompt_length), generator=torch.Generator().manual_seed(seed))
    expected = autoregressive(target, ids, new).tokens
    got = speculative(target, draft, ids, new, num_draft_tokens=k, adaptive_draft=adaptive,
                      confidence_threshold=confidence)
    assert got.tokens == expected
    assert len(got.tokens) <= new


def test_greedy_identity_holds_when_eos_comes_mid_draft():
    target, draft = tiny_model(seed=9, sharpness=3.0), tiny_model(layers=1, seed=10, sharpness=3.0)
    ids = torch.tensor([[5, 6, 7]])
    eos_in_the_middle(target, autoregressive(target, ids, 30).tokens)
    expected = autoregressive(target, ids, 30)
    got = speculative(target, draft, ids, 30, num_draft_tokens=5)
    assert got.tokens == expected.tokens and got.stop_reason == "eos"


def test_our_greedy_output_equals_hugging_face_assisted_generation(shipped, questions):
    for record in questions[::40]:
        ids = encode_chat(shipped.tokenizer, record["turns"][0])
        hf = shipped.target.generate(ids, assistant_model=shipped.draft, do_sample=False, max_new_tokens=40)
        ours = speculative(shipped.target, shipped.draft, ids, 40)
        assert ours.tokens == hf[0, ids.shape[1]:].tolist()


def test_a_draft_equal_to_the_target_gets_every_token_accepted():
    target = tiny_model(seed=11)
    result = speculative(target, target, torch.tensor([[4, 5]]), 20, num_draft_tokens=4)
    assert result.acceptance_by_position() == [1.0] * 4
    assert result.mean_accepted > 3


def test_trace_records_drafts_acceptance_and_probabilities():
    target, draft = tiny_model(seed=12, sharpness=3.0), tiny_model(layers=1, seed=13, sharpness=3.0)
    result = speculative(target, draft, torch.tensor([[4, 5, 6]]), 25, num_draft_tokens=3)
    assert sum(len(s.emitted) for s in result.steps) == len(result.tokens) == 25
    assert result.target_forwards == len(result.steps)
    for step in result.steps[1:]:
        assert len(step.draft_probs) == len(step.target_probs) == len(step.drafted)
        assert step.emitted[: step.accepted] == step.drafted[: step.accepted]
    assert abs(result.mean_accepted - 25 / result.target_forwards) < 1e-9


def test_adaptive_draft_length_grows_after_full_acceptance():
    target = tiny_model(seed=14)
    result = speculative(target, target, torch.tensor([[4, 5]]), 40, num_draft_tokens=2, adaptive_draft=True)
    lengths = [s.info["draft_length"] for s in result.steps if s.drafted]
    assert lengths[:3] == [2, 4, 6]


def test_a_confidence_threshold_of_one_drafts_a_single_token_per_round():
    target, draft = tiny_model(seed=17, sharpness=2.0), tiny_model(layers=1, seed=18, sharpness=2.0)
    result = speculative(target, draft, torch.tensor([[4, 5]]), 20, num_draft_tokens=6, confidence_threshold=1.0)
    assert {len(s.drafted) for s in result.steps if s.drafted} == {1}
    with pytest.raises(ValueError, match="confidence_threshold"):
        speculative(target, draft, torch.tensor([[4, 5]]), 5, confidence_threshold=1.5)


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9)])
def test_sampling_preserves_the_targets_distribution(temperature, top_p):
    target = tiny_model(vocab=8, seed=15, sharpness=6.0, eos=None)
    draft = tiny_model(vocab=8, layers=1, seed=16, sharpness=6.0, eos=None)
    prompt = [3, 4, 5]
    exact = exact_two_token_distribution(target, prompt, temperature, top_p)
    samples = [tuple(speculative(target, draft, torch.tensor([prompt]), 2, num_draft_tokens=2,
                                 temperature=temperature, top_p=top_p, seed=s).tokens)
               for s in range(2500)]
    assert chi_square_pvalue(samples, exact) > FALSE_ALARM


def test_the_distribution_test_would_catch_sampling_from_the_draft():
    target = tiny_model(vocab=8, seed=15, sharpness=6.0, eos=None)
    draft = tiny_model(vocab=8, layers=1, seed=16, sharpness=6.0, eos=None)
    prompt = [3, 4, 5]
    exact = exact_two_token_distribution(target, prompt, 1.0, 1.0)
    samples = [tuple(autoregressive(draft, torch.tensor([prompt]), 2, temperature=1.0, seed=s).tokens)
               for s in range(2500)]
    assert chi_square_pvalue(samples, exact) < FALSE_ALARM


def test_mismatched_vocabularies_are_rejected_naming_both_sizes():
    with pytest.raises(ValueError, match="64.*32"):
        speculative(tiny_model(vocab=64), tiny_model(vocab=32), torch.tensor([[1, 2]]), 5)


@pytest.mark.parametrize("kwargs,error", [({"num_draft_tokens": 0}, "num_draft_tokens"),
                                          ({"temperature": -1.0}, "temperature"),
                                          ({"top_p": 0.0}, "top_p")])
def test_bad_parameters_get_a_clear_error(kwargs, error):
    with pytest.raises(ValueError, match=error):
        speculative(tiny_model(), tiny_model(layers=1), torch.tensor([[1, 2]]), 5, **kwargs)
