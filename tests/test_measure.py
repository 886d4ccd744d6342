"""Speed measurement: interleaving, medians, the same token counting for every method."""

import pytest
import torch

from kangaroo_lite.bench.cost_model import (
    FREE_VERIFICATION,
    best_expected_speedup,
    expected_speedup,
    expected_tokens_per_step,
)
from kangaroo_lite.bench.measure import interleaved, speedups
from kangaroo_lite.core.result import DecodingResult


def _fake(name, seconds_per_token, tokens, calls):
    def run(prompt):
        calls.append(name)
        return DecodingResult(method=name, prompt_tokens=prompt.tolist(), tokens=list(range(tokens)),
                              target_forwards=tokens, wall_time=seconds_per_token * tokens)
    return run


def test_methods_are_interleaved_and_rotated_after_a_warm_up():
    calls = []
    runs = {name: _fake(name, 0.01, 4, calls) for name in "ABC"}
    interleaved(runs, [torch.tensor([1]), torch.tensor([2])], repeats=2, warmup=1)
    assert calls[:3] == ["A", "B", "C"]  # warm-up
    assert calls[3:] == ["A", "B", "C", "B", "C", "A", "B", "C", "A", "C", "A", "B"]


def test_speedup_is_the_ratio_of_tokens_per_second_in_the_same_run():
    calls = []
    runs = {"slow": _fake("slow", 0.02, 10, calls), "fast": _fake("fast", 0.01, 10, calls)}
    timings = interleaved(runs, [torch.tensor([1])] * 3, repeats=3)
    assert timings["fast"].tokens_per_second == pytest.approx(100.0)
    assert speedups(timings, "slow")["fast"] == pytest.approx(2.0)
    assert timings["fast"].mean_accepted == 1.0


def test_a_method_whose_output_changes_between_repeats_is_a_loud_error():
    counter = iter(range(100))

    def unstable(prompt):
        return DecodingResult(method="x", prompt_tokens=[], tokens=[next(counter)], target_forwards=1, wall_time=0.1)

    with pytest.raises(RuntimeError, match="different tokens"):
        interleaved({"x": unstable}, [torch.tensor([1])], repeats=2, warmup=0)


def test_expected_speedup_formula():
    assert expected_tokens_per_step(0.0, 4) == 1.0
    assert expected_tokens_per_step(1.0, 4) == 5.0
    assert expected_tokens_per_step(0.5, 2) == pytest.approx(1.75)
    assert expected_speedup(0.5, 2, 0.25) == pytest.approx(1.75 / 1.5)
    with pytest.raises(ValueError, match="alpha"):
        expected_speedup(1.5, 2, 0.1)


def test_a_costly_verification_pass_shortens_the_best_draft_and_caps_the_speedup():
    cpu = {1: 1.0, 2: 1.48, 4: 1.77, 7: 2.03, 10: 2.09, 16: 2.39}  # SmolLM2 on a 2-core CPU (issue 14)
    gamma_free, free = best_expected_speedup(0.6, 0.05, FREE_VERIFICATION)
    gamma_cpu, cpu_speedup = best_expected_speedup(0.6, 0.05, cpu)
    assert gamma_cpu < gamma_free and cpu_speedup < free
    assert free == pytest.approx(expected_speedup(0.6, gamma_free, 0.05))
    assert best_expected_speedup(0.2, 0.05, cpu)[1] < 1  # a weak drafter cannot pay for the pass here
    with pytest.raises(ValueError, match="max_gamma"):
        best_expected_speedup(0.5, 0.1, cpu, max_gamma=0)
