"""Batched decoding: per-row losslessness, the ragged layout's invariants, sampling per row, clear errors."""

from __future__ import annotations

import functools

import pytest
import torch
from helpers import chi_square_pvalue, exact_two_token_distribution, tiny_model
from transformers import DynamicCache

from kangaroo_lite.adapter.model import KangarooAdapter
from kangaroo_lite.core.batch import RaggedLayout
from kangaroo_lite.decoding.autoregressive import autoregressive
from kangaroo_lite.decoding.kangaroo import kangaroo
from kangaroo_lite.decoding.speculative import speculative

torch.set_num_threads(1)

FAMILIES = ("llama", "qwen2", "mistral")


@functools.cache
def target(family: str = "llama", vocab: int = 64, eos: int | None = None, sharpness: float = 30.0):
    return tiny_model(family, 4, vocab=vocab, seed=0, sharpness=sharpness, eos=eos)


@functools.cache
def draft(family: str = "llama", vocab: int = 64, sharpness: float = 30.0):
    return tiny_model(family, 1, vocab=vocab, seed=5, sharpness=sharpness)


@functools.cache
def adapter(family: str = "llama", vocab: int = 64, eos: int | None = None, sharpness: float = 30.0):
    torch.manual_seed(1)
    return KangarooAdapter.from_target(target(family, vocab, eos, sharpness), 2)


def prompts_of(lengths: list[int], vocab: int = 64, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=generator) for n in lengths]


def decode(method: str, family: str, prompts, budget: int, eos: int | None = None, **options):
    """One call of `method` on the tiny models of `family` (a batch when `prompts` is one)."""
    if method == "autoregressive":
        return autoregressive(target(family, eos=eos), prompts, budget, **options)
    if method == "speculative":
        return speculative(target(family, eos=eos), draft(family), prompts, budget, **options)
    return kangaroo(target(family, eos=eos), adapter(family, eos=eos), prompts, budget, **options)


METHODS = {"autoregressive": {}, "speculative": {"num_draft_tokens": 4}, "kangaroo": {"max_draft_tokens": 4,
                                                                                      "threshold": 0.3}}

# ---------------------------------------------------------------- greedy: every row as if decoded alone


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", list(METHODS))
def test_each_row_equals_its_prompt_decoded_alone_for_very_different_lengths(method, family):
    prompts = prompts_of([1, 37, 5, 120, 2, 64])
    batch = decode(method, family, prompts, 30, **METHODS[method])
    assert isinstance(batch, list) and len(batch) == len(prompts)
    for prompt, row in zip(prompts, batch, strict=True):
        alone = autoregressive(target(family), prompt, 30)
        assert row.tokens == alone.tokens
        assert row.prompt_tokens == prompt.tolist()
    drafted = [len(step.drafted) for row in batch for step in row.steps]
    if method != "autoregressive":
        assert max(drafted) > 0


