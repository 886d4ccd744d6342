"""The mini Spec-Bench benchmark: every method, per subtask, measured honestly in one process.

Spec-Bench's protocol with its known flaw fixed: warm-up first, batch size 1, per-prompt
tokens/s = new tokens / wall time with the tokens of every method counted the same way (the
length of the generated token list), runs interleaved and repeated (median), speedups against
the *faster* of our autoregressive decoding and Hugging Face's greedy `generate`, and each
lossless method's output checked against the baseline's while it runs.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..adapter.medusa import MedusaHeads
from ..core.checks import check_positive, context_length
from ..core.draft_length import ContextCostCurve
from ..core.result import Step, acceptance_by_position, acceptance_rate, judged_acceptance_rate
from ..decoding.autoregressive import autoregressive
from ..model_sets.loading import DefaultModels, load_default, load_medusa_heads, load_models, question_file
from ..models.corpus import SUBTASKS, read_questions
from ..models.cpu_kernels import describe_plans, kernel_plans
from ..models.loading import DATA_DIR, encode_chat
from .cost_model import RoundCosts, Spread, context_cost_curve, expected_speedup, round_costs
from .lossless import classify_outputs
from .measure import MethodTiming, interleaved
from .methods import ABLATIONS, LOSSLESS, MEASURED, MODEL_SET_OPTIONS, OURS, PEERS, TREES, method_runners

BASELINES = ("autoregressive", "hf_greedy")


COST_SIZES = (1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24)
"""Tokens per verification pass at which the cost model's curve v(n) may be measured (`cost_sizes`)."""


@dataclass
class BenchConfig:
    """What to run: methods, data, budget, device; `quick` shrinks everything to a smoke run."""

    model: str = "tiny"  # a model set of `load_default`: "tiny" or "smollm2"
    methods: list[str] = field(default_factory=lambda: list(OURS + TREES + ABLATIONS + PEERS))
    subtasks: list[str] = field(default_factory=lambda: list(SUBTASKS))
    questions_per_subtask: int = 8
    max_new_tokens: int = 64
    repeats: int = 3
    device: str = "cpu"
    dtype: str = "float32"
    data_dir: str = str(DATA_DIR)
    questions: str = ""
    target: str = ""
    draft: str = ""
    tokenizer: str = ""
    adapter: str = ""
    options: dict[str, dict] = field(default_factory=dict)
    temperature: float = 0.0
    seed: int = 0
    threads: int = 1  # CPU threads; these tiny models decode fastest on one
    tuned_kernels: bool = True  # on a CPU, linear kernels measured fastest for few rows (models.cpu_kernels)

    @classmethod
    def quick(cls, **overrides) -> BenchConfig:
        """A smoke-sized run: two questions per subtask, 32 tokens, one repeat."""
        return cls(**{"questions_per_subtask": 2, "max_new_tokens": 32, "repeats": 1, **overrides})


def resolve_device(device: str) -> torch.device:
    """The torch device for a `--device` value; a clear error when it is not available."""
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    return torch.device(device)


