"""Cost-aware draft length: verify only the drafts that pay for their place in the verification pass."""

import pytest
import torch
from helpers import ARCHITECTURES, tiny_model
from hypothesis import given
from hypothesis import strategies as st

from kangaroo_lite import KangarooAdapter, autoregressive, kangaroo, speculative
from kangaroo_lite.core.draft_length import (
    AcceptanceCalibration,
    ContextCostCurve,
    DraftBackoff,
    best_draft_length,
    best_tree_size,
    curve_at,
    curve_for,
    padded_curve,
    padded_size,
    tree_budget,
)

CPU = {1: 1.0, 2: 1.06, 3: 1.16, 4: 1.65, 5: 1.70, 7: 2.06}
FREE = {1: 1.0, 16: 1.0}


def test_free_verification_keeps_every_draft():
    assert best_draft_length([0.2, 0.1, 0.05], FREE) == 3


def test_a_costly_pass_drops_the_unlikely_drafts():
    assert best_draft_length([0.9, 0.9, 0.9], CPU) == 2  # a fourth token would cost 0.49 of a pass
    assert best_draft_length([0.9, 0.9, 0.9, 0.95], CPU) == 4  # ... unless the next one rides along cheaply
    assert best_draft_length([0.05], CPU) == 0  # 5% for 6% more cost: not worth it
    assert best_draft_length([0.2], CPU) == 1


def test_curve_is_interpolated_between_measured_sizes_and_held_beyond_them():
    assert curve_at(CPU, 2) == 1.06 and curve_at(CPU, 40) == 2.06 and curve_at(CPU, 0) == 1.0
    assert curve_at(CPU, 6) == pytest.approx((1.70 + 2.06) / 2)


@given(st.lists(st.floats(0, 1), max_size=8))
def test_the_choice_is_a_valid_prefix_length(confidences):
    assert 0 <= best_draft_length(confidences, CPU) <= len(confidences)


@given(st.lists(st.floats(0.01, 1), max_size=8))
def test_with_free_verification_every_plausible_draft_is_kept(confidences):
    assert best_draft_length(confidences, FREE) == len(confidences)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_cost_aware_drafting_stays_lossless_and_verifies_fewer_drafts(arch):
    target = tiny_model(arch, layers=4, vocab=64, seed=1, sharpness=3.0, eos=None)
    adapter = KangarooAdapter.from_target(target, 2)
    draft = tiny_model(arch, layers=1, vocab=64, seed=2, sharpness=3.0, eos=None)
    costly = {1: 1.0, 2: 1.5, 3: 2.5}
    for prompt in (torch.tensor([[5, 6, 7]]), torch.tensor([[9] * 11])):
        base = autoregressive(target, prompt, 30).tokens
        plain = kangaroo(target, adapter, prompt, 30, max_draft_tokens=4, threshold=0.0)
        aware = kangaroo(target, adapter, prompt, 30, max_draft_tokens=4, threshold=0.0, cost_curve=costly)
        assert plain.tokens == aware.tokens == base
        assert sum(len(s.drafted) for s in aware.steps) < sum(len(s.drafted) for s in plain.steps)
        assert any(s.info["draft_stop"] == "cost" for s in aware.steps)
        mild = kangaroo(target, adapter, prompt, 30, max_draft_tokens=4, threshold=0.0, cost_curve={1: 1.0, 2: 1.01})
        scales = [s.info["calibration"] for s in mild.steps]  # what the generation had accepted, per round
        assert mild.tokens == base and scales[0] == 1.0 and len(set(scales)) > 1
        spec = speculative(target, draft, prompt, 30, num_draft_tokens=4, cost_curve=costly)
        assert spec.tokens == base


def test_calibration_starts_neutral_and_follows_observed_acceptance():
    calibration = AcceptanceCalibration(prior=4.0)
    assert calibration.corrected([0.5, 0.9]) == [0.5, 0.9]
    for _ in range(20):  # confident drafts, rejected at once: 0.8 expected per round, 0 accepted
        calibration.update([0.8, 0.8], accepted=0)
    assert calibration.scale == pytest.approx(4.0 / 20.0)
    smollm2 = {1: 1.0, 2: 1.2}  # a pass over 2 tokens costs 1.2 of one
    assert best_draft_length([0.8], smollm2) == 1
    assert best_draft_length(calibration.corrected([0.8]), smollm2) == 0  # it stops verifying them


