"""Warping and the speculative accept/reject rule."""

import math

import pytest
import torch
from helpers import FALSE_ALARM
from scipy.stats import chisquare

from kangaroo_lite.core.sampling import (
    accept_drafts,
    accept_greedy,
    check_sampling,
    make_generator,
    next_token,
    verify_drafts,
    warp,
)


def test_greedy_warp_is_one_hot_on_the_argmax():
    logits = torch.tensor([0.1, 2.0, -1.0, 1.9])
    assert warp(logits, 0.0, 1.0).tolist() == [0.0, 1.0, 0.0, 0.0]


def test_warp_is_a_distribution_and_temperature_sharpens_it():
    logits = torch.randn(3, 10)
    for t in (0.5, 1.0, 2.0):
        assert torch.allclose(warp(logits, t, 1.0).sum(-1), torch.ones(3))
    assert warp(logits, 0.5, 1.0).max() > warp(logits, 2.0, 1.0).max()


def test_top_p_keeps_the_smallest_nucleus_that_reaches_p():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    kept = warp(probs.log(), 1.0, 0.8)
    assert torch.allclose(kept, torch.tensor([0.625, 0.375, 0.0, 0.0]))
    assert warp(probs.log(), 1.0, 0.01).tolist() == [1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("temperature,top_p", [(-0.1, 1.0), (math.nan, 1.0), (math.inf, 1.0),
                                               (1.0, 0.0), (1.0, 1.5), ("1", 1.0)])
def test_bad_sampling_parameters_are_rejected(temperature, top_p):
    with pytest.raises(ValueError):
        check_sampling(temperature, top_p)


def test_seeded_sampling_is_reproducible():
    logits = torch.randn(50)
    draws = [next_token(logits, 1.0, 1.0, make_generator(7)) for _ in range(3)]
    assert len(set(draws)) == 1


def test_greedy_acceptance_is_exact_prefix_matching():
    p = torch.nn.functional.one_hot(torch.tensor([3, 4, 5, 6]), 8).float()
    q = torch.nn.functional.one_hot(torch.tensor([3, 4, 0]), 8).float()
    assert accept_drafts(p, q, [3, 4, 0], make_generator(0)) == (2, 5)
    q_all = torch.nn.functional.one_hot(torch.tensor([3, 4, 5]), 8).float()
    assert accept_drafts(p, q_all, [3, 4, 5], make_generator(0)) == (3, 6)


@pytest.mark.parametrize("seed", range(20))
def test_the_greedy_fast_path_equals_the_general_rule_on_one_hot_distributions(seed):
    generator = torch.Generator().manual_seed(seed)
    k = int(torch.randint(0, 6, (1,), generator=generator))
    target_logits = torch.randn(k + 1, 5, generator=generator)
    # drafts that often agree with the target's argmax, sometimes not
    guesses = torch.randint(0, 5, (k,), generator=generator)
    agree = torch.rand(k, generator=generator) < 0.7
    drafted = torch.where(agree, target_logits.argmax(-1)[:k], guesses).tolist()
    one_hot_drafts = torch.nn.functional.one_hot(torch.tensor(drafted, dtype=torch.long), 5).float()
    general = accept_drafts(warp(target_logits, 0, 1.0), one_hot_drafts, drafted, make_generator(0))
    assert accept_greedy(target_logits, drafted) == general


def test_verification_takes_the_greedy_path_at_temperature_zero_and_the_rejection_rule_otherwise():
    logits = torch.randn(4, 6, generator=torch.Generator().manual_seed(3))
    drafted = logits.argmax(-1)[:2].tolist() + [int(logits[2].argmin())]
    greedy = verify_drafts(logits, None, drafted, 0.0, 1.0, make_generator(0))
    assert greedy == accept_greedy(logits, drafted) == (2, int(logits[2].argmax()))
    q = warp(torch.randn(3, 6, generator=torch.Generator().manual_seed(4)), 0.8, 0.9)
    expected = accept_drafts(warp(logits, 0.8, 0.9), q, drafted, make_generator(5))
    assert verify_drafts(logits, q, drafted, 0.8, 0.9, make_generator(5)) == expected


def _first_token_counts(p, q, trials, rule):
    generator = make_generator(1)
    counts = torch.zeros(len(p))
    for _ in range(trials):
        draft = int(torch.multinomial(q, 1, generator=generator))
        counts[rule(draft, generator)] += 1
    return counts


def test_rejection_sampling_outputs_the_target_distribution():
    p = torch.tensor([0.5, 0.2, 0.2, 0.1])
    q = torch.tensor([0.1, 0.6, 0.1, 0.2])
    trials = 20000

    def rule(draft, generator):
        accepted, token = accept_drafts(torch.stack([p, p]), q[None], [draft], generator)
        return draft if accepted else token

    counts = _first_token_counts(p, q, trials, rule)
    assert chisquare(counts.numpy(), (p * trials).numpy()).pvalue > FALSE_ALARM


def test_the_distribution_check_detects_a_rule_that_always_accepts():
    p = torch.tensor([0.5, 0.2, 0.2, 0.1])
    q = torch.tensor([0.1, 0.6, 0.1, 0.2])
    counts = _first_token_counts(p, q, 20000, lambda draft, generator: draft)
    assert chisquare(counts.numpy(), (p * 20000).numpy()).pvalue < FALSE_ALARM
