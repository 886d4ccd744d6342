"""Sampling quality against speed: MTAD vs single-token and speculative sampling at one temperature.

MTAD (and MMTAD) are not lossless: they trade the target's single-token distribution for
continuations with a higher *joint* likelihood. Judging them therefore needs more than a speed
measurement. `compare_sampling` runs every method on the same mini Spec-Bench prompts with the
same temperature, top-p and seeds, and measures per method:

- **output perplexity under the target**: exp(Σ NLL / Σ tokens) of the generated continuations,
  scored by the target at temperature 1 (its own distribution), pooled over prompts × seeds;
- **task accuracy**: exact answers (`evaluation.is_correct`) on the subtasks that have one
  (math, QA, RAG), and per subtask;
- **tokens/s and CPU seconds per token** (an energy proxy on a CPU) from `measure.interleaved`
  (warm-up, methods interleaved, median of repeats; fixed seeds make repeats identical);
- **mean accepted tokens per target forward** (#MAT).

`floors` turns such a report into the issue's comparisons: MTAD's perplexity reduction,
accuracy difference, speed ratio and CPU-time ratio against single-token sampling and against
speculative sampling.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..core.checks import context_length
from ..decoding.autoregressive import autoregressive
from ..decoding.kangaroo import kangaroo
from ..decoding.lookup import lookup
from ..decoding.mtad import mtad
from ..decoding.speculative import speculative
from ..model_sets.loading import DefaultModels
from ..models.corpus import SUBTASKS
from ..models.loading import encode_chat
from .evaluation import is_correct, sequence_nll
from .measure import MethodTiming, Run, interleaved
from .methods import DEFAULT_OPTIONS
from .runner import pick_evenly

METHODS = ("autoregressive", "speculative", "kangaroo", "lookup", "mtad", "mmtad")  # kangaroo, lookup: lossless
ANSWER_SUBTASKS = ("qa", "math_reasoning", "rag")  # subtasks with one exact answer
PAPER = {  # Qin et al. (arXiv 2407.09722 v1 abstract; Llama-2 / OPT, 13B-70B)
    "perplexity_reduction_vs_sampling": 0.212,
    "speedup_vs_speculative": 1.42,
    "energy_ratio_vs_speculative": 1.54,
}
FLOORS = {"perplexity_reduction": 0.10, "accuracy_difference": 0.0, "speedup": 1.0, "cpu_ratio": 1.0}


def sampling_runners(models: DefaultModels, max_new_tokens: int, methods: tuple[str, ...] | list[str],
                     temperature: float, top_p: float, seed: int,
                     options: dict[str, dict] | None = None) -> dict[str, Run]:
    """name → `f(input_ids) -> DecodingResult` for the sampling methods, all at one temperature, top-p and seed."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown sampling methods {unknown}; available: {list(METHODS)}")
    if temperature <= 0:
        raise ValueError(f"compare sampling methods at a temperature > 0, got {temperature!r}")
    if "kangaroo" in methods and models.adapter is None:
        raise ValueError("kangaroo needs a trained adapter: the model set has none")
    opts = {name: {**DEFAULT_OPTIONS.get(name, {}), **(options or {}).get(name, {})} for name in methods}
    target, draft = models.target, models.draft
    common = {"temperature": temperature, "top_p": top_p, "seed": seed, "tokenizer": models.tokenizer}

    def runner(name: str) -> Run:
        if name == "autoregressive":
            return lambda ids: autoregressive(target, ids, max_new_tokens, **common, **opts[name])
        if name == "speculative":
            return lambda ids: speculative(target, draft, ids, max_new_tokens, **common, **opts[name])
        if name == "kangaroo":
            return lambda ids: kangaroo(target, models.adapter, ids, max_new_tokens, **common, **opts[name])
        if name == "lookup":
            return lambda ids: lookup(target, ids, max_new_tokens, **common, **opts[name])
        return lambda ids: mtad(target, draft, ids, max_new_tokens, multi_candidate=name == "mmtad",
                                **common, **opts[name])

    return {name: runner(name) for name in methods}


