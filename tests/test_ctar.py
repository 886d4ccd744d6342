"""The CTAR comparison reads off, without decoding, what the decoders would accept."""

from __future__ import annotations

import pytest

import kangaroo_lite as kl
from kangaroo_lite.bench.ctar import compare_ctar, ctar, kangaroo_runs, medusa_runs
from kangaroo_lite.bench.draft_bounds import adapter_top1, chain_runs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ctar_is_the_share_of_positions_whose_first_k_drafts_are_all_right():
    assert ctar([0, 1, 2, 3], 3) == [0.75, 0.5, 0.25]
    assert ctar([], 2) == [0.0, 0.0]


@pytest.fixture(scope="module")
def tiny():
    tokenizer, target, _, adapter = kl.load_default()
    return tokenizer, target, adapter, kl.load_medusa_heads(target)


def test_runs_match_what_each_decoder_accepts_in_its_first_round(tiny):
    tokenizer, target, adapter, heads = tiny
    for question in ("What is 12 plus 7?", "Translate to French: the cat sleeps."):
        prompt = kl.encode_chat(tokenizer, question)
        reply = kl.autoregressive(target, prompt, 24).tokens
        prompt = prompt[0].tolist()
        # Medusa with one candidate per head verifies exactly the heads' top-1 chain from the prefill's token.
        first = kl.medusa(target, heads, prompt, 24, top_k=1, max_nodes=heads.num_heads).steps[1]
        assert first.accepted == min(medusa_runs(target, heads, prompt, reply)[0], heads.num_heads)
        # Kangaroo's first round drafts from the last prompt token: the chain run at reply position 0.
        chain = kl.kangaroo(target, adapter, prompt, 24, max_draft_tokens=4, threshold=0.0, copy_drafts=False)
        assert chain.steps[0].accepted == chain_runs(adapter_top1(target, adapter, prompt, reply), reply, 4)[0]
        assert len(kangaroo_runs(target, adapter, prompt, reply, 4)) == len(reply) - 1


def test_the_comparison_covers_every_subtask_and_overall(tiny):
    tokenizer, target, adapter, heads = tiny
    replies = [(subtask, kl.encode_chat(tokenizer, q)[0].tolist()) for subtask, q in
               (("math_reasoning", "What is 3 plus 4?"), ("qa", "Who wrote the letter?"))]
    replies = [(s, p, kl.autoregressive(target, p, 16).tokens) for s, p in replies]
    found = compare_ctar(target, adapter, heads, replies)
    assert list(found) == ["math_reasoning", "qa", "overall"]
    for row in found.values():
        for name in ("kangaroo", "medusa"):
            assert len(row[name]) == heads.num_heads and row[name] == sorted(row[name], reverse=True)
    assert found["overall"]["positions"] == sum(len(r) - 1 for _, _, r in replies)
