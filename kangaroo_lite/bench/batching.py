"""Throughput with many prompts at once: each batchable method against batched autoregressive decoding.

For each batch size the benchmark's prompts (as many as fill the largest batches) are decoded in
consecutive groups of that size;
methods are interleaved per group and repeat (`measure.interleaved`), and throughput is Σ new
tokens / Σ median group time. The baseline is the faster of our batched autoregressive loop
and Hugging Face's batched greedy `generate`. Cost-aware drafting (SmolLM2) reads the cost
curve measured at the batch size it runs at (`batch_cost`), so it drafts less where the batch
makes verification dear.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from ..core.checks import check_positive, eos_id
from ..core.result import DecodingResult, Step
from ..decoding.autoregressive import autoregressive
from ..model_sets.loading import DefaultModels, question_file
from ..models.corpus import read_questions
from .batch_cost import batch_cost_curves, batch_pass_costs
from .lossless import classify_outputs
from .measure import interleaved
from .methods import method_runners
from .runner import BASELINES, BenchConfig, bench_options, bench_prompts, environment, load_bench_models, pick_evenly

BATCHED = ("autoregressive", "hf_greedy", "speculative", "kangaroo")
TOKENS_PER_ROW = (1, 2, 3, 4, 6, 8)  # the pass sizes timed per batch size
PAYS = 1.1  # below this speedup over the baseline, speculation is said to stop paying

BatchRunner = Callable[[list[torch.Tensor]], list[DecodingResult]]


@dataclass
class BatchResult(DecodingResult):
    """One group of prompts decoded at once: the rows' results, their tokens concatenated, timed as one."""

    rows: list[DecodingResult] = field(default_factory=list)


@torch.inference_mode()
def hf_generate_batch(target: PreTrainedModel, prompts: Sequence[torch.Tensor], max_new_tokens: int,
                      ) -> list[DecodingResult]:
    """Hugging Face's greedy `generate` on left-padded prompts; each row cut after its EOS, timed as a whole."""
    pad = target.generation_config.pad_token_id
    pad = eos_id(target) if pad is None else pad
    width = max(len(ids) for ids in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long, device=target.device)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):], mask[row, width - len(prompt):] = prompt, 1
    start = time.perf_counter()
    out = target.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
    wall = time.perf_counter() - start
    eos, results = eos_id(target), []
    for prompt, row in zip(prompts, out[:, width:].tolist(), strict=True):
        tokens = row[: row.index(eos) + 1] if eos in row else row
        results.append(DecodingResult(method="hf_greedy", prompt_tokens=prompt.tolist(), tokens=tokens,
                                      steps=[Step(emitted=tokens)], target_forwards=len(tokens), wall_time=wall,
                                      stop_reason="eos" if eos in tokens else "length"))
    return results


def batch_runners(models: DefaultModels, max_new_tokens: int, methods: Sequence[str], options: dict[str, dict],
                  temperature: float = 0.0, seed: int | None = 0) -> dict[str, Callable[[list], BatchResult]]:
    """name → runner of a group of prompts (1-D ids), for each of `methods` (all in `BATCHED`)."""
    unknown = [m for m in methods if m not in BATCHED]
    if unknown:
        raise ValueError(f"methods {unknown} do not decode batches; batched methods: {list(BATCHED)}")
    ours = method_runners(models, max_new_tokens, [m for m in methods if m != "hf_greedy"], options, temperature,
                          seed)

    def timed(name: str, run: BatchRunner) -> Callable[[list[torch.Tensor]], BatchResult]:
        def runner(group: list[torch.Tensor]) -> BatchResult:
            start = time.perf_counter()
            rows = run(group)
            wall = time.perf_counter() - start
            return BatchResult(method=name, prompt_tokens=[], tokens=[t for r in rows for t in r.tokens],
                               steps=[s for r in rows for s in r.steps],
                               target_forwards=sum(r.target_forwards for r in rows), wall_time=wall, rows=rows)
        return runner

    runners = {name: timed(name, ours[name]) for name in ours}
    if "hf_greedy" in methods:
        runners["hf_greedy"] = timed("hf_greedy", lambda group: hf_generate_batch(models.target, group,
                                                                                  max_new_tokens))
    return {name: runners[name] for name in methods}