def quality_prompts(models: DefaultModels, questions: list[dict], subtasks: tuple[str, ...] | list[str],
                    per_subtask: int, max_new_tokens: int = 0) -> list[tuple[dict, torch.Tensor]]:
    """(record, prompt ids of its first turn) for `per_subtask` questions spread over each subtask.

    A prompt that leaves fewer than `max_new_tokens` positions of the model's context is left out.
    """
    if per_subtask < 1:
        raise ValueError(f"per_subtask must be >= 1, got {per_subtask!r}")
    prompts, limit = [], context_length(models.target)
    for subtask in subtasks:
        records = [q for q in questions if q["category"] == subtask]
        if not records:
            raise ValueError(f"no questions of subtask {subtask!r}")
        encoded = [(r, encode_chat(models.tokenizer, r["turns"][0])) for r in pick_evenly(records, per_subtask)]
        prompts += [(r, ids) for r, ids in encoded if ids.shape[1] + max_new_tokens <= limit]
    return prompts


def _pooled_perplexity(samples: list[dict]) -> float:
    return math.exp(sum(s["nll"] for s in samples) / sum(s["tokens"] for s in samples))


def _accuracy(samples: list[dict]) -> float | None:
    scored = [s["correct"] for s in samples if s["correct"] is not None]
    return sum(scored) / len(scored) if scored else None


def _summary(timing: MethodTiming, samples: list[dict]) -> dict:
    by_subtask = {}
    for subtask in dict.fromkeys(s["category"] for s in samples):
        part = [s for s in samples if s["category"] == subtask]
        by_subtask[subtask] = {"perplexity": _pooled_perplexity(part), "accuracy": _accuracy(part)}
    tokens = sum(s["tokens"] for s in samples)
    return {
        "perplexity": _pooled_perplexity(samples),
        "nll_per_token": sum(s["nll"] for s in samples) / tokens,
        "accuracy": _accuracy([s for s in samples if s["category"] in ANSWER_SUBTASKS]),
        "tokens": tokens,
        "tokens_per_second": timing.tokens_per_second,
        "tokens_per_second_spread": timing.spread(),
        "cpu_seconds_per_token": timing.cpu_seconds_per_token,
        "mean_accepted": timing.mean_accepted,
        "per_subtask": by_subtask,
    }


