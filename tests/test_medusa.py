"""Medusa-1 heads (the model, its training on final-layer features) and Medusa decoding: lossless, as a tree."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from helpers import FALSE_ALARM, chi_square_pvalue, exact_two_token_distribution, tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st

import kangaroo_lite as kl
from kangaroo_lite.adapter.features import FeatureExample, FeatureShards, precompute_features
from kangaroo_lite.adapter.medusa import MedusaHeads, medusa1_parameters
from kangaroo_lite.adapter.medusa_training import _offset_rows, train_medusa_heads
from kangaroo_lite.adapter.training import encode_corpus
from kangaroo_lite.decoding.medusa import medusa, product_tree
from kangaroo_lite.models.corpus import MIXTURES, training_corpus

FAMILIES = ["llama", "qwen2", "mistral"]
PADDED = {1: 1.0, 2: 1.6, 3: 2.0, 4: 1.4, 6: 1.9}  # verification over 2-3 tokens padded to 4

pytestmark = pytest.mark.usefixtures("one_thread")


def noisy_heads(target, num_heads: int = 3, seed: int = 1, **kwargs) -> MedusaHeads:
    """Heads with random residual blocks: drafts sometimes right, sometimes wrong."""
    heads = MedusaHeads.from_target(target, num_heads, **kwargs)
    torch.manual_seed(seed)
    with torch.no_grad():
        for block in heads.blocks:
            block.linear.weight.normal_(0, 0.3)
    return heads


def test_an_untrained_head_is_the_targets_own_head_and_the_weights_are_counted():
    target = tiny_model("llama", hidden=32, vocab=64)
    state = torch.randn(5, 32)
    for own in (True, False):
        heads = MedusaHeads.from_target(target, 3, own_lm_head=own)
        logits = heads(state, target)
        assert logits.shape == (5, 3, 64)
        for k in range(3):
            torch.testing.assert_close(logits[:, k], target.lm_head(state))
    assert MedusaHeads.from_target(target, 3).num_parameters() == 3 * (32 * 32 + 32 + 64 * 32)
    assert MedusaHeads.from_target(target, 3, own_lm_head=False).num_parameters() == 3 * (32 * 32 + 32)
    assert medusa1_parameters(target, 3) == 3 * (32 * 32 + 32 + 64 * 32)


def test_a_draft_vocabulary_confines_the_heads_to_its_tokens():
    target = tiny_model("llama")
    vocab = [1, 5, 9, 30]
    for own in (True, False):
        heads = noisy_heads(target, 2, own_lm_head=own, draft_vocab=vocab)
        logits = heads.vocab_logits(torch.randn(3, 32), target)
        assert logits.shape == (3, 2, 64)
        assert torch.isfinite(logits[..., vocab]).all() and torch.isinf(logits).sum() == 3 * 2 * (64 - 4)


def test_saved_heads_load_back_for_their_target_only(tmp_path):
    target = tiny_model("llama")
    heads = noisy_heads(target, 2, draft_vocab=[1, 2, 3, 7])
    heads.save_pretrained(tmp_path / "heads")
    config = json.loads((tmp_path / "heads" / "medusa_config.json").read_text())
    assert config["num_heads"] == 2 and config["own_lm_head"] and config["draft_vocab_size"] == 4
    loaded = MedusaHeads.from_pretrained(tmp_path / "heads", target)
    state = torch.randn(4, 32)
    torch.testing.assert_close(loaded(state, target), heads(state, target), atol=2e-2, rtol=2e-2)  # saved in fp16
    with pytest.raises(ValueError, match="trained for another target"):
        MedusaHeads.from_pretrained(tmp_path / "heads", tiny_model("llama", seed=5))
    with pytest.raises(FileNotFoundError, match="not saved Medusa heads"):
        MedusaHeads.from_pretrained(tmp_path, target)
    with pytest.raises(ValueError, match="num_heads must be a positive integer"):
        MedusaHeads(target, 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(0.01, 1.0), min_size=1, max_size=3), min_size=1, max_size=3),
       st.integers(1, 12))
def test_the_product_tree_holds_the_most_valuable_paths_each_after_its_parent(depth_probs, max_nodes):
    candidates = [(list(range(10 * d, 10 * d + len(p))), sorted(p, reverse=True)) for d, p in enumerate(depth_probs)]
    tree, values = product_tree(candidates, max_nodes)
    paths = [path for depth in range(1, len(candidates) + 1)
             for path in itertools.product(*[range(len(p)) for _, p in candidates[:depth]])]
    value_of = {path: torch.tensor([candidates[d][1][r] for d, r in enumerate(path)]).prod().item() for path in paths}
    best = sorted(value_of.values(), reverse=True)[: len(tree)]
    assert len(tree) == min(max_nodes, len(paths))
    assert values == pytest.approx(best, rel=1e-5)
    assert all(parent < node for node, parent in enumerate(tree.parents))
    for node, value in enumerate(values):  # token 10 d + r: the candidate of rank r at depth d
        tokens = tree.path_tokens(node)
        assert [t // 10 for t in tokens] == list(range(len(tokens)))
        assert value == pytest.approx(torch.tensor([candidates[t // 10][1][t % 10] for t in tokens]).prod().item())


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_medusa_reproduces_autoregressive_decoding(family):
    target = tiny_model(family, layers=2, sharpness=4.0)
    heads = noisy_heads(target)
    offered = branched = 0
    for seed, curve in itertools.product(range(3), (None, PADDED)):
        prompt = torch.randint(3, 64, (1, 6), generator=torch.Generator().manual_seed(seed))
        expected = kl.autoregressive(target, prompt, 24).tokens
        result = medusa(target, heads, prompt, 24, top_k=3, max_nodes=8, cost_curve=curve)
        assert result.tokens == expected
        offered += sum(len(s.drafted) > 0 for s in result.steps)
        branched += sum(s.info.get("tree_nodes", 0) > s.info.get("tree_depth", 0) for s in result.steps)
    assert offered and branched  # trees were verified, and they branched


def test_trained_tiny_heads_decode_identically_and_accept_drafts():
    tokenizer, target, _, _ = kl.load_default()
    heads = kl.load_medusa_heads(target)
    prompt = kl.encode_chat(tokenizer, "What is 12 plus 7?")
    result = medusa(target, heads, prompt, 40)
    assert result.tokens == kl.autoregressive(target, prompt, 40).tokens
    assert result.mean_accepted > 1.5


@pytest.mark.parametrize(("temperature", "top_p", "curve"), [(1.0, 1.0, None), (0.7, 0.9, None), (1.0, 1.0, PADDED)])
def test_sampling_keeps_the_target_distribution(temperature, top_p, curve):
    """Chi-square test of the first two tokens after the prefill's (a tree round decides both); false alarm 1e-3."""
    target = tiny_model("llama", layers=2, vocab=8, sharpness=30.0, eos=None)
    heads = noisy_heads(target, 2, seed=3)
    prompt, runs = [1, 2, 3], 1500
    first = exact_two_token_distribution(target, prompt, temperature, top_p)  # (x1, x2)
    samples, accepted = [], 0
    for seed in range(runs):
        result = medusa(target, heads, prompt, 3, top_k=2, max_nodes=4, temperature=temperature, top_p=top_p,
                        seed=seed, cost_curve=curve)
        samples.append(tuple(result.tokens[:2]))
        accepted += result.steps[1].accepted
    assert 0.05 < accepted / runs < 0.95, "both the accept and the reject path must be exercised"
    assert chi_square_pvalue(samples, first) > FALSE_ALARM