def test_calibration_counts_only_the_drafts_the_target_reached():
    calibration = AcceptanceCalibration(prior=0.0)
    calibration.update([0.5, 0.5, 0.5], accepted=1)  # the third draft was never compared
    assert (calibration.expected, calibration.accepted) == (1.0, 1.0)
    calibration.update([0.5, 0.5], accepted=2)  # all accepted
    assert (calibration.expected, calibration.accepted) == (2.0, 3.0)
    assert calibration.corrected([0.9]) == [1.0]  # capped: an estimate of a probability


def test_a_context_cost_curve_reads_the_curve_of_each_context_length():
    curves = ContextCostCurve({769: {1: 1.0, 2: 1.22, 3: 1.28}, 151: {1: 1.0, 2: 1.08, 3: 1.28, 4: 1.54}})
    assert curves.at(10) == curves.at(151) == {1: 1.0, 2: 1.08, 3: 1.28, 4: 1.54}  # the nearest outside
    assert curves.at(5000) == {1: 1.0, 2: 1.22, 3: 1.28}
    middle = curves.at(460)  # halfway: the mean of the two, at every size either measured
    assert middle.keys() == {1, 2, 3, 4} and middle[2] == pytest.approx(1.15) and middle[4] == pytest.approx(1.41)
    assert curve_for(curves, 769) == curves.at(769) and curve_for(CPU, 769) is CPU
    assert best_draft_length([0.15], curves.at(151)) == 1 and best_draft_length([0.15], curves.at(769)) == 0
    with pytest.raises(ValueError, match="at least one"):
        ContextCostCurve({})


def test_decoders_read_the_cost_curve_of_their_context_and_stay_lossless():
    target = tiny_model(layers=4, vocab=64, seed=1, sharpness=3.0, eos=None)
    adapter = KangarooAdapter.from_target(target, 2)
    draft = tiny_model(layers=1, vocab=64, seed=2, sharpness=3.0, eos=None)
    short, long = torch.tensor([[5, 6, 7]]), torch.tensor([[9, 4] * 20])
    # Verification is free after short contexts and dear after long ones: only long prompts draft less.
    curves = ContextCostCurve({23: FREE, 40: {1: 1.0, 2: 3.0}})
    for prompt, drafts_cut in ((short, False), (long, True)):
        base = autoregressive(target, prompt, 20).tokens
        run = kangaroo(target, adapter, prompt, 20, max_draft_tokens=3, threshold=0.0, cost_curve=curves)
        assert run.tokens == base
        assert any(s.info["draft_stop"] == "cost" for s in run.steps) == drafts_cut
        assert speculative(target, draft, prompt, 20, num_draft_tokens=3, cost_curve=curves).tokens == base


def test_backoff_pauses_longer_after_each_round_not_worth_verifying_and_starts_over_after_a_verified_one():
    backoff, pattern = DraftBackoff(longest=4), []
    for verified in (0, 0, 0, 0, 2, 0):
        rounds = 0
        while not backoff.drafts_now():  # the rounds paused before the next one that drafts
            rounds += 1
        pattern.append(rounds)
        backoff.update(verified)
    assert pattern == [0, 1, 2, 4, 4, 0]
    never = DraftBackoff(longest=0)
    never.update(0)
    assert never.drafts_now()
    with pytest.raises(ValueError, match="backoff"):
        DraftBackoff(longest=-1)


