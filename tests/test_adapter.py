"""The Kangaroo adapter: its shape, saving and loading with the right target, and its training."""

from __future__ import annotations

import functools
import json
from collections import Counter

import pytest
import torch
from helpers import tiny_model

from kangaroo_lite.adapter.model import KangarooAdapter, fingerprints_match, target_fingerprint
from kangaroo_lite.adapter.training import draft_vocabulary, encode_corpus, evaluate_drafter, train_adapter
from kangaroo_lite.adapter.vocab import rank_draft_vocab
from kangaroo_lite.decoding.autoregressive import autoregressive
from kangaroo_lite.decoding.kangaroo import kangaroo
from kangaroo_lite.models.corpus import ASSISTANT, EOS, format_example, training_corpus
from kangaroo_lite.models.cpu_kernels import TunedLinear
from kangaroo_lite.models.tokenizer import train_tokenizer

torch.set_num_threads(1)


def tiny_target(
    family: str = "llama", layers: int = 3, vocab: int = 64, seed: int = 0, sharpness: float = 30.0
) -> torch.nn.Module:
    """A random tiny target with GQA (4 query heads, 2 KV heads); its LM head is scaled to peak the outputs."""
    return tiny_model(family, layers, vocab=vocab, seed=seed, sharpness=sharpness, eos=None, max_positions=512)


# ---------------------------------------------------------------- shape and initialisation


def test_the_adapter_is_one_attention_block_with_two_norms_and_no_mlp_nor_head():
    target = tiny_target()
    adapter = KangarooAdapter.from_target(target, 1)
    names = {name for name, _ in adapter.named_parameters()}
    assert names == {
        "input_layernorm.weight",
        "norm.weight",
        "self_attn.q_proj.weight",
        "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",
        "self_attn.o_proj.weight",
    }
    hidden, kv = 32, 2 * 8  # 2 key/value heads of dimension 8
    assert adapter.num_parameters() == 2 * hidden * hidden + 2 * hidden * kv + 2 * hidden
    assert adapter.fraction_of(target) == pytest.approx(adapter.num_parameters() / target.num_parameters())
    assert adapter.fraction_of(target) < 0.2


def test_a_qwen2_adapter_keeps_the_qkv_biases_of_its_family():
    adapter = KangarooAdapter.from_target(tiny_target("qwen2"), 2)
    names = {name for name, _ in adapter.named_parameters()}
    assert {"self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"} <= names
    assert type(adapter.self_attn).__name__ == "Qwen2Attention"


def test_a_fresh_adapter_starts_from_the_exit_layers_attention_and_the_final_norm():
    target = tiny_target()
    with torch.no_grad():
        target.model.norm.weight.uniform_(0.5, 1.5)  # so that the copy is visible
    adapter = KangarooAdapter.from_target(target, 2)
    layer = target.model.layers[2]
    for name, tensor in layer.self_attn.state_dict().items():
        assert torch.equal(adapter.self_attn.state_dict()[name], tensor)
    assert torch.equal(adapter.input_layernorm.weight, layer.input_layernorm.weight)
    assert torch.equal(adapter.norm.weight, target.model.norm.weight)
    random = KangarooAdapter.from_target(target, 2, init="random")
    assert not torch.equal(random.self_attn.q_proj.weight, layer.self_attn.q_proj.weight)
    with pytest.raises(ValueError, match="init"):
        KangarooAdapter.from_target(target, 2, init="zeros")


def test_the_adapter_trains_separately_from_the_target():
    target = tiny_target()
    adapter = KangarooAdapter.from_target(target, 1)
    assert all(a.data_ptr() != t.data_ptr() for a in adapter.parameters() for t in target.parameters())


# ---------------------------------------------------------------- saving and loading


def test_save_and_load_round_trip_gives_identical_outputs(tmp_path):
    target = tiny_target()
    adapter = KangarooAdapter.from_target(target, 2, init="random")
    adapter.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"model.safetensors", "adapter_config.json"}
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["exit_layer"] == 2
    assert config["target"]["model_type"] == "llama"
    assert (config["target"]["hidden_size"], config["target"]["num_hidden_layers"], config["target"]["vocab_size"]) == (
        32,
        3,
        64,
    )
    assert len(config["target_fingerprint"]) == 64
    loaded = KangarooAdapter.from_pretrained(tmp_path, target)
    assert loaded.exit_layer == 2
    for name, tensor in adapter.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    before = kangaroo(target, adapter, [1, 2, 3], 20, threshold=0.3)
    after = kangaroo(target, loaded, [1, 2, 3], 20, threshold=0.3)
    assert before.tokens == after.tokens
    assert [s.info["confidences"] for s in before.steps[1:]] == [s.info["confidences"] for s in after.steps[1:]]