def test_bad_input_gets_a_clear_error():
    target = tiny_model("llama")
    heads = MedusaHeads.from_target(target, 2)
    with pytest.raises(ValueError, match="one prompt at a time"):
        medusa(target, heads, [[1, 2], [3, 4, 5]], 4)
    with pytest.raises(ValueError, match="top_k must be"):
        medusa(target, heads, [1, 2], 4, top_k=0)
    with pytest.raises(TypeError, match="heads must be MedusaHeads"):
        medusa(target, object(), [1, 2], 4)
    with pytest.raises(ValueError, match="built for another target"):
        medusa(tiny_model("llama", vocab=32), heads, [1, 2], 4)


def test_each_head_trains_against_the_target_at_its_own_offset():
    reply = torch.tensor([False, True, False, True, True, True])  # positions whose next token is a reply token
    example = FeatureExample(torch.arange(6), reply, torch.zeros(6, 4), torch.arange(4)[:, None], torch.zeros(4, 1))
    positions, rows = _offset_rows(example, 2)  # head 2: the state at t against the target at t + 2
    assert positions.tolist() == [1, 2, 3] and rows.tolist() == [1, 2, 3]
    positions, rows = _offset_rows(example, 1)
    assert positions.tolist() == [0, 2, 3, 4] and rows.tolist() == [0, 1, 2, 3]


def test_training_on_final_layer_features_raises_every_heads_agreement(tmp_path):
    tokenizer, target, _, _ = kl.load_default()
    examples = encode_corpus(tokenizer, training_corpus(160, seed=7, mixture=MIXTURES["fine-tuning"]))
    final = target.config.num_hidden_layers
    features = FeatureShards(precompute_features(target, examples, tmp_path / "features", [final], top_k=8,
                                                 progress=False), target, final)
    heads = MedusaHeads.from_target(target, 2, own_lm_head=False)
    heads, history = train_medusa_heads(target, features, heads, steps=80, lr=1e-2, held_out=32, eval_every=40,
                                        progress=False)
    assert [h["step"] for h in history] == [0, 40, 80]
    assert all(b < 0.05 for b in history[0]["top1_by_head"])  # an untrained head predicts the very next token
    assert all(a > 0.4 for a in history[-1]["top1_by_head"])
    with pytest.raises(ValueError, match="final hidden state"):
        train_medusa_heads(target, FeatureShards(precompute_features(target, examples[:40], tmp_path / "f1", [1],
                                                                     progress=False), target, 1), heads, steps=1)