@pytest.mark.parametrize("method", list(METHODS))
def test_rows_that_end_at_different_times_by_eos_and_budget(method):
    """EOS is a token the target says mid-way for some rows: those rows finish early, the others run on."""
    prompts = prompts_of([3, 20, 8, 50], seed=4)
    tokens = autoregressive(target(), prompts[1], 24).tokens
    eos = tokens[len(tokens) // 2]
    batch = decode(method, "llama", prompts, 24, eos=eos, **METHODS[method])
    alone = [autoregressive(target(eos=eos), p, 24) for p in prompts]
    assert [r.tokens for r in batch] == [a.tokens for a in alone]
    assert [r.stop_reason for r in batch] == [a.stop_reason for a in alone]
    assert {r.stop_reason for r in batch} == {"eos", "length"}
    finished = [r.steps and r.wall_time for r in batch]
    assert all(t > 0 for t in finished)


@pytest.mark.parametrize("method", list(METHODS))
def test_rows_that_end_at_once_and_a_batch_of_one(method):
    prompt = prompts_of([9], seed=2)[0]
    alone = decode(method, "llama", prompt, 20, **METHODS[method])
    same = decode(method, "llama", [prompt, prompt, prompt], 20, **METHODS[method])
    assert [r.tokens for r in same] == [alone.tokens] * 3
    assert [r.target_forwards for r in same] == [alone.target_forwards] * 3
    one = decode(method, "llama", [prompt], 20, **METHODS[method])
    assert len(one) == 1 and one[0].tokens == alone.tokens


@pytest.mark.parametrize("method", list(METHODS))
def test_a_batch_equals_single_prompt_decoding_step_by_step(method):
    """Not only the tokens: each row drafts, accepts and counts target passes as it would alone."""
    prompts = prompts_of([4, 30, 11], seed=6)
    batch = decode(method, "llama", prompts, 25, **METHODS[method])
    for prompt, row in zip(prompts, batch, strict=True):
        alone = decode(method, "llama", prompt, 25, **METHODS[method])
        assert [(s.drafted, s.accepted, s.emitted) for s in row.steps] == \
            [(s.drafted, s.accepted, s.emitted) for s in alone.steps]
        assert row.target_forwards == alone.target_forwards


@pytest.mark.parametrize("padding", ["left", "right"])
def test_padded_ids_with_an_attention_mask_are_a_batch(padding):
    prompts = prompts_of([3, 10, 6], seed=8)
    width = max(len(p) for p in prompts)
    ids = torch.full((3, width), 2)
    mask = torch.zeros(3, width, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        place = slice(width - len(prompt), width) if padding == "left" else slice(0, len(prompt))
        ids[row, place], mask[row, place] = prompt, 1
    batch = kangaroo(target(), adapter(), ids, 15, attention_mask=mask)
    assert [r.tokens for r in batch] == [autoregressive(target(), p, 15).tokens for p in prompts]


def test_a_2d_tensor_with_several_rows_is_a_batch_and_one_row_stays_a_single_prompt():
    ids = prompts_of([7, 7], seed=9)
    stacked = torch.stack(ids)
    assert len(autoregressive(target(), stacked, 5)) == 2
    assert autoregressive(target(), stacked[:1], 5).tokens == autoregressive(target(), ids[0], 5).tokens


def test_cost_aware_drafting_and_adaptive_draft_lengths_work_per_row():
    prompts = prompts_of([2, 40, 9], seed=10)
    curve = {1: 1.0, 2: 1.3, 3: 1.9}
    for batch, alone in [
        (kangaroo(target(), adapter(), prompts, 20, cost_curve=curve),
         [kangaroo(target(), adapter(), p, 20, cost_curve=curve) for p in prompts]),
        (speculative(target(), draft(), prompts, 20, adaptive_draft=True),
         [speculative(target(), draft(), p, 20, adaptive_draft=True) for p in prompts]),
    ]:
        assert [[s.drafted for s in r.steps] for r in batch] == [[s.drafted for s in a.steps] for a in alone]


def test_draft_backoff_pauses_each_row_as_it_would_alone():
    """Verification this dear leaves most drafts unverified: rows pause drafting, all of them at once at times."""
    prompts = prompts_of([2, 40, 9, 17], seed=11)
    curve = {1: 1.0, 2: 1.6, 3: 2.4}
    batch = kangaroo(target(), adapter(), prompts, 30, threshold=0.0, cost_curve=curve)
    for prompt, row in zip(prompts, batch, strict=True):
        alone = kangaroo(target(), adapter(), prompt, 30, threshold=0.0, cost_curve=curve)
        assert [(s.drafted, s.accepted, s.emitted, s.info["draft_stop"]) for s in row.steps] == \
            [(s.drafted, s.accepted, s.emitted, s.info["draft_stop"]) for s in alone.steps]
        assert row.tokens == autoregressive(target(), prompt, 30).tokens
    stops = [[s.info["draft_stop"] for s in row.steps] for row in batch]
    assert all("backoff" in row for row in stops)
    assert any(all(row[i] == "backoff" for row in stops) for i in range(min(map(len, stops))))


# ---------------------------------------------------------------- copy drafts: each row copies its own context


def repetitive_prompts(count: int, vocab: int = 64, seed: int = 0) -> list[torch.Tensor]:
    """Prompts that repeat a phrase of their own, so that copies are proposed."""
    generator = torch.Generator().manual_seed(seed)
    phrases = [torch.randint(3, vocab, (int(length),), generator=generator)
               for length in torch.randint(3, 7, (count,), generator=generator)]
    return [torch.cat([phrase] * 3 + [phrase[:2]]) for phrase in phrases]


def remaining_before(result, budget: int) -> list[int]:
    """The token budget each round of a result started with."""
    emitted = [0] + [len(step.emitted) for step in result.steps]
    return [budget - sum(emitted[: i + 1]) for i in range(len(result.steps))]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cost_curve", [None, {1: 1.0, 2: 1.3, 3: 1.9}], ids=["no-curve", "cost-curve"])
def test_rows_copy_their_own_context_as_they_would_alone(cost_curve, family):
    """Repetitive and fresh prompts in one batch: every row copies, drafts after its copies, pauses and
    is cut by the cost model as it would alone, and is token-identical to autoregressive decoding."""
    prompts = repetitive_prompts(3, seed=1) + prompts_of([2, 40, 9], seed=10)
    options = dict(max_draft_tokens=4, threshold=0.0, cost_curve=cost_curve)
    batch = kangaroo(target(family), adapter(family), prompts, 30, **options)
    for prompt, row in zip(prompts, batch, strict=True):
        alone = kangaroo(target(family), adapter(family), prompt, 30, **options)
        assert [(s.drafted, s.accepted, s.emitted, s.info["copied"], s.info["draft_stop"]) for s in row.steps] == \
            [(s.drafted, s.accepted, s.emitted, s.info["copied"], s.info["draft_stop"]) for s in alone.steps]
        for ours, its in zip(row.steps, alone.steps, strict=True):
            assert ours.info["confidences"] == pytest.approx(its.info["confidences"], abs=1e-4)
            assert ours.draft_probs == pytest.approx(its.draft_probs, abs=1e-4)
        assert row.target_forwards == alone.target_forwards
        assert row.tokens == autoregressive(target(family), prompt, 30).tokens
    steps = [step for row in batch for step in row.steps]
    assert sum(any(step.info["copied"] for step in row.steps) for row in batch) >= 3
    assert all(step.draft_probs[: step.info["copied"]] == [1.0] * step.info["copied"] for step in steps)
    assert any(0 < step.info["copied"] < len(step.drafted) for step in steps), "the adapter drafts after a copy"
    if cost_curve is not None:  # a row whose drafting is paused still copies (nothing drafted after the copy)
        assert any(step.info["draft_stop"] == "backoff" for step in steps)
        assert any(step.info["draft_stop"] == "copy" and len(step.drafted) < left - 1
                   for row in batch for step, left in zip(row.steps, remaining_before(row, 30), strict=True))


@pytest.mark.parametrize("cost_curve", [None, {1: 1.0, 2: 1.3, 3: 1.9}], ids=["no-curve", "cost-curve"])
def test_sampled_rows_with_copies_are_their_prompts_sampled_alone_with_their_seeds(cost_curve):
    """Row i with `seed + i` draws what its prompt alone draws with that seed: nothing is sampled for a copy."""
    prompts = repetitive_prompts(3, seed=1) + prompts_of([2, 40, 9], seed=10)
    models = target(sharpness=8.0), adapter(sharpness=8.0)
    options = dict(max_draft_tokens=4, threshold=0.0, temperature=1.0, cost_curve=cost_curve)
    for seed in (0, 10):
        batch = kangaroo(*models, prompts, 30, seed=seed, **options)
        for i, (prompt, row) in enumerate(zip(prompts, batch, strict=True)):
            alone = kangaroo(*models, prompt, 30, seed=seed + i, **options)
            assert [(s.drafted, s.accepted, s.emitted, s.info["copied"]) for s in row.steps] == \
                [(s.drafted, s.accepted, s.emitted, s.info["copied"]) for s in alone.steps]
        assert sum(step.info["copied"] for row in batch for step in row.steps) > 0


def test_the_copy_options_reach_every_row():
    prompts = repetitive_prompts(3, seed=2)
    off = kangaroo(target(), adapter(), prompts, 20, copy_drafts=False)
    short = kangaroo(target(), adapter(), prompts, 20, max_copy_tokens=2, min_match=3)
    for prompt, no_copies, copies in zip(prompts, off, short, strict=True):
        assert all(step.info["copied"] == 0 for step in no_copies.steps)
        assert [s.drafted for s in no_copies.steps] == \
            [s.drafted for s in kangaroo(target(), adapter(), prompt, 20, copy_drafts=False).steps]
        assert [s.drafted for s in copies.steps] == \
            [s.drafted for s in kangaroo(target(), adapter(), prompt, 20, max_copy_tokens=2, min_match=3).steps]
        assert no_copies.tokens == copies.tokens == autoregressive(target(), prompt, 20).tokens
    assert max(step.info["copied"] for row in short for step in row.steps) == 2


# ---------------------------------------------------------------- the layout: holes are invisible


def test_layout_left_pads_prompts_and_keeps_their_last_tokens_apart():
    layout = RaggedLayout([torch.tensor([5, 6, 7]), torch.tensor([9])])
    assert layout.tokens.tolist() == [[5, 6], [0, 0]]
    assert layout.valid.tolist() == [[True, True], [False, False]]
    assert layout.last.tolist() == [[7], [9]]
    assert layout.lengths().tolist() == [2, 0]
    assert layout.block_positions(2).tolist() == [[2, 3], [0, 1]]


def test_rejected_columns_become_holes_that_positions_skip_and_crop_removes_at_the_end():
    layout = RaggedLayout([torch.tensor([5, 6, 7]), torch.tensor([8, 9])])
    layout.append(torch.tensor([[7, 1, 2], [9, 3, 4]]), torch.tensor([[True, True, False], [True, False, False]]))
    assert layout.lengths().tolist() == [4, 2]
    assert layout.positions(0).tolist() == [[0, 1, 2, 3, 4], [0, 0, 1, 2, 2]]
    assert layout.crop() == 4  # the last column is no row's
    layout.select(torch.tensor([1]))
    assert layout.crop() == 3 and layout.tokens.tolist() == [[0, 8, 9]]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_pass_over_a_layout_with_holes_gives_each_row_its_own_logits(family):
    """The core invariant: padding and rejected columns change nothing for the row they belong to."""
    model = target(family)
    rows = prompts_of([6, 2, 9], seed=11)
    layout = RaggedLayout(rows)
    junk = torch.randint(3, 64, (3, 4), generator=torch.Generator().manual_seed(0))
    keep = torch.tensor([[True, True, False, False], [True, False, False, False], [True, True, True, False]])
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        ids, positions, mask = layout.pass_inputs(0, torch.cat([layout.last, junk[:, :3]], 1),
                                                  torch.ones(3, 4, dtype=torch.bool))
        model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
        layout.append(torch.cat([layout.last, junk[:, :3]], 1), keep)
        layout.last = junk[:, 3:]
        ids, positions, mask = layout.pass_inputs(cache.get_seq_length(), layout.last,
                                                  torch.ones(3, 1, dtype=torch.bool))
        batched = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache).logits[:, -1]
        for row, prompt in enumerate(rows):
            kept = torch.cat([prompt, junk[row, :3][keep[row, 1:]], junk[row, 3:]])
            alone = model(input_ids=kept.unsqueeze(0)).logits[0, -1]
            torch.testing.assert_close(batched[row], alone, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- sampling: the target's distribution per row


@pytest.mark.parametrize("method", ["speculative", "kangaroo"])
def test_sampling_keeps_the_target_distribution_in_every_row(method):
    """Chi-square test of each row's first two tokens; rows of one batch have different prompts."""
    vocab, runs, prompts = 8, 1500, [[1, 2, 3], [4, 5, 6, 7, 1, 2]]
    model = target("llama", vocab, None, 4.0)
    samples: list[list[tuple[int, int]]] = [[], []]
    for seed in range(runs):
        if method == "speculative":
            batch = speculative(model, draft("llama", vocab, 4.0), prompts, 2, num_draft_tokens=2, temperature=1.0,
                                seed=seed * 2)
        else:
            batch = kangaroo(model, adapter("llama", vocab, None, 4.0), prompts, 2, max_draft_tokens=2,
                             threshold=0.0, temperature=1.0, seed=seed * 2)
        for row, result in enumerate(batch):
            samples[row].append(tuple(result.tokens))
    for row, prompt in enumerate(prompts):
        exact = exact_two_token_distribution(model, prompt, 1.0, 1.0)
        assert chi_square_pvalue(samples[row], exact) > 1e-3


def test_sampling_with_copies_keeps_the_target_distribution_in_every_row():
    """Each row's first round copies one token of its prompt (a point-mass draft) and the adapter drafts one
    more after it; chi-square test of each row's first two tokens (false alarm rate 1e-3, seeds fixed)."""
    vocab, runs, prompts = 8, 1500, [[1, 2, 3, 1, 2], [4, 5, 6, 7, 4, 5]]
    model = target("llama", vocab, None, 4.0)
    samples: list[list[tuple[int, int]]] = [[], []]
    accepted = [0, 0]  # first rounds whose copy was accepted, per row
    for seed in range(runs):
        batch = kangaroo(model, adapter("llama", vocab, None, 4.0), prompts, 3, max_draft_tokens=1, threshold=0.0,
                         max_copy_tokens=1, temperature=1.0, seed=seed * 2)
        for row, result in enumerate(batch):
            first = result.steps[0]
            assert first.info["copied"] == 1 and len(first.drafted) == 2, "every first round copies, then drafts"
            accepted[row] += min(first.accepted, 1)
            samples[row].append(tuple(result.tokens[:2]))
    for row, prompt in enumerate(prompts):
        assert 0.05 < accepted[row] / runs < 0.95, "both the accept and the reject path are exercised"
        exact = exact_two_token_distribution(model, prompt, 1.0, 1.0)
        assert chi_square_pvalue(samples[row], exact) > 1e-3


# ---------------------------------------------------------------- bad input


def test_bad_batches_get_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        autoregressive(target(), [], 5)
    with pytest.raises(ValueError, match="prompt 0 of the batch: the prompt is empty"):
        autoregressive(target(), [torch.tensor([], dtype=torch.long), torch.tensor([3])], 5)
    with pytest.raises(ValueError, match="prompt 1 of the batch"):
        kangaroo(target(), adapter(), [torch.tensor([3, 4]), torch.tensor([3, 999])], 5)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        speculative(target(), draft(), torch.ones(2, 4, dtype=torch.long), 5, attention_mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="list of prompts"):
        autoregressive(target(), [torch.tensor([3])], 5, attention_mask=torch.ones(1, 1))
    with pytest.raises(ValueError, match="KV cache"):
        autoregressive(target(), [torch.tensor([3])], 5, use_cache=False)
    with pytest.raises(ValueError, match="on_round"):
        kangaroo(target(), adapter(), [torch.tensor([3])], 5, on_round=lambda *_: None)
