"""The mini Spec-Bench generator: deterministic, six subtasks, Spec-Bench's file format."""

import json
import random

import pytest

from kangaroo_lite.models.corpus import (
    SUBTASKS,
    build_world,
    evaluation_set,
    format_example,
    format_prompt,
    generate_example,
    read_questions,
    training_corpus,
)
from kangaroo_lite.models.loading import DATA_DIR


def test_committed_question_file_equals_the_generator_output():
    committed = [json.loads(line) for line in open(DATA_DIR / "question.jsonl", encoding="utf-8")]
    assert committed == evaluation_set()


def test_evaluation_set_has_at_least_80_questions_of_each_subtask_in_spec_bench_format(questions):
    for subtask in SUBTASKS:
        assert sum(q["category"] == subtask for q in questions) >= 80
    for q in questions:
        assert {"question_id", "category", "turns", "reference", "answer"} <= set(q)
        assert len(q["turns"]) == len(q["reference"]) >= 1
    assert len({q["question_id"] for q in questions}) == len(questions)


def test_conversations_have_two_turns_like_mt_bench(questions):
    assert all(len(q["turns"]) == 2 for q in questions if q["category"] == "mt_bench")


def test_generation_is_deterministic_for_a_seed():
    assert training_corpus(50, seed=3) == training_corpus(50, seed=3)
    assert training_corpus(50, seed=3) != training_corpus(50, seed=4)
    assert build_world() == build_world()


def test_translation_follows_the_lexicon_and_subject_object_verb_order():
    world = build_world()
    lex = world.lexicon
    (user, reply), = generate_example("translation", random.Random(5), world)
    words = user.removeprefix("Translate to Velsh: ").rstrip(".").split()
    verb = next(w for w in words if w in ("sees", "likes", "finds", "helps", "follows", "draws",
                                          "carries", "hears"))
    assert reply.rstrip(".").split()[-1] == lex[verb]
    assert set(reply.rstrip(".").split()) == {lex[w] for w in words}


def test_summaries_restate_the_documents_key_facts():
    world = build_world()
    for seed in range(20):
        (user, reply), = generate_example("summarization", random.Random(seed), world)
        numbers = [w for w in reply.replace(",", " ").replace(".", " ").split() if w.isdigit()]
        assert numbers and all(n in user for n in numbers)


def test_rag_answer_is_copied_from_the_passage_the_question_names(questions):
    for q in (q for q in questions if q["category"] == "rag"):
        passages, question = q["turns"][0].split("\nQuestion: ")
        name = question.rstrip("?").split(" of ")[-1]
        passage = next(p for p in passages.split("Passage ")[1:] if f" of {name} is " in p)
        assert passage.rstrip(". ").endswith(f"is {q['answer']}")
        assert q["answer"] in q["reference"][0] and name in q["reference"][0]


def test_rag_passages_are_about_different_people_and_topics_with_fresh_facts():
    world = build_world()
    answers_by_question = {}
    for seed in range(200):
        (user, reply), = generate_example("rag", random.Random(seed), world)
        passages = [p.split(": ", 1)[1] for p in user.split("\nQuestion: ")[0].split("Passage ")[1:]]
        people = [p.split(" of ", 1)[1].split(" is ")[0] for p in passages]
        topics = [p.split("The favourite ")[1].split(" of ")[0] for p in passages]
        assert len(passages) == 3 and len(set(people)) == 3 and len(set(topics)) == 3
        assert set(people) <= {person.name for person in world.people}
        question = user.split("\nQuestion: ")[1]
        answers_by_question.setdefault(question, set()).add(reply)
    # the same question gets different answers in different examples: they come from the passages
    assert any(len(replies) > 1 for replies in answers_by_question.values())


def test_math_solutions_are_arithmetically_right(questions):
    for q in (q for q in questions if q["category"] == "math_reasoning"):
        reply = q["reference"][0]
        for equation in reply.split(": ")[1:]:
            lhs, rhs = equation.split(" = ")
            a, op, b = lhs.split()
            assert (int(a) + int(b) if op == "+" else int(a) - int(b)) == int(rhs.split(".")[0])


def test_chat_format_closes_every_reply_with_eos():
    text = format_example([("hi", "hello"), ("again", "sure")])
    assert text == "<s><|user|>hi<|assistant|>hello</s><|user|>again<|assistant|>sure</s>"
    assert format_prompt([], "hi") == "<s><|user|>hi<|assistant|>"


def test_unknown_subtask_is_rejected():
    with pytest.raises(ValueError, match="unknown subtask"):
        generate_example("poetry", random.Random(0), build_world())


def test_reading_a_missing_or_malformed_question_file_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_questions(tmp_path / "none.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": 1, "turns": ["x"]}\n')
    with pytest.raises(ValueError, match="category"):
        read_questions(bad)