def compare_sampling(models: DefaultModels, questions: list[dict],
                     methods: tuple[str, ...] | list[str] = METHODS, temperature: float = 1.5,
                     top_p: float = 1.0, subtasks: tuple[str, ...] | list[str] = SUBTASKS, per_subtask: int = 2,
                     max_new_tokens: int = 48, seeds: tuple[int, ...] | list[int] = (0, 1), repeats: int = 1,
                     warmup: int = 1, options: dict[str, dict] | None = None,
                     progress: Callable[[], None] | None = None) -> dict:
    """Perplexity under the target, accuracy, tokens/s, CPU s/token and #MAT of each method, same T, top-p, seeds.

    Every method decodes the first turn of `per_subtask` questions of each subtask once per seed;
    timings come from `measure.interleaved` (its warm-up on the first seed only, `repeats`
    interleaved repeats, medians). Returns {"config", "methods": {name: summary}, "samples": [...]}.
    """
    if not seeds:
        raise ValueError("give at least one seed")
    methods = list(dict.fromkeys(methods))
    prompts = quality_prompts(models, questions, subtasks, per_subtask, max_new_tokens)
    timings = {name: MethodTiming() for name in methods}
    for index, seed in enumerate(seeds):
        runs = sampling_runners(models, max_new_tokens, methods, temperature, top_p, seed, options)
        part = interleaved(runs, [ids for _, ids in prompts], repeats, warmup if index == 0 else 0, progress)
        for name in methods:
            timings[name].prompts += part[name].prompts

    samples = []
    for name in methods:
        for i, p in enumerate(timings[name].prompts):
            record, ids = prompts[i % len(prompts)]
            result = p.result
            samples.append({
                "method": name, "seed": seeds[i // len(prompts)], "question_id": record["question_id"],
                "category": record["category"], "tokens": len(result.tokens),
                "nll": sequence_nll(models.target, ids[0].tolist(), result.tokens),
                "correct": is_correct(record, result.text), "mean_accepted": result.mean_accepted,
                "text": result.text,
            })
    return {
        "config": {"methods": methods, "temperature": temperature, "top_p": top_p, "subtasks": list(subtasks),
                   "per_subtask": per_subtask, "max_new_tokens": max_new_tokens, "seeds": list(seeds),
                   "repeats": repeats, "options": {m: {**DEFAULT_OPTIONS.get(m, {}), **(options or {}).get(m, {})}
                                                   for m in methods}},
        "methods": {name: _summary(timings[name], [s for s in samples if s["method"] == name]) for name in methods},
        "samples": samples,
    }


def compare(method: dict, reference: dict) -> dict:
    """Method vs reference summaries: perplexity reduction, accuracy difference, speed and CPU-time ratios.

    `perplexity_reduction` = 1 − ppl(method) / ppl(reference) (0.212 is the paper's −21.2 %);
    `accuracy_difference` = accuracy(method) − accuracy(reference) (None without answer subtasks);
    `speedup` = tokens/s ratio; `cpu_ratio` = reference CPU s/token ÷ method's (> 1: less CPU per
    token, the paper's "1.54× less energy").
    """
    accuracy = None
    if method["accuracy"] is not None and reference["accuracy"] is not None:
        accuracy = method["accuracy"] - reference["accuracy"]
    return {
        "perplexity_reduction": 1 - method["perplexity"] / reference["perplexity"],
        "accuracy_difference": accuracy,
        "speedup": method["tokens_per_second"] / reference["tokens_per_second"],
        "cpu_ratio": reference["cpu_seconds_per_token"] / method["cpu_seconds_per_token"],
    }


def floors(report: dict, method: str = "mtad", single_token: str = "autoregressive",
           speculative_method: str = "speculative", limits: dict[str, float] | None = None) -> dict:
    """A method's ratios to the baselines and `FLOORS` checks: {"vs_sampling", "vs_speculative", "checks", "passed"}.

    Checks (defaults in `FLOORS`): perplexity ≥ 10 % lower than single-token sampling with accuracy
    no worse; faster and fewer CPU seconds per token than speculative sampling.
    """
    limits = {**FLOORS, **(limits or {})}
    summaries = report["methods"]
    for name in (method, single_token, speculative_method):
        if name not in summaries:
            raise ValueError(f"the report has no method {name!r}; it has {list(summaries)}")
    vs_sampling = compare(summaries[method], summaries[single_token])
    vs_speculative = compare(summaries[method], summaries[speculative_method])
    accuracy = vs_sampling["accuracy_difference"]
    checks = {
        "perplexity": vs_sampling["perplexity_reduction"] >= limits["perplexity_reduction"],
        "accuracy": accuracy is None or accuracy >= limits["accuracy_difference"],
        "faster": vs_speculative["speedup"] > limits["speedup"],
        "less_cpu": vs_speculative["cpu_ratio"] > limits["cpu_ratio"],
    }
    return {"method": method, "vs_sampling": vs_sampling, "vs_speculative": vs_speculative, "checks": checks,
            "passed": all(checks.values())}


def flat_metrics(report: dict, floor: dict | None = None) -> dict[str, float]:
    """A flat {name: number} view of a report (and its floors), for `result_json` and sweeps."""
    metrics: dict[str, float] = {}
    for name, summary in report["methods"].items():
        for key in ("perplexity", "nll_per_token", "accuracy", "tokens_per_second", "cpu_seconds_per_token",
                    "mean_accepted"):
            if summary.get(key) is not None:
                metrics[f"{name}_{key}"] = float(summary[key])
    if floor:
        for against in ("vs_sampling", "vs_speculative"):
            for key, value in floor[against].items():
                if value is not None:
                    metrics[f"{floor['method']}_{against}_{key}"] = float(value)
        metrics[f"{floor['method']}_floors_passed"] = float(floor["passed"])
    return metrics
