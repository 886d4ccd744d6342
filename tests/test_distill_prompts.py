"""The self-distillation prompts: rebuilt exactly from their sources, balanced, and disjoint from Spec-Bench."""

import json
import re
from collections import Counter

import pytest

from kangaroo_lite.adapter.distill_prompts import MT_BENCH, PROMPTS_PATH, build_prompts, write_prompts
from kangaroo_lite.models.loading import DATA_DIR

SUBTASKS = ["mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag"]


@pytest.fixture(scope="module")
def prompts():
    return build_prompts()


def ngrams(text, n=8):
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_the_committed_file_is_build_prompts_byte_for_byte(tmp_path):
    write_prompts(tmp_path / "prompts.jsonl")
    assert (tmp_path / "prompts.jsonl").read_bytes() == PROMPTS_PATH.read_bytes()


def test_a_seed_fixes_the_prompts_and_another_seed_changes_them():
    assert build_prompts(per_subtask=20, seed=1) == build_prompts(per_subtask=20, seed=1)
    one, two = build_prompts(per_subtask=20, seed=1), build_prompts(per_subtask=20, seed=2)
    for subtask in SUBTASKS:
        texts = [{p["prompt"] for p in prompts if p["subtask"] == subtask} for prompts in (one, two)]
        assert texts[0] != texts[1], subtask


def test_subtasks_and_mt_bench_categories_are_balanced(prompts):
    assert Counter(p["subtask"] for p in prompts) == dict.fromkeys(SUBTASKS, 200)
    categories = Counter(p["category"] for p in prompts if p["subtask"] == "mt_bench")
    assert categories == dict.fromkeys(MT_BENCH, 25)
    assert [p["subtask"] for p in prompts] == sorted((p["subtask"] for p in prompts), key=SUBTASKS.index)


def test_ids_and_prompts_are_unique(prompts):
    assert len({p["id"] for p in prompts}) == len(prompts)
    assert len({p["prompt"] for p in prompts}) == len(prompts)
    assert all(p["id"] == f"{p['subtask']}-{i % 200:04d}" for i, p in enumerate(prompts))


def written_prompts():
    """The prompts whose material SmolLM2 wrote (`kangaroo-lite write-prompts`), committed beside ours."""
    lines = (DATA_DIR / "distill" / "written_prompts.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("source", ["ours", "written"])
def test_no_prompt_shares_an_8_gram_with_spec_bench(prompts, source):
    prompts = prompts if source == "ours" else written_prompts()
    lines = (DATA_DIR / "spec_bench" / "question.jsonl").read_text(encoding="utf-8").splitlines()
    turns = [turn for line in lines for turn in json.loads(line)["turns"]]
    spec_bench = set().union(*map(ngrams, turns))
    assert ngrams(f"Summarize: {turns[-1]}") & spec_bench  # a copied question would be caught
    shared = [(p["id"], " ".join(sorted(ngrams(p["prompt"]) & spec_bench)[0]))
              for p in prompts if ngrams(p["prompt"]) & spec_bench]
    assert not shared, shared[:5]