def groups_of(prompts: Sequence[torch.Tensor], size: int) -> list[list[torch.Tensor]]:
    """Consecutive groups of `size` prompts (the last one may be smaller)."""
    return [list(prompts[i: i + size]) for i in range(0, len(prompts), size)]


def crossover(speedups: dict[int, float], pays: float = PAYS) -> int | None:
    """The smallest batch size at which a speedup falls below `pays` (None: it never does)."""
    return next((batch for batch in sorted(speedups) if speedups[batch] < pays), None)


def run_batch_bench(cfg: BenchConfig, batch_sizes: Sequence[int], models: DefaultModels | None = None,
                    progress: bool = True) -> dict:
    """Throughput of every batched method at every batch size, with the pass costs that explain it."""
    for size in batch_sizes:
        check_positive("batch size", size)
    check_positive("threads", cfg.threads)
    models = models or load_bench_models(cfg)
    previous_threads = torch.get_num_threads()
    if models.target.device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, sorted(set(batch_sizes)), models, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _run(cfg: BenchConfig, batch_sizes: list[int], models: DefaultModels, progress: bool) -> dict:
    # The default method list holds methods that cannot batch: the batched ones then; a list given is checked.
    chosen = BATCHED if cfg.methods == BenchConfig().methods else cfg.methods
    methods = list(dict.fromkeys(["autoregressive", *chosen]))  # our baseline always runs
    if cfg.temperature > 0:
        methods = [m for m in methods if m != "hf_greedy"]
    questions = read_questions(cfg.questions or question_file(cfg.model, cfg.data_dir))
    prompts, skipped = bench_prompts(models, questions, cfg.subtasks, cfg.questions_per_subtask, cfg.max_new_tokens)
    ids = [p[0] for _, _, p in prompts]
    largest = max(batch_sizes)
    if len(ids) < largest:
        raise ValueError(f"batch size {largest} needs at least {largest} prompts, the questions give {len(ids)}: "
                         "ask more questions per subtask")
    # As many prompts as fill the largest batches, spread over the subtasks; every batch size decodes the same ones.
    ids = pick_evenly(ids, len(ids) - len(ids) % largest)
    costs = batch_pass_costs(models.target, ids[0].unsqueeze(0), batch_sizes, TOKENS_PER_ROW)
    curves = batch_cost_curves(costs)
    reference = [autoregressive(models.target, p, cfg.max_new_tokens).tokens for p in ids] \
        if cfg.temperature == 0 else None
    bar = tqdm(total=sum(len(groups_of(ids, size)) for size in batch_sizes), desc="batch bench", unit="batch",
               disable=not progress)
    by_batch = {}
    for size in batch_sizes:
        runners = batch_runners(models, cfg.max_new_tokens, methods, bench_options(cfg, curves[size]),
                                cfg.temperature, cfg.seed)
        groups = groups_of(ids, size)
        timings = interleaved(runners, groups, cfg.repeats, progress=bar.update)
        baseline = max((b for b in BASELINES if b in timings), key=lambda b: timings[b].tokens_per_second)
        rows = {}
        for name, timing in timings.items():
            results = [row for p in timing.prompts for row in p.result.rows]
            forwards = sum(r.target_forwards for r in results)
            rows[name] = {
                "tokens_per_second": timing.tokens_per_second,
                "speedup": timing.tokens_per_second / timings[baseline].tokens_per_second,
                "mean_latency": sum(r.wall_time for r in results) / len(results),  # of each group's median repeat
                "mean_accepted": sum(len(r.tokens) for r in results) / forwards if forwards else None,
                "identity": None if reference is None else
                classify_outputs(models.target, [p.unsqueeze(0) for p in ids], reference,
                                 [r.tokens for r in results]),
            }
        by_batch[size] = {"baseline": baseline, "methods": rows}
    bar.close()
    speedups = {name: {size: by_batch[size]["methods"][name]["speedup"] for size in batch_sizes} for name in methods}
    return {
        "config": asdict(cfg), "batch_sizes": batch_sizes, "prompts": len(ids), "pass_costs_ms": costs,
        "cost_curves": curves, "by_batch_size": by_batch,
        "crossover": {name: crossover(values) for name, values in speedups.items() if name not in BASELINES},
        "skipped": skipped, "environment": environment(models),
    }
