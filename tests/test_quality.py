"""The shipped models meet the quality floors the benchmark relies on (greedy, evaluation set)."""

from conftest import LOSSLESS_TOKENS

from kangaroo_lite import autoregressive
from kangaroo_lite.bench.evaluation import is_correct


def _accuracy(shipped, questions, baseline_greedy, category, model=None):
    records = [q for q in questions if q["category"] == category]
    hits = 0
    for q in records:
        ids, tokens = baseline_greedy[q["question_id"]]
        if model is not None:
            tokens = autoregressive(model, ids, LOSSLESS_TOKENS).tokens
        hits += is_correct(q, shipped.tokenizer.decode(tokens, skip_special_tokens=True))
    return hits / len(records)


def test_target_answers_qa_at_least_90_and_math_at_least_80_percent(shipped, questions, baseline_greedy):
    assert _accuracy(shipped, questions, baseline_greedy, "qa") >= 0.9
    assert _accuracy(shipped, questions, baseline_greedy, "math_reasoning") >= 0.8


def test_target_answers_rag_at_least_90_percent(shipped, questions, baseline_greedy):
    assert _accuracy(shipped, questions, baseline_greedy, "rag") >= 0.9


def test_draft_is_at_least_15_points_weaker_on_math_or_qa(shipped, questions, baseline_greedy):
    gaps = [_accuracy(shipped, questions, baseline_greedy, c)
            - _accuracy(shipped, questions, baseline_greedy, c, model=shipped.draft)
            for c in ("math_reasoning", "qa")]
    assert max(gaps) >= 0.15
