"""The notebooks' prompt picking and per-model-set defaults."""

import pytest
import torch
from helpers import tiny_model

from kangaroo_lite import encode_chat, load_tokenizer
from kangaroo_lite.bench.methods import MODEL_SET_OPTIONS
from kangaroo_lite.models.loading import DATA_DIR
from kangaroo_lite.notebook.prompts import benchmark_options, model_default, prompt_length, shortest_questions


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(DATA_DIR / "tokenizer")


def question(qid: int, category: str, text: str) -> dict:
    return {"question_id": qid, "category": category, "turns": [text, "and then?"]}


QUESTIONS = [
    question(1, "qa", "who wrote the long and winding road of the city by the river"),
    question(2, "qa", "who is the mayor"),
    question(3, "math_reasoning", "what is two plus three"),
    question(4, "qa", "who is the king"),
    question(5, "math_reasoning", "what is one"),
]


def test_model_default_keeps_a_given_value_and_fills_none_per_model_set():
    assert model_default(3, "smollm2", tiny=6, smollm2=2) == 3
    assert model_default(None, "tiny", tiny=6, smollm2=2) == 6
    assert model_default(None, "smollm2", tiny=6, smollm2=2) == 2
    assert model_default(0, "tiny", tiny=6) == 0  # a falsy value is still a value


def test_model_default_refuses_a_model_set_without_a_default():
    with pytest.raises(ValueError, match="'other'"):
        model_default(None, "other", tiny=6)


def test_prompt_length_counts_the_chat_prompt_of_the_first_turn(tokenizer):
    record = QUESTIONS[0]
    assert prompt_length(tokenizer, record) == encode_chat(tokenizer, record["turns"][0]).shape[1]
    assert prompt_length(tokenizer, QUESTIONS[0]) > prompt_length(tokenizer, QUESTIONS[1])


def test_shortest_questions_without_a_count_returns_every_question_in_file_order(tokenizer):
    assert shortest_questions(tokenizer, QUESTIONS) == QUESTIONS


def test_shortest_questions_picks_the_shortest_per_subtask_shortest_first(tokenizer):
    picked = shortest_questions(tokenizer, QUESTIONS, per_subtask=2)
    assert [q["question_id"] for q in picked if q["category"] == "qa"][0] in (2, 4)
    assert 1 not in [q["question_id"] for q in picked]  # the longest qa prompt is left out
    assert [q["category"] for q in picked] == ["qa", "qa", "math_reasoning", "math_reasoning"]
    lengths = [prompt_length(tokenizer, q) for q in picked]
    assert lengths[0] <= lengths[1] and lengths[2] <= lengths[3]
    assert [q["question_id"] for q in picked][2:] == [5, 3]


def test_shortest_questions_keeps_every_question_of_a_small_subtask(tokenizer):
    picked = shortest_questions(tokenizer, QUESTIONS, per_subtask=5)
    assert sorted(q["question_id"] for q in picked) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("count", [0, -1])
def test_shortest_questions_refuses_a_count_below_one(tokenizer, count):
    with pytest.raises(ValueError, match=str(count)):
        shortest_questions(tokenizer, QUESTIONS, per_subtask=count)


def test_shortest_questions_on_the_mini_spec_bench_fit_each_subtask(tokenizer, questions):
    picked = shortest_questions(tokenizer, questions, per_subtask=3)
    assert len(picked) == 18
    for subtask in {q["category"] for q in questions}:
        others = [prompt_length(tokenizer, q) for q in questions if q["category"] == subtask and q not in picked]
        mine = [prompt_length(tokenizer, q) for q in picked if q["category"] == subtask]
        assert len(mine) == 3 and max(mine) <= min(others)


def test_benchmark_options_of_the_tiny_set_are_the_defaults():
    assert benchmark_options("tiny", tiny_model(), torch.tensor([[3, 4, 5]])) == {}


def test_benchmark_options_of_smollm2_fill_in_a_measured_cost_curve():
    options = benchmark_options("smollm2", tiny_model(), torch.tensor([[3, 4, 5]]), repeats=1)
    assert set(options) == set(MODEL_SET_OPTIONS["smollm2"])
    curve = options["speculative"]["cost_curve"]
    assert sorted(curve) == list(range(1, MODEL_SET_OPTIONS["smollm2"]["speculative"]["num_draft_tokens"] + 2))
    assert curve[1] == 1.0 and all(ratio > 0 for ratio in curve.values())
    assert options["kangaroo"]["cost_curve"] is curve
    assert MODEL_SET_OPTIONS["smollm2"]["speculative"]["cost_curve"] == "measured"  # the table itself is untouched
