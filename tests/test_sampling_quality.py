"""compare_sampling and floors on tiny random models: structure, determinism, pooled figures, ratios."""

import math

import pytest
from helpers import tiny_model

from kangaroo_lite import KangarooAdapter, encode_chat
from kangaroo_lite.bench.evaluation import sequence_nll
from kangaroo_lite.bench.sampling_quality import (
    ANSWER_SUBTASKS,
    METHODS,
    compare,
    compare_sampling,
    flat_metrics,
    floors,
    sampling_runners,
)
from kangaroo_lite.model_sets.loading import DefaultModels
from kangaroo_lite.models.loading import DATA_DIR, load_tokenizer

QUESTIONS = [
    {"question_id": 1, "category": "qa", "turns": ["Who is Bo?"], "reference": ["Bo is a baker."]},
    {"question_id": 2, "category": "qa", "turns": ["Who is Ka?"], "reference": ["Ka is a sailor."]},
    {"question_id": 3, "category": "math_reasoning", "turns": ["What is 2 plus 3?"], "reference": ["5"],
     "answer": 5},
    {"question_id": 4, "category": "translation", "turns": ["Translate: the dog."], "reference": ["le chien"]},
]
SUBTASKS = ("qa", "math_reasoning", "translation")
KEYS = {"perplexity", "nll_per_token", "accuracy", "tokens", "tokens_per_second", "tokens_per_second_spread",
        "cpu_seconds_per_token", "mean_accepted", "per_subtask"}


@pytest.fixture(scope="module")
def models():
    tokenizer = load_tokenizer(DATA_DIR / "tokenizer")
    vocab = len(tokenizer)
    target = tiny_model(layers=2, vocab=vocab, seed=1, sharpness=3.0)
    draft = tiny_model(layers=1, vocab=vocab, seed=2, sharpness=3.0)
    adapter = KangarooAdapter.from_target(target, 1).eval()
    return DefaultModels(tokenizer, target, draft, adapter)


def run(models, **overrides):
    options = {"speculative": {"num_draft_tokens": 3}, "mtad": {"num_draft_tokens": 3, "num_beams": 2},
               "mmtad": {"num_draft_tokens": 3, "num_beams": 2}}
    kwargs = {"temperature": 1.5, "subtasks": SUBTASKS, "per_subtask": 2, "max_new_tokens": 6, "seeds": (0, 1),
              "repeats": 2, "warmup": 0, "options": options, **overrides}
    return compare_sampling(models, QUESTIONS, **kwargs)


@pytest.fixture(scope="module")
def report(models):
    return run(models)


def test_every_method_gets_every_figure_and_one_sample_per_prompt_and_seed(report):
    assert list(report["methods"]) == list(METHODS)
    prompts = 2 + 1 + 1  # per_subtask=2 but math and translation have one question each
    assert len(report["samples"]) == len(METHODS) * prompts * 2
    for name, summary in report["methods"].items():
        assert set(summary) == KEYS, name
        assert summary["perplexity"] >= 1 and summary["tokens_per_second"] > 0
        assert summary["cpu_seconds_per_token"] > 0 and summary["mean_accepted"] >= 1
        assert set(summary["per_subtask"]) == set(SUBTASKS)
    assert report["methods"]["autoregressive"]["mean_accepted"] == 1
    assert report["config"]["temperature"] == 1.5 and report["config"]["seeds"] == [0, 1]


def test_pooled_perplexity_and_accuracy_follow_from_the_samples(models, report):
    for name, summary in report["methods"].items():
        samples = [s for s in report["samples"] if s["method"] == name]
        assert summary["tokens"] == sum(s["tokens"] for s in samples)
        nll = sum(s["nll"] for s in samples)
        assert summary["perplexity"] == pytest.approx(math.exp(nll / summary["tokens"]))
        answered = [s for s in samples if s["category"] in ANSWER_SUBTASKS]
        assert summary["accuracy"] == pytest.approx(sum(s["correct"] for s in answered) / len(answered))
    first = report["samples"][0]
    record = next(q for q in QUESTIONS if q["question_id"] == first["question_id"])
    runner = sampling_runners(models, 6, ["autoregressive"], 1.5, 1.0, first["seed"])["autoregressive"]
    ids = encode_chat(models.tokenizer, record["turns"][0])
    tokens = runner(ids).tokens
    assert first["nll"] == pytest.approx(sequence_nll(models.target, ids[0].tolist(), tokens))


def test_identical_seeds_give_identical_outputs_and_quality(models, report):
    again = run(models, repeats=1)
    assert again["samples"] == report["samples"]
    for name in METHODS:
        for key in ("perplexity", "accuracy", "tokens", "mean_accepted"):
            assert again["methods"][name][key] == report["methods"][name][key]


def test_other_seeds_sample_other_continuations(models, report):
    other = run(models, seeds=(5, 6), repeats=1, methods=("autoregressive",))
    texts = [s["text"] for s in report["samples"] if s["method"] == "autoregressive"]
    assert [s["text"] for s in other["samples"]] != texts


