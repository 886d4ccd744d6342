"""The chance test accepts samples from the exact distribution and rejects samples from another one."""

import pytest
import torch

from kangaroo_lite.notebook.distribution_test import chance_test, frequencies, total_variation

EXACT = torch.tensor([0.4, 0.3, 0.2, 0.1])


def test_total_variation_is_half_the_l1_distance():
    assert total_variation(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert total_variation(EXACT, EXACT) == 0.0
    with pytest.raises(ValueError, match="shapes"):
        total_variation(EXACT, torch.ones(3) / 3)


def test_frequencies_count_each_id():
    assert frequencies([0, 0, 3, 1], 4).tolist() == [0.5, 0.25, 0.0, 0.25]
    with pytest.raises(ValueError):
        frequencies([], 4)


@pytest.mark.parametrize("seed", range(5))
def test_samples_from_the_exact_distribution_pass(seed):
    samples = torch.multinomial(EXACT, 200, replacement=True, generator=torch.Generator().manual_seed(seed)).tolist()
    test = chance_test(EXACT, samples, trials=500, seed=seed + 100)
    assert test.p_value > 1e-3 and test.chance_median < test.chance_high
    assert test.samples == 200 and test.trials == 500


def test_samples_from_another_distribution_fail():
    other = torch.tensor([0.1, 0.2, 0.3, 0.4])
    samples = torch.multinomial(other, 200, replacement=True, generator=torch.Generator().manual_seed(0)).tolist()
    test = chance_test(EXACT, samples, trials=500)
    assert test.p_value < 1e-2 and test.tv > test.chance_high


def test_the_answer_is_deterministic_for_a_seed():
    samples = [0, 1, 1, 2, 3, 0, 0]
    assert chance_test(EXACT, samples, trials=100, seed=3) == chance_test(EXACT, samples, trials=100, seed=3)


def test_trials_must_be_positive():
    with pytest.raises(ValueError, match="trials"):
        chance_test(EXACT, [0], trials=0)


def test_the_observed_distance_is_the_total_variation_of_the_frequencies():
    samples = [0, 1, 1, 2, 0, 0, 1]
    expected = total_variation(frequencies(samples, 4), EXACT)
    assert chance_test(EXACT, samples, trials=10).tv == pytest.approx(expected)