def test_an_adapter_with_an_mlp_is_a_whole_decoder_layer_that_saves_loads_and_decodes_losslessly(tmp_path):
    target = tiny_target()
    adapter = KangarooAdapter.from_target(target, 1, mlp=True)
    layer = target.model.layers[1]
    assert adapter.num_parameters() == sum(p.numel() for p in layer.parameters()) + target.model.norm.weight.numel()
    assert torch.equal(adapter.mlp.down_proj.weight, layer.mlp.down_proj.weight)  # copied, like the attention
    plain = KangarooAdapter.from_target(target, 1)
    exited = torch.randn(1, 4, 32)
    rope = target.model.rotary_emb(exited, torch.arange(4).unsqueeze(0))
    with torch.no_grad():
        assert not torch.allclose(adapter(exited, rope), plain(exited, rope))  # the MLP does add something
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(0.05 * torch.randn_like(p))
    adapter.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["mlp"] is True
    loaded = KangarooAdapter.from_pretrained(tmp_path, target)
    assert loaded.has_mlp and all(torch.equal(loaded.state_dict()[k], v) for k, v in adapter.state_dict().items())
    base = autoregressive(target, [1, 2, 3], 20).tokens
    assert kangaroo(target, loaded, [1, 2, 3], 20, threshold=0.0).tokens == base
    assert kangaroo(target, loaded, [[1, 2, 3], [4, 5]], 20, threshold=0.0)[0].tokens == base  # a batch too


def test_loading_with_a_target_of_other_weights_raises(tmp_path):
    KangarooAdapter.from_target(tiny_target(seed=0), 1).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="another target.*different weights"):
        KangarooAdapter.from_pretrained(tmp_path, tiny_target(seed=1))


@pytest.mark.parametrize("other", [dict(layers=4), dict(vocab=80), dict(family="qwen2")])
def test_loading_with_a_target_of_another_shape_raises(tmp_path, other):
    KangarooAdapter.from_target(tiny_target(), 1).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="another target"):
        KangarooAdapter.from_pretrained(tmp_path, tiny_target(**other))


def test_loading_from_a_folder_without_an_adapter_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        KangarooAdapter.from_pretrained(tmp_path, tiny_target())


def test_the_fingerprint_survives_a_change_of_float_type_but_not_of_weights():
    target = tiny_target()
    fingerprint = target_fingerprint(target)
    for dtype in (torch.float16, torch.bfloat16):
        assert fingerprints_match(fingerprint, target_fingerprint(tiny_target().to(dtype)))
    assert not fingerprints_match(fingerprint, target_fingerprint(tiny_target(seed=1)))


# ---------------------------------------------------------------- training


@functools.cache
def corpus_and_tokenizer():
    corpus = training_corpus(60, seed=3)
    return corpus, train_tokenizer([format_example(e) for e in corpus], vocab_size=300)


def test_the_loss_mask_covers_exactly_the_reply_tokens_and_their_eos():
    corpus, tokenizer = corpus_and_tokenizer()
    example = [("Hi there", "Hello again"), ("How are you?", "Fine.")]
    ((ids, mask),) = encode_corpus(tokenizer, [example])
    predicted = ids[1:][mask[:-1]]  # the tokens the masked positions are trained to predict
    assert tokenizer.decode(predicted) == f"Hello again{EOS}Fine.{EOS}"
    tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    assert tokens[int(mask.nonzero()[0])] == ASSISTANT  # the first prediction is made at <|assistant|>
    assert not mask[-1]


def test_strings_and_examples_give_the_same_training_data():
    corpus, tokenizer = corpus_and_tokenizer()
    a = encode_corpus(tokenizer, corpus[:5])
    b = encode_corpus(tokenizer, [format_example(e) for e in corpus[:5]])
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))