def pick_evenly(records: list, count: int) -> list:
    """`count` items spread evenly over the list (all of them when it is shorter): every MT-bench category."""
    if count >= len(records):
        return list(records)
    return [records[(i * len(records)) // count] for i in range(count)]


def bench_prompts(models: DefaultModels, questions: list[dict], subtasks: list[str], per_subtask: int,
                  max_new_tokens: int) -> tuple[list[tuple[dict, int, torch.Tensor]], list[dict]]:
    """(record, turn index, prompt ids) for every turn that fits the model's context, and the skipped turns.

    As in Spec-Bench, a later turn is asked after the target's own greedy answer to the earlier
    ones (the answer every lossless method gives). A turn whose prompt plus `max_new_tokens`
    exceeds the model's context is skipped (with the turns after it), counted and named.
    """
    prompts, skipped = [], []
    limit = context_length(models.target)
    for subtask in subtasks:
        records = [q for q in questions if q["category"] == subtask]
        if not records:
            raise ValueError(f"no questions of subtask {subtask!r} in the question file")
        for record in pick_evenly(records, per_subtask):
            history: list[tuple[str, str]] = []
            for turn, text in enumerate(record["turns"]):
                ids = encode_chat(models.tokenizer, text, history).to(models.target.device)
                if ids.shape[1] + max_new_tokens > limit:
                    skipped.append({"question_id": record["question_id"], "category": subtask, "turn": turn,
                                    "reason": f"prompt of {ids.shape[1]} tokens + {max_new_tokens} new tokens "
                                              f"exceeds the context of {limit}"})
                    break
                prompts.append((record, turn, ids))
                if turn + 1 < len(record["turns"]):
                    answer = autoregressive(models.target, ids, max_new_tokens, tokenizer=models.tokenizer)
                    history.append((text, models.tokenizer.decode(answer.tokens, skip_special_tokens=True)))
    if not prompts:
        raise ValueError(f"every prompt was skipped: {skipped[0]['reason'] if skipped else 'no questions'}")
    return prompts, skipped


def _extra_parameters(models: DefaultModels, method: str, heads: MedusaHeads | None = None) -> int:
    if method == "medusa":
        return heads.num_parameters()
    if method in ("speculative", "hf_assisted", "mtad"):
        return models.draft.num_parameters()
    if method.startswith("kangaroo"):
        return models.adapter.num_parameters()
    return 0


def _method_summary(name: str, timing: MethodTiming, base: MethodTiming, identity: dict | None,
                    groups: dict[str, list[int]], models: DefaultModels, costs: dict,
                    heads: MedusaHeads | None = None) -> dict:
    """Speed, acceptance, cost-model bounds and (greedy, lossless methods) the identity check of one method."""
    results = [p.result for p in timing.prompts]
    steps = [s for r in results for s in r.steps]
    forwards = sum(r.target_forwards for r in results)
    tokens = sum(p.tokens for p in timing.prompts)
    summary = {
        "speedup": timing.tokens_per_second / base.tokens_per_second,
        "tokens_per_second": timing.tokens_per_second,
        "tokens_per_second_spread": timing.spread(),
        "mean_accepted": tokens / forwards if forwards else None,
        "target_forwards_per_token": forwards / tokens if forwards else None,
        "identical_to_baseline": None if identity is None else not identity["bugs"],
        "identity_rate": None if identity is None else identity["identity_rate"],
        "near_ties": None if identity is None else identity["near_ties"],
        "mismatched_prompts": [] if identity is None else [b["prompt"] for b in identity["bugs"]],
        "cpu_seconds_per_token": timing.cpu_seconds_per_token,
        "extra_parameters": _extra_parameters(models, name, heads),
        "per_subtask": {},
    }
    if any(s.drafted for s in steps):
        summary.update(acceptance_rate=acceptance_rate(steps), acceptance_by_position=acceptance_by_position(steps),
                       accepted_by_source=accepted_by_source(steps))
        if name in costs:
            summary.update(cost_estimate(steps, costs[name], summary["speedup"]))
    for subtask, indices in groups.items():
        part, part_base = timing.subset(indices), base.subset(indices)
        part_forwards = sum(timing.prompts[i].result.target_forwards for i in indices)
        part_tokens = sum(timing.prompts[i].tokens for i in indices)
        summary["per_subtask"][subtask] = {
            "speedup": part.tokens_per_second / part_base.tokens_per_second,
            "tokens_per_second": part.tokens_per_second,
            "mean_accepted": part_tokens / part_forwards if part_forwards else None,
            "accepted_by_source": accepted_by_source([s for i in indices for s in timing.prompts[i].result.steps]),
        }
    return summary


def accepted_by_source(steps: list[Step]) -> dict[str, int]:
    """Accepted drafts by where they came from: `copied` from the context (a round's leading
    `info["copied"]` drafts) or `drafted` by the method's drafter; `own`: the target's own tokens."""
    copied = sum(min(s.accepted, s.info.get("copied", 0)) for s in steps)
    accepted = sum(s.accepted for s in steps)
    own = sum(len(s.emitted) for s in steps) - accepted
    return {"copied": copied, "drafted": accepted - copied, "own": own}


def cost_estimate(steps: list[Step], costs: RoundCosts, speedup: float | None = None) -> dict:
    """The cost model's estimate of a drafting method's speedup, from its rounds and its measured costs.

    α is the judged acceptance rate (`judged_acceptance_rate`), γ the mean number of drafts verified
    per round (rounds that draft nothing count as 0), c and v(γ + 1) from `costs`, c paid only for the
    share of drafts not copied from the context (`copied_drafts`: a copy needs no draft step); the
    estimate is (1 − α^(γ+1)) / ((1 − α)(γc + v(γ+1))), and with free verification the same with v = 1.
    """
    alpha = judged_acceptance_rate(steps)
    drafted = sum(len(s.drafted) for s in steps)
    gamma = drafted / len(steps)
    # Copied drafts cost no draft steps: c is paid for the drafter's share of the drafts only.
    copied = sum(s.info.get("copied", 0) for s in steps) / drafted if drafted else 0.0
    c = costs.c * (1 - copied)
    estimate = expected_speedup(alpha, gamma, c, costs.verify_cost(gamma + 1))
    out = {"judged_acceptance_rate": alpha, "mean_drafted": gamma, "cost_ratio": costs.c, "copied_drafts": copied,
           "verify_cost": costs.verify_cost(gamma + 1), "estimated_speedup": estimate,
           "estimated_speedup_free_verification": expected_speedup(alpha, gamma, c)}
    if speedup is not None:
        out["share_of_estimate"] = speedup / estimate
    return out


def cost_sizes(longest_draft: int) -> tuple[int, ...]:
    """The sizes of `COST_SIZES` to time for rounds of up to `longest_draft` drafts: 1..8, more if they verify more."""
    top = next((n for n in COST_SIZES if n >= longest_draft + 1), COST_SIZES[-1])
    return tuple(n for n in COST_SIZES if n <= max(8, top))


def _costs(models: DefaultModels, timings: dict[str, MethodTiming], prompt: torch.Tensor) -> dict[str, RoundCosts]:
    """Each drafting method's round costs (c and v(n), `cost_model.round_costs`) after `prompt`.

    Kangaroo's ablations share the adapter's; copy-only `lookup` has no draft step (c = 0) and the
    same v(n). v(n) is timed up to the longest verification pass made in the run (at least 8 tokens).
    """
    users = {"speculative": ["speculative"], "kangaroo": [m for m in ("kangaroo", *ABLATIONS) if m in timings]}
    drafters = {"kangaroo": models.adapter, "speculative": models.draft}  # lookup takes the first v(n) measured
    copying = ["lookup"] if "lookup" in timings else []
    costs = {}
    for name, drafter in drafters.items():
        methods = [m for m in users[name] if m in timings]
        if drafter is None or not (methods or copying and name == "kangaroo"):
            continue
        longest = max((len(s.drafted) for m in methods + copying for p in timings[m].prompts
                       for s in p.result.steps), default=0)
        measured = round_costs(models.target, drafter, prompt, cost_sizes(longest))
        costs.update({m: measured for m in methods})
        if copying and "lookup" not in costs:  # copies need no draft step: c = 0, the same v(n)
            costs["lookup"] = replace(measured, draft=Spread(0.0, 0.0, 0.0))
    return costs


def round_costs_of(results: dict, method: str) -> RoundCosts:
    """The `RoundCosts` a benchmark run measured for `method` (rebuilt from its JSON-ready form)."""
    data = results["round_costs"][method]
    return RoundCosts(target_ms=Spread(**data["target_ms"]), draft=Spread(**data["draft"]),
                      curve={int(n): Spread(**v) for n, v in data["curve"].items()})


def load_bench_models(cfg: BenchConfig) -> DefaultModels:
    """The models a config names: its model set, or its own paths (else the data folder's) on its device and dtype."""
    device = resolve_device(cfg.device)
    dtype = getattr(torch, cfg.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {cfg.dtype!r}")
    if cfg.model != "tiny":
        if cfg.target or cfg.draft or cfg.tokenizer or cfg.adapter:
            raise ValueError(f"model set {cfg.model!r} brings its own models: give no --target/--draft/--tokenizer/"
                             "--adapter with it")
        return load_default(cfg.model, device, dtype, cfg.data_dir, cfg.tuned_kernels)
    data = Path(cfg.data_dir)
    adapter = cfg.adapter or (data / "models" / "adapter" if (data / "models" / "adapter").is_dir() else None)
    return load_models(cfg.target or data / "models" / "target", cfg.draft or data / "models" / "draft",
                       cfg.tokenizer or data / "tokenizer", adapter, device, dtype, cfg.tuned_kernels)


def bench_options(cfg: BenchConfig, curve: dict[int, float] | ContextCostCurve | None = None) -> dict[str, dict]:
    """Per-method options: the model set's tuned settings (`MODEL_SET_OPTIONS`), then the config's own.

    An option `cost_curve: "measured"` becomes `curve`, the target's cost curve measured in this run.
    """
    options = {name: dict(values) for name, values in MODEL_SET_OPTIONS.get(cfg.model, {}).items()}
    for name, values in cfg.options.items():
        options[name] = {**options.get(name, {}), **values}
    for values in options.values():
        if values.get("cost_curve") == MEASURED:
            if curve is None:
                raise ValueError("a measured cost curve is asked for but none was measured")
            values["cost_curve"] = curve
    return options


def run_bench(cfg: BenchConfig, models: DefaultModels | None = None, progress: bool = True) -> dict:
    """Run the benchmark (on `models`, or those `cfg` names) and return the results dict."""
    check_positive("threads", cfg.threads)
    previous_threads = torch.get_num_threads()
    if resolve_device(cfg.device).type == "cpu":
        torch.set_num_threads(cfg.threads)  # before loading: the linear kernels are measured at this thread count
    try:
        models = models or load_bench_models(cfg)
        return _run(cfg, models, models.target.device, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _run(cfg: BenchConfig, models: DefaultModels, device: torch.device, progress: bool) -> dict:
    questions = read_questions(cfg.questions or question_file(cfg.model, cfg.data_dir))
    prompts, skipped = bench_prompts(models, questions, cfg.subtasks, cfg.questions_per_subtask,
                                     cfg.max_new_tokens)
    methods = list(dict.fromkeys(["autoregressive", *cfg.methods]))  # our baseline always runs
    # Measured first: cost-aware drafting reads it, per context (after the shortest and the longest prompt).
    curves = context_cost_curve(models.target, [ids for _, _, ids in prompts])
    heads = load_medusa_heads(models.target, data_dir=cfg.data_dir) if "medusa" in methods else None
    runners = method_runners(models, cfg.max_new_tokens, methods, bench_options(cfg, curves), cfg.temperature,
                             cfg.seed, heads)
    bar = tqdm(total=len(prompts), desc="bench", unit="prompt", disable=not progress)
    timings = interleaved(runners, [ids for _, _, ids in prompts], cfg.repeats, progress=bar.update)
    bar.close()

    present = [b for b in BASELINES if b in timings]
    baseline = max(present, key=lambda b: timings[b].tokens_per_second)
    reference = [p.result.tokens for p in timings["autoregressive"].prompts]
    groups: dict[str, list[int]] = {}
    for index, (record, _, _) in enumerate(prompts):
        groups.setdefault(record["category"], []).append(index)
    costs = _costs(models, timings, prompts[0][2])
    ids = [p for _, _, p in prompts]
    checked = [m for m in methods if cfg.temperature == 0 and (m in LOSSLESS or m in BASELINES)]
    identity = {m: classify_outputs(models.target, ids, reference, [p.result.tokens for p in timings[m].prompts])
                for m in checked}
    summary = {name: _method_summary(name, timings[name], timings[baseline], identity.get(name), groups, models,
                                     costs, heads)
               for name in methods}
    records = []
    for index, (record, turn, _) in enumerate(prompts):
        for name in methods:
            p = timings[name].prompts[index]
            records.append({
                "question_id": record["question_id"], "category": record["category"], "turn": turn,
                "method": name, "new_tokens": p.tokens, "wall_time": p.median_time,
                "wall_times": p.wall_times, "decoding_steps": p.result.target_forwards,
                "accept_lengths": [s.accepted for s in p.result.steps if s.drafted],
                "tokens": p.result.tokens,
            })
    return {
        "config": asdict(cfg), "baseline": baseline, "summary": summary, "questions": records, "skipped": skipped,
        "round_costs": {name: asdict(c) for name, c in costs.items()},
        "cost_curves_by_context": {str(length): curve for length, curve in curves.curves.items()},
        "environment": environment(models),
    }


def environment(models: DefaultModels) -> dict:
    """Where a run happened: device, dtype, versions, threads, date, the target's size."""
    device = models.target.device
    return {"device": str(device), "device_name": _device_name(device),
            "dtype": str(models.target.dtype).removeprefix("torch."),
            "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "date": datetime.now().isoformat(timespec="seconds"),
            "target_parameters": models.target.num_parameters(),
            "linear_kernels": describe_plans(kernel_plans(models.target)) or "stock"}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def mismatches(results: dict) -> list[str]:
    """Lossless methods whose greedy output differs from the baseline's on some prompt, not at a near-tie."""
    return [name for name, s in results["summary"].items() if s["identical_to_baseline"] is False]


def write_results(results: dict, out_dir: str | Path) -> Path:
    """Write `results.json` and the self-contained `report.html` into `out_dir`; returns the JSON path."""
    from .report import write_html_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=1))
    write_html_report(results, out / "report.html")
    return path
