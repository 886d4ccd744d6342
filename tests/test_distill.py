"""Adapter training from precomputed features: shards written once, checked, and a loss that teaches."""

import json

import pytest
import torch
from helpers import tiny_model

from kangaroo_lite.adapter.distill import evaluate_on_features, soft_label_loss, train_adapter_on_features
from kangaroo_lite.adapter.features import FeatureShards, precompute_features


def examples(count=24, seed=0, vocab=64):
    generator = torch.Generator().manual_seed(seed)
    data = []
    for i in range(count):
        length = 8 + i % 9
        ids = torch.randint(3, vocab, (length,), generator=generator)
        mask = torch.zeros(length, dtype=torch.bool)
        mask[length // 2 : -1] = True  # positions that predict a reply token
        data.append((ids, mask))
    return data


@pytest.fixture(scope="module")
def target():
    return tiny_model(layers=4, vocab=64, seed=1, sharpness=3.0)


@pytest.fixture(scope="module")
def features(target, tmp_path_factory):
    out = tmp_path_factory.mktemp("features")
    return precompute_features(target, examples(), out, exit_layers=[1, 2], top_k=8, examples_per_shard=10,
                               batch_size=4, progress=False)


def test_shards_hold_every_example_with_the_target_states_and_top_k(target, features):
    manifest = json.loads((features / "manifest.json").read_text())
    assert [s["examples"] for s in manifest["shards"]] == [10, 10, 4]
    assert manifest["bytes_per_token"] > 0
    read = list(FeatureShards(features, target, 2).examples())
    assert len(read) == 24
    for (ids, mask), example in zip(examples(), read, strict=True):
        assert torch.equal(example.ids, ids) and torch.equal(example.predicts_reply, mask)
        with torch.no_grad():
            out = target.model(ids[None], output_hidden_states=True)
            logits = target.lm_head(out.last_hidden_state[0][mask])
        torch.testing.assert_close(example.exited.float(), out.hidden_states[2][0], atol=2e-3, rtol=1e-3)
        assert torch.equal(example.topk_ids[:, 0], logits.argmax(-1))
        assert example.topk_ids.shape == (int(mask.sum()), 8)


def test_features_are_refused_for_another_target_layer_or_missing_shard(target, features, tmp_path):
    with pytest.raises(ValueError, match="another target"):
        FeatureShards(features, tiny_model(layers=4, vocab=64, seed=9), 2)
    with pytest.raises(ValueError, match="exit layers"):
        FeatureShards(features, target, 3)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "manifest.json").write_text((features / "manifest.json").read_text())
    with pytest.raises(FileNotFoundError, match="lacks feature shards"):
        FeatureShards(partial, target, 2)
    with pytest.raises(ValueError, match="other settings"):
        precompute_features(target, examples(), features, exit_layers=[2], progress=False)


def test_a_resumed_run_keeps_finished_shards_and_adds_the_new_examples(target, tmp_path):
    out = tmp_path / "grow"
    first = precompute_features(target, examples(15), out, [2], top_k=4, examples_per_shard=10, progress=False)
    shard0 = (first / "features-00000.safetensors").stat().st_mtime_ns
    precompute_features(target, examples(24), out, [2], top_k=4, examples_per_shard=10, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["examples"] for s in manifest["shards"]] == [10, 10, 4] and manifest["examples"] == 24
    assert (out / "features-00000.safetensors").stat().st_mtime_ns == shard0  # kept, not recomputed
    read = list(FeatureShards(out, target, 2).examples())
    assert [len(e.ids) for e in read] == [len(ids) for ids, _ in examples(24)]
    with pytest.raises(ValueError, match="other settings"):
        precompute_features(target, examples(24, seed=5), out, [2], top_k=8, examples_per_shard=10, progress=False)


def test_soft_label_loss_ignores_tokens_outside_the_draft_vocabulary():
    log_q = torch.log_softmax(torch.tensor([[2.0, 0.0, -1.0]]), -1)
    p = torch.tensor([[0.5, 0.3, 0.2]])
    columns = torch.tensor([[0, -1, 2]])
    expected = -(0.5 / 0.7 * log_q[0, 0] + 0.2 / 0.7 * log_q[0, 2])
    torch.testing.assert_close(soft_label_loss(log_q, p, columns), expected)


def test_training_on_features_raises_agreement_over_no_adapter(target, features):
    shards = FeatureShards(features, target, 2)
    vocab = list(range(64))
    adapter, history = train_adapter_on_features(target, shards, vocab, steps=60, batch_size=4, lr=3e-3, warmup=5,
                                                 held_out=4, eval_every=30, progress=False)
    assert [h["step"] for h in history] == [0, 30, 60]
    assert history[-1]["held_out_loss"] < history[0]["held_out_loss"]
    assert adapter.draft_vocab.tolist() == vocab
    held = list(shards.examples())
    assert evaluate_on_features(target, adapter, held)["top1"] > evaluate_on_features(target, None, held)["top1"]