def test_training_reduces_the_held_out_loss_and_changes_only_the_adapter():
    corpus, tokenizer = corpus_and_tokenizer()
    target = tiny_target(vocab=len(tokenizer))
    before = {name: tensor.clone() for name, tensor in target.state_dict().items()}
    records = []
    adapter, history = train_adapter(
        target,
        tokenizer,
        corpus,
        1,
        steps=30,
        batch_size=4,
        lr=3e-3,
        warmup=5,
        eval_every=10,
        progress=False,
        max_length=128,
        callback=records.append,
    )
    assert [r["step"] for r in history] == [0, 10, 20, 30]
    assert records == history
    assert set(history[-1]) == {"step", "train_loss", "held_out_loss", "top1", "acceptance", "lr"}
    assert history[-1]["held_out_loss"] < history[0]["held_out_loss"] - 0.02
    assert history[-1]["acceptance"] > history[0]["acceptance"]
    assert all(torch.equal(before[name], tensor) for name, tensor in target.state_dict().items())
    assert all(p.requires_grad for p in target.parameters())  # restored after training
    assert not adapter.training
    # The trained adapter is still lossless, and drafts better.
    prompt = encode_corpus(tokenizer, corpus[:1])[0][0][:20]
    untrained = KangarooAdapter.from_target(target, 1)
    trained = kangaroo(target, adapter, prompt, 24)
    assert trained.tokens == kangaroo(target, untrained, prompt, 24).tokens
    held_out = corpus[-10:]
    assert (
        evaluate_drafter(target, tokenizer, held_out, 1, adapter)["acceptance"]
        > evaluate_drafter(target, tokenizer, held_out, 1, untrained)["acceptance"]
    )


def test_training_is_reproducible_with_a_seed():
    corpus, tokenizer = corpus_and_tokenizer()
    target = tiny_target(vocab=len(tokenizer))
    run = functools.partial(
        train_adapter,
        target,
        tokenizer,
        corpus[:20],
        1,
        steps=4,
        batch_size=4,
        eval_every=2,
        progress=False,
        max_length=64,
    )
    assert run(seed=1)[1] == run(seed=1)[1]


def test_evaluating_without_an_adapter_exits_straight_into_the_head():
    corpus, tokenizer = corpus_and_tokenizer()
    target = tiny_target(vocab=len(tokenizer))
    metrics = evaluate_drafter(target, tokenizer, corpus[:5], 2)
    assert set(metrics) == {"held_out_loss", "top1", "acceptance"}
    assert 0 <= metrics["top1"] <= 1 and 0 <= metrics["acceptance"] <= 1


def test_training_rejects_bad_input():
    corpus, tokenizer = corpus_and_tokenizer()
    target = tiny_target(vocab=len(tokenizer))
    with pytest.raises(ValueError, match="exit_layer"):
        train_adapter(target, tokenizer, corpus, 3, steps=1, progress=False)
    with pytest.raises(ValueError, match="exits after layer 2"):
        train_adapter(
            target, tokenizer, corpus, 1, steps=1, progress=False, adapter=KangarooAdapter.from_target(target, 2)
        )
    with pytest.raises(ValueError, match="at least 2"):
        train_adapter(target, tokenizer, corpus[:1], 1, steps=1, progress=False)
    with pytest.raises(ValueError, match="steps"):
        train_adapter(target, tokenizer, corpus, 1, steps=0, progress=False)
    with pytest.raises(ValueError, match="another target"):
        train_adapter(
            target,
            tokenizer,
            corpus,
            1,
            steps=1,
            progress=False,
            adapter=KangarooAdapter.from_target(tiny_target(layers=4, vocab=len(tokenizer)), 1),
        )


# ---------------------------------------------------------------- the draft vocabulary


def test_the_draft_vocabulary_ranks_reply_tokens_by_frequency_and_keeps_eos():
    counts = Counter({7: 5, 3: 5, 9: 2, 1: 1})
    assert rank_draft_vocab(counts, 2) == [3, 7]  # ties broken by id
    assert rank_draft_vocab(counts, 2, always=[0]) == [0, 3, 7]
    assert rank_draft_vocab(counts, 10) == [1, 3, 7, 9]  # fewer tokens than asked for
    with pytest.raises(ValueError, match="size"):
        rank_draft_vocab(counts, 0)
    corpus, tokenizer = corpus_and_tokenizer()
    vocab = draft_vocabulary(tokenizer, corpus, size=20)
    # The replies, tokenized on their own: what the ranking must have counted.
    replies = Counter(t for example in corpus for _, reply in example for t in tokenizer(reply)["input_ids"])
    assert tokenizer.eos_token_id in vocab and len(vocab) == 21
    assert set(vocab) - {tokenizer.eos_token_id} == {t for t, _ in replies.most_common(20)}
    with pytest.raises(ValueError, match="no reply tokens"):
        draft_vocabulary(tokenizer, ["a text without a reply"])


def test_agreement_is_measured_over_the_draft_vocabulary_the_decoder_uses():
    corpus, tokenizer = corpus_and_tokenizer()
    target = tiny_target(vocab=len(tokenizer))
    adapter = KangarooAdapter.from_target(target, 1)
    full = evaluate_drafter(target, tokenizer, corpus[:10], 1, adapter)
    adapter.set_draft_vocab(range(len(tokenizer)))
    assert evaluate_drafter(target, tokenizer, corpus[:10], 1, adapter) == pytest.approx(full)
    adapter.set_draft_vocab([tokenizer.eos_token_id])  # can only ever draft EOS
    narrow = evaluate_drafter(target, tokenizer, corpus[:10], 1, adapter)
    assert narrow["held_out_loss"] == pytest.approx(full["held_out_loss"])  # the training objective: all tokens
    assert narrow["top1"] < full["top1"] and narrow["acceptance"] < full["acceptance"]


