"""The losslessness check itself: a difference passes only where the baseline's top-2 logits nearly tie."""

import torch
from helpers import tiny_model

from kangaroo_lite import autoregressive
from kangaroo_lite.bench.lossless import NEAR_TIE, baseline_margin, classify_outputs, first_difference

PROMPT = torch.tensor([[5, 6, 7]])


def test_first_difference():
    assert first_difference([1, 2, 3], [1, 2, 3]) is None
    assert first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert first_difference([1, 2], [1, 2, 3]) == 2


def test_margin_is_the_baselines_top2_gap_at_that_step():
    target = tiny_model(vocab=32, seed=4)
    tokens = autoregressive(target, PROMPT, 6).tokens
    with torch.no_grad():
        logits = target(torch.tensor([PROMPT[0].tolist() + tokens[:3]])).logits[0, -1]
    top2 = logits.topk(2).values
    assert abs(baseline_margin(target, PROMPT, tokens, 3) - float(top2[0] - top2[1])) < 1e-4


def test_a_difference_at_a_tie_is_a_near_tie_and_elsewhere_a_bug():
    target = tiny_model(vocab=32, seed=4, eos=None)
    with torch.no_grad():  # make the runner-up of the first step tie with the winner exactly
        hidden = target.model(PROMPT).last_hidden_state[0, -1]
        winner, second = target.lm_head(hidden).topk(2).indices.tolist()
        target.lm_head.weight[second] = target.lm_head.weight[winner]
    base = autoregressive(target, PROMPT, 6).tokens
    flipped = [second if base[0] == winner else winner] + base[1:]
    wrong_later = base[:4] + [(base[4] + 1) % 32] + base[5:]
    report = classify_outputs(target, [PROMPT] * 3, [base] * 3, [base, flipped, wrong_later])
    assert report["identical"] == 1 and report["total"] == 3
    assert [t["prompt"] for t in report["near_ties"]] == [1] and report["near_ties"][0]["margin"] < NEAR_TIE
    assert [b["prompt"] for b in report["bugs"]] == [2] and report["bugs"][0]["margin"] >= NEAR_TIE