def test_kangaroo_pauses_drafting_where_drafts_do_not_pay_and_stays_lossless():
    target = tiny_model(layers=4, vocab=64, seed=1, sharpness=3.0, eos=None)
    adapter = KangarooAdapter.from_target(target, 2)
    dear = {1: 1.0, 2: 1.6, 3: 2.4}
    prompt = torch.tensor([[5, 6, 7, 8]])
    base = autoregressive(target, prompt, 40).tokens
    paused = kangaroo(target, adapter, prompt, 40, threshold=0.0, cost_curve=dear)
    eager = kangaroo(target, adapter, prompt, 40, threshold=0.0, cost_curve=dear, backoff=0)
    assert paused.tokens == eager.tokens == base
    stops = [s.info["draft_stop"] for s in paused.steps]
    assert "backoff" in stops and "backoff" not in [s.info["draft_stop"] for s in eager.steps]
    assert all(not s.drafted for s in paused.steps if s.info["draft_stop"] == "backoff")
    # Fewer rounds run the adapter (a backoff round has no draft step) for the same target passes.
    assert len(paused.steps) - stops.count("backoff") < len(eager.steps)
    plain = kangaroo(target, adapter, prompt, 40, threshold=0.0, backoff=4)  # no cost curve: never pauses
    assert plain.tokens == base and "backoff" not in [s.info["draft_stop"] for s in plain.steps]
    with pytest.raises(ValueError, match="backoff"):
        kangaroo(target, adapter, prompt, 5, backoff=-1)


def test_sampled_drafts_are_kept_one_by_one_and_never_for_the_drafts_after_them():
    # A second draft that rides along cheaply would make a weak first one worth verifying: greedy
    # drafts are fixed, so the best length looks ahead; a sampled draft must be decided without the
    # confidence of the draft after it (which depends on the sampled token).
    curve = {1: 1.0, 2: 1.3, 3: 1.32, 4: 1.34}
    assert best_draft_length([0.2, 0.99, 0.99], curve) == 3
    assert best_draft_length([0.2, 0.99, 0.99], curve, sampled_from=0) == 0
    assert best_draft_length([0.9, 0.9], curve, sampled_from=0) == 2  # each raises the rate given the ones before
    # Copies (fixed) before sampled drafts: the copies are cut on their own, the sampled drafts follow only
    # after all of them.
    assert best_draft_length([0.9, 0.9, 0.05], curve, sampled_from=2) == 2
    assert best_draft_length([0.05, 0.99], curve, sampled_from=1) == 0


def test_a_pass_is_padded_to_a_larger_size_where_that_costs_less():
    # This CPU's kernels: a matrix product over 2 or 3 rows is slower than over 4.
    curve = {1: 1.0, 2: 1.62, 3: 2.03, 4: 1.42, 5: 1.56, 8: 1.69}
    assert [padded_size(curve, n) for n in (1, 2, 3, 4, 5, 8)] == [1, 4, 4, 4, 5, 8]
    assert padded_curve(curve) == {1: 1.0, 2: 1.42, 3: 1.42, 4: 1.42, 5: 1.56, 8: 1.69}
    assert padded_curve(FREE) == FREE


def test_a_tree_keeps_the_leading_nodes_worth_their_verification_cost():
    values = [0.9, 0.5, 0.3, 0.05]  # best first: each node's chance that its whole path is accepted
    assert best_tree_size(values, None) == 4 and best_tree_size(values, None, limit=2) == 2
    free = {1: 1.0, 6: 1.0}
    assert best_tree_size(values, free) == 4 and best_tree_size([*values, 0.0], free) == 4  # ties: the smaller
    assert best_tree_size(values, {1: 1.0, 2: 2.0, 5: 5.0}) == 0  # dear verification: no node pays
    # (1 + 0.9) / 1.2 beats (1 + 1.4) / 1.6 and (1 + 1.7) / 2.0
    assert best_tree_size(values, {1: 1.0, 2: 1.2, 3: 1.6, 4: 2.0, 5: 2.4}) == 1


def test_the_tree_budget_fills_a_cheaper_padded_pass_with_the_next_nodes():
    padded = {1: 1.0, 2: 1.6, 3: 2.0, 4: 1.4, 6: 2.2}  # a pass over 2-3 tokens costs more than one over 4
    assert tree_budget([0.9, 0.2, 0.1, 0.05, 0.01], None, max_nodes=3) == 3
    assert tree_budget([0.9, 0.2, 0.1, 0.05, 0.01], padded, max_nodes=8) == 3  # 4 tokens cost what 2 do
    assert tree_budget([0.9, 0.0, 0.0, 0.0], padded, max_nodes=8) == 3  # worth 1 node, 2 more ride in the padding
    assert tree_budget([0.9, 0.2], padded, max_nodes=8) == 2  # no more nodes to fill with
    assert tree_budget([0.9, 0.2, 0.1], padded, max_nodes=2) == 2