def test_training_with_a_draft_vocab_size_gives_the_adapter_its_vocabulary():
    corpus, tokenizer = corpus_and_tokenizer()
    target = tiny_target(vocab=len(tokenizer))
    adapter, _ = train_adapter(target, tokenizer, corpus, 1, steps=2, batch_size=4, eval_every=2, progress=False,
                               max_length=64, draft_vocab_size=30)
    assert adapter.draft_vocab is not None and len(adapter.draft_vocab) <= 31
    assert tokenizer.eos_token_id in adapter.draft_vocab.tolist()
    with pytest.raises(ValueError, match="draft_vocab_size"):
        train_adapter(target, tokenizer, corpus, 1, steps=1, progress=False, draft_vocab_size=0)


def test_a_draft_vocabulary_survives_saving_and_loading(tmp_path):
    target = tiny_target()
    adapter = KangarooAdapter.from_target(target, 1, init="random")
    adapter.set_draft_vocab([9, 2, 40, 5])
    assert adapter.draft_vocab.tolist() == [2, 5, 9, 40]
    assert adapter.to(torch.bfloat16).draft_vocab.dtype == torch.long  # ids stay ids under a float type change
    adapter.to(torch.float32)
    assert adapter.num_parameters() == KangarooAdapter.from_target(target, 1).num_parameters()  # ids, not weights
    adapter.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["draft_vocab_size"] == 4
    loaded = KangarooAdapter.from_pretrained(tmp_path, target)
    assert loaded.draft_vocab.tolist() == [2, 5, 9, 40]
    result = kangaroo(target, loaded, [1, 2, 3], 20, threshold=0.0)
    # the adapter drafts from its vocabulary; copies from the context may hold any token
    assert all(token in (2, 5, 9, 40) for step in result.steps for token in step.drafted[step.info["copied"]:])
    adapter.set_draft_vocab(None)
    adapter.save_pretrained(tmp_path / "full")
    full = KangarooAdapter.from_pretrained(tmp_path / "full", target)
    assert full.draft_vocab is None
    full.load_state_dict(loaded.state_dict())  # weights move freely between adapters with and without one


@pytest.mark.parametrize(
    ("token_ids", "message"),
    [([], "non-empty"), ([[1, 2]], "1-D"), ([1.0, 2.0], "token ids"), ([1, 64], r"\[0, 63\]"), ([-1], r"\[0, 63\]"),
     ([True, False], "token ids"), ([3, 3], "repeats")],
)
def test_a_bad_draft_vocabulary_is_rejected(token_ids, message):
    adapter = KangarooAdapter.from_target(tiny_target(), 1)
    with pytest.raises(ValueError, match=message):
        adapter.set_draft_vocab(token_ids)


def test_the_draft_heads_rows_are_gathered_once_per_head_and_vocabulary():
    target = tiny_target()
    adapter = KangarooAdapter.from_target(target, 1)
    head = target.lm_head
    assert adapter.draft_head(head) is head  # no vocabulary: the whole head, not a copy
    adapter.set_draft_vocab([3, 1, 8])
    rows = adapter.draft_head(head)
    assert torch.equal(rows.weight, head.weight[[1, 3, 8]]) and rows.bias is None
    assert adapter.draft_head(head) is rows  # kept for the next generation
    hidden = torch.randn(2, head.in_features)
    assert torch.allclose(rows(hidden), head(hidden)[:, [1, 3, 8]], atol=1e-6)
    adapter.set_draft_vocab([2, 4])
    assert torch.equal(adapter.draft_head(head).weight, head.weight[[2, 4]])
    other = tiny_target(seed=1).lm_head
    assert torch.equal(adapter.draft_head(other).weight, other.weight[[2, 4]])


def test_the_draft_heads_rows_take_a_tuned_heads_kernels():
    target = tiny_target()
    adapter = KangarooAdapter.from_target(target, 1)
    head = TunedLinear(target.lm_head, {1: ("stock", 1), 2: ("pair", 2)})
    adapter.set_draft_vocab([3, 1, 8])
    rows = adapter.draft_head(head)
    assert isinstance(rows, TunedLinear) and rows.plan is head.plan
    with torch.inference_mode():
        hidden = torch.randn(2, head.in_features)
        assert torch.allclose(rows(hidden), head(hidden)[:, [1, 3, 8]], atol=1e-5)
