"""Speed measurement: interleaving, medians, the same token counting for every method."""

import pytest
import torch
from helpers import tiny_model

from kangaroo_lite import KangarooAdapter
from kangaroo_lite.bench.cost_model import (
    RoundCosts,
    Spread,
    expected_speedup,
    expected_tokens_per_step,
    round_costs,
)
from kangaroo_lite.bench.measure import interleaved, speedups
from kangaroo_lite.bench.timing import interleaved_samples_ms
from kangaroo_lite.core.result import DecodingResult, Step, acceptance_rate, judged_acceptance_rate


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


def test_the_result_kept_for_a_prompt_is_its_median_repeat():
    times = iter([0.5, 0.1, 0.3])  # the repeats' wall times: the median is 0.3

    def run(prompt):
        return DecodingResult(method="x", prompt_tokens=[], tokens=[1, 2], target_forwards=2, wall_time=next(times))

    prompt = interleaved({"x": run}, [torch.tensor([1])], repeats=3, warmup=0)["x"].prompts[0]
    assert prompt.median_time == pytest.approx(0.3)
    assert prompt.result.wall_time == pytest.approx(prompt.median_time)
    assert len(prompt.runs) == 3


def test_expected_speedup_formula():
    assert expected_tokens_per_step(0.0, 4) == 1.0
    assert expected_tokens_per_step(1.0, 4) == 5.0
    assert expected_tokens_per_step(0.5, 2) == pytest.approx(1.75)
    assert expected_speedup(0.5, 2, 0.25) == pytest.approx(1.75 / 1.5)
    with pytest.raises(ValueError, match="alpha"):
        expected_speedup(1.5, 2, 0.1)


def test_a_costly_verification_pass_lowers_the_estimate_below_free_verification():
    flat = Spread(1.0, 1.0, 1.0)
    cpu = RoundCosts(target_ms=Spread(60.0, 58.0, 62.0), draft=Spread(0.05, 0.04, 0.06),
                     curve={1: flat, 2: Spread(1.48, 1.4, 1.5), 4: Spread(1.77, 1.7, 1.8), 8: Spread(2.1, 2.0, 2.2)})
    assert cpu.verify_cost(3) == pytest.approx((1.48 + 1.77) / 2)  # linear between measured sizes
    assert cpu.verify_cost(16) == pytest.approx(2.1)  # flat beyond the last
    assert cpu.expected_speedup(0.6, 3) < expected_speedup(0.6, 3, cpu.c)  # free verification: v = 1
    assert cpu.expected_speedup(0.2, 3) < 1  # a weak drafter cannot pay for the pass here


def test_interleaved_samples_rotate_the_steps_after_a_warm_up_round_and_roll_back_after_each():
    events = []
    timed = {key: (lambda key=key: events.append(key), lambda: events.append("rollback")) for key in "ab"}
    repeats_done = []
    samples = interleaved_samples_ms(timed, repeats=2, warmup=1, progress=lambda: repeats_done.append(1))
    assert len(repeats_done) == 2  # called after each timed repeat, not after the warm-up
    assert {key: len(s) for key, s in samples.items()} == {"a": 2, "b": 2}
    assert all(s >= 0 for ms in samples.values() for s in ms)
    assert [e for e in events if e != "rollback"] == ["a", "b", "b", "a", "a", "b"]  # warm-up, then rotated
    assert events.count("rollback") == 6
    with pytest.raises(ValueError, match="repeats"):
        interleaved_samples_ms(timed, repeats=0)


def test_a_spread_is_the_median_and_quartiles_divided_by_the_scale():
    spread = Spread.of([1.0, 2.0, 3.0, 4.0, 5.0], scale=2.0)
    assert spread.median == 1.5 and spread.low <= spread.median <= spread.high
    assert Spread.of([4.0]) == Spread(4.0, 4.0, 4.0)


@pytest.mark.parametrize("drafter", ["draft model", "adapter"])
def test_round_costs_measure_c_and_the_verification_curve_relative_to_one_target_pass(drafter):
    target = tiny_model(layers=3, hidden=32, vocab=64)
    draft = tiny_model(layers=1, hidden=16, vocab=64, seed=1) if drafter == "draft model" else (
        KangarooAdapter.from_target(target, 1))
    prompt = torch.tensor([[0, 5, 9, 11, 3]])
    costs = round_costs(target, draft, prompt, sizes=[2, 4], repeats=3)
    assert sorted(costs.curve) == [1, 2, 4]  # a one-token pass is always measured: the unit
    assert costs.curve[1].median == pytest.approx(1.0)
    assert costs.c == costs.draft.median > 0 and costs.draft.low <= costs.c <= costs.draft.high
    assert costs.target_ms.median > 0
    assert costs.verify_cost(3) == pytest.approx((costs.curve[2].median + costs.curve[4].median) / 2)
    assert costs.expected_speedup(0.5, 2) == pytest.approx(
        expected_speedup(0.5, 2, costs.c, costs.verify_cost(3)))


def test_the_judged_acceptance_rate_counts_accepted_drafts_and_the_first_rejection_of_each_round():
    steps = [Step(emitted=[1, 2, 3], drafted=[1, 2, 4, 5], accepted=2),  # 2 accepted, 1 rejected, 1 unjudged
             Step(emitted=[1, 2, 3], drafted=[1, 2], accepted=2),  # both accepted: nothing rejected
             Step(emitted=[7], drafted=[8, 9], accepted=0),  # the first rejected, the second unjudged
             Step(emitted=[4], drafted=[], accepted=0)]  # no drafts: nothing judged
    assert judged_acceptance_rate(steps) == pytest.approx(4 / 6)
    assert acceptance_rate(steps) == pytest.approx(4 / 8)  # the pooled rate counts unjudged drafts as rejected
    assert judged_acceptance_rate([]) == 0.0