def fake(ppl: float, acc: float | None, tps: float, cpu: float) -> dict:
    return {"perplexity": ppl, "accuracy": acc, "tokens_per_second": tps, "cpu_seconds_per_token": cpu}


def test_floors_computes_the_ratios_and_the_checks():
    report = {"methods": {"autoregressive": fake(2.0, 0.5, 100.0, 0.010), "speculative": fake(2.0, 0.5, 150.0, 0.006),
                          "mtad": fake(1.6, 0.6, 180.0, 0.004)}}
    result = floors(report)
    assert result["vs_sampling"] == pytest.approx(
        {"perplexity_reduction": 0.2, "accuracy_difference": 0.1, "speedup": 1.8, "cpu_ratio": 2.5})
    assert result["vs_speculative"] == pytest.approx(
        {"perplexity_reduction": 0.2, "accuracy_difference": 0.1, "speedup": 1.2, "cpu_ratio": 1.5})
    assert result["checks"] == {"perplexity": True, "accuracy": True, "faster": True, "less_cpu": True}
    assert result["passed"]
    metrics = flat_metrics(report, result)
    assert metrics["mtad_vs_speculative_speedup"] == pytest.approx(1.2) and metrics["mtad_floors_passed"] == 1.0
    assert all(isinstance(v, float) for v in metrics.values())


def test_floors_fail_one_by_one():
    base = {"autoregressive": fake(2.0, 0.5, 100.0, 0.010), "speculative": fake(2.0, 0.5, 150.0, 0.006)}
    cases = {
        "perplexity": fake(1.9, 0.5, 200.0, 0.003),  # only 5 % lower
        "accuracy": fake(1.5, 0.4, 200.0, 0.003),
        "faster": fake(1.5, 0.5, 140.0, 0.003),
        "less_cpu": fake(1.5, 0.5, 200.0, 0.007),
    }
    for failing, mtad in cases.items():
        result = floors({"methods": {**base, "mtad": mtad}})
        assert not result["passed"]
        assert [k for k, ok in result["checks"].items() if not ok] == [failing]
    lenient = floors({"methods": {**base, "mtad": cases["perplexity"]}}, limits={"perplexity_reduction": 0.04})
    assert lenient["passed"]


def test_accuracy_may_be_missing_and_errors_are_clear(models):
    assert compare(fake(1.0, None, 2.0, 1.0), fake(2.0, 0.5, 1.0, 1.0))["accuracy_difference"] is None
    with pytest.raises(ValueError, match="no method 'mmtad'"):
        floors({"methods": {"autoregressive": {}, "speculative": {}}}, method="mmtad")
    with pytest.raises(ValueError, match="temperature > 0"):
        sampling_runners(models, 4, METHODS, 0.0, 1.0, 0)
    with pytest.raises(ValueError, match="unknown sampling methods"):
        sampling_runners(models, 4, ["hf_greedy"], 1.0, 1.0, 0)
    with pytest.raises(ValueError, match="no questions of subtask 'rag'"):
        compare_sampling(models, QUESTIONS, subtasks=("rag",), max_new_tokens=2, seeds=(0,))
    with pytest.raises(ValueError, match="at least one seed"):
        compare_sampling(models, QUESTIONS, seeds=())


def test_top_p_reaches_every_method(models):
    ids = encode_chat(models.tokenizer, QUESTIONS[0]["turns"][0])
    tiny = sampling_runners(models, 5, METHODS, 1.0, 1e-6, 0)  # top-p → 0: greedy in effect
    greedy = sampling_runners(models, 5, ["autoregressive"], 1.0, 1e-6, 3)["autoregressive"](ids).tokens
    for name, runner in tiny.items():
        assert runner(ids).tokens == greedy, name


def test_tree_figure_places_leaves_evenly_and_parents_between_their_children():
    from kangaroo_lite.notebook.tree import tree_figure

    nodes = [{"id": "r", "parent": None, "label": "root"},
             {"id": "a", "parent": "r", "label": "a", "edge": "0.6", "color": "red"},
             {"id": "b", "parent": "r", "label": "b", "edge": "0.4"},
             {"id": "a1", "parent": "a", "label": "a1"}, {"id": "a2", "parent": "a", "label": "a2"}]
    fig = tree_figure(nodes, title="t")
    points = fig.data[-1]
    y = dict(zip(points.text, points.y, strict=True))
    x = dict(zip(points.text, points.x, strict=True))
    assert (x["root"], x["a"], x["a1"]) == (0, 1, 2)
    assert y["a"] == (y["a1"] + y["a2"]) / 2 and y["root"] == (y["a"] + y["b"]) / 2
    assert sorted([y["a1"], y["a2"], y["b"]]) == [-2, -1, 0]
    assert [a.text for a in fig.layout.annotations] == ["0.6", "0.4"]
    with pytest.raises(ValueError, match="not among the nodes"):
        tree_figure([{"id": "x", "parent": "missing"}])
