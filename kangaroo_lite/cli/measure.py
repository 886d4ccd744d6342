"""Commands that run and measure: the demo, model evaluation, the benchmark, sweeps."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..model_sets.loading import question_file
from ..models.corpus import (
    read_questions,
)
from .files import refuse_overwrite


def cmd_demo(args: argparse.Namespace) -> None:
    """One prompt per subtask through every method, coloured by token fate, with a table."""
    from ..notebook.demo import run_demo

    run_demo(max_new_tokens=args.max_new_tokens, subtasks=args.subtasks, seed=args.seed)


def cmd_eval_model(args: argparse.Namespace) -> None:
    """Greedy exact-answer accuracy per subtask and held-out perplexity of one or more models."""
    from ..bench.evaluation import evaluate_accuracy, held_out_perplexity
    from ..models.loading import check_tokenizer_matches, load_model, load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    questions = [q for q in read_questions(args.questions) if q["category"] in args.subtasks]
    if args.limit:
        questions = [q for s in args.subtasks for q in [r for r in questions if r["category"] == s][: args.limit]]
    report = {}
    for path in args.models:
        model = load_model(path)
        check_tokenizer_matches(tokenizer, model)
        accuracy = evaluate_accuracy(model, tokenizer, questions, args.max_new_tokens)
        report[path] = {"accuracy": accuracy, "perplexity": held_out_perplexity(model, tokenizer)}
    _print_eval(report, args.subtasks)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def _print_eval(report: dict, subtasks: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="exact-answer accuracy (greedy) and held-out perplexity")
    table.add_column("model", no_wrap=True)
    for s in subtasks:
        table.add_column(s, justify="right", no_wrap=True)
    table.add_column("perplexity", justify="right", no_wrap=True)
    for path, row in report.items():
        cells = [f"{100 * row['accuracy'].get(s, float('nan')):.1f}%" for s in subtasks]
        table.add_row(Path(path).name, *cells, f"{row['perplexity']:.3f}")
    Console(width=max(100, 16 * (len(subtasks) + 2))).print(table)


def cmd_bench(args: argparse.Namespace) -> None:
    """Run the mini Spec-Bench and write results.json and report.html."""
    from datetime import datetime

    from ..bench.report import print_summary
    from ..bench.runner import BenchConfig, mismatches, run_bench, write_results

    if args.sampling:
        _bench_sampling(args)
        return
    given = {"speculative": {"num_draft_tokens": args.num_draft_tokens,
                             "confidence_threshold": args.confidence_threshold},
             "kangaroo": {"threshold": args.threshold, "max_draft_tokens": args.max_draft_tokens},
             "hf_early_exit": {"exit_layer": args.exit_layer}}
    options = {method: {k: v for k, v in values.items() if v is not None} for method, values in given.items()}
    fields = dict(model=args.model, subtasks=args.subtasks, device=args.device, dtype=args.dtype,
                  data_dir=args.data_dir, questions=args.questions, target=args.target, draft=args.draft,
                  tokenizer=args.tokenizer, adapter=args.adapter, options=options, threads=args.threads,
                  tuned_kernels=not args.stock_kernels)
    if args.methods:
        fields["methods"] = args.methods
    for name in ("questions_per_subtask", "max_new_tokens", "repeats"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    cfg = BenchConfig.quick(**fields) if args.quick else BenchConfig(**fields)
    out = Path(args.out or Path("results") / datetime.now().strftime("%Y%m%d-%H%M%S"))
    if args.batch_size:
        _bench_batches(cfg, args.batch_size, out, args.force)
        return
    refuse_overwrite(out / "results.json", args.force)
    results = run_bench(cfg)
    path = write_results(results, out)
    print_summary(results)
    print(f"wrote {path} and {path.parent / 'report.html'}")
    wrong = mismatches(results)
    if wrong:
        sys.exit(f"LOSSLESS CHECK FAILED: {', '.join(wrong)} differ from the baseline's greedy output")


def _bench_batches(cfg, batch_sizes: list[int], out: Path, force: bool) -> None:
    """Throughput at several batch sizes: batching.json, batching.md, and the lossless check per row."""
    from ..bench.batch_report import batch_markdown, batch_mismatches, write_batch_results
    from ..bench.batching import run_batch_bench

    refuse_overwrite(out / "batching.json", force)
    results = run_batch_bench(cfg, batch_sizes)
    path = write_batch_results(results, out)
    print(batch_markdown(results))
    print(f"wrote {path} and {path.with_suffix('.md')}")
    wrong = batch_mismatches(results)
    if wrong:
        sys.exit(f"LOSSLESS CHECK FAILED: {', '.join(wrong)}")


def _bench_sampling(args: argparse.Namespace) -> None:
    """MTAD against single-token and speculative sampling at one temperature: sampling.json and the floors."""
    from datetime import datetime

    import torch

    from ..bench.cost_model import cost_curve
    from ..bench.report import print_sampling_summary
    from ..bench.runner import BenchConfig, bench_options, load_bench_models
    from ..bench.sampling_quality import METHODS, compare_sampling, floors
    from ..models.loading import encode_chat

    if args.temperature <= 0:
        raise SystemExit(f"--sampling needs a temperature > 0, got {args.temperature}")
    out = Path(args.out or Path("results") / datetime.now().strftime("%Y%m%d-%H%M%S"))
    refuse_overwrite(out / "sampling.json", args.force)
    cfg = BenchConfig(model=args.model, device=args.device, dtype=args.dtype, data_dir=args.data_dir,
                      target=args.target, draft=args.draft, tokenizer=args.tokenizer, adapter=args.adapter)
    models = load_bench_models(cfg)
    if models.target.device.type == "cpu":
        torch.set_num_threads(args.threads)
    given = {"num_draft_tokens": args.num_draft_tokens, "confidence_threshold": args.confidence_threshold}
    drafting = {k: v for k, v in given.items() if v is not None}
    cfg.options = {"speculative": drafting, "mtad": {**drafting, "num_beams": args.num_beams},
                   "mmtad": {**drafting, "num_beams": args.num_beams}}
    questions = read_questions(args.questions or question_file(args.model, args.data_dir))
    options = bench_options(cfg, cost_curve(models.target, encode_chat(models.tokenizer, questions[0]["turns"][0])))
    quick = args.quick
    report = compare_sampling(
        models, questions, methods=args.methods or METHODS, temperature=args.temperature,
        subtasks=args.subtasks, per_subtask=args.questions_per_subtask or (1 if quick else 4),
        max_new_tokens=args.max_new_tokens or (24 if quick else 48), seeds=range(1 if quick else args.seeds),
        repeats=args.repeats or (1 if quick else 3), options=options,
    )
    floor = floors(report) if {"autoregressive", "speculative", "mtad"} <= set(report["methods"]) else None
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sampling.json"
    path.write_text(json.dumps({**report, "floors": floor, "threads": torch.get_num_threads()}, indent=1))
    if floor:
        print_sampling_summary(report, floor)
    print(f"wrote {path}")


def cmd_sweep(args: argparse.Namespace) -> None:
    """Run a notebook over a parameter grid with papermill and collect the results."""
    from datetime import datetime

    from ..bench.sweep import print_sweep, run_sweep

    out = Path(args.out or Path("results") / f"sweep-{Path(args.grid).stem}-{datetime.now():%Y%m%d-%H%M%S}")
    refuse_overwrite(out / "sweep.json", args.force)
    rows = run_sweep(args.grid, out)
    print_sweep(rows)
    print(f"wrote {out / 'sweep.json'} and {out / 'sweep.html'}")


def cmd_eval_adapter(args: argparse.Namespace) -> None:
    """Top-1 agreement and Σ min(p, q) of the self-draft per subtask on real questions, with and without adapter."""
    from rich.console import Console
    from rich.table import Table

    from ..bench.drafter_quality import drafter_quality
    from ..model_sets.loading import load_default

    models = load_default(args.model)
    questions = read_questions(args.questions or question_file(args.model))
    report = drafter_quality(models, questions, args.per_subtask, args.max_new_tokens)
    table = Table(title=f"self-draft at exit layer {models.adapter.exit_layer} vs the target's greedy replies "
                        f"({args.per_subtask} questions per subtask, {args.max_new_tokens} tokens)")
    for column in ("subtask", "positions", "top-1 (adapter)", "top-1 (none)", "Σmin(p,q) (adapter)",
                   "Σmin(p,q) (none)"):
        table.add_column(column, justify="right")
    for subtask, row in report.items():
        a, n = row["with_adapter"], row["without_adapter"]
        table.add_row(subtask, str(row["positions"]), f"{a['top1']:.3f}", f"{n['top1']:.3f}",
                      f"{a['acceptance']:.3f}", f"{n['acceptance']:.3f}")
    Console(width=140).print(table)
    if args.json:
        refuse_overwrite(Path(args.json), args.force)
        Path(args.json).write_text(json.dumps({"per_subtask": args.per_subtask, "max_new_tokens": args.max_new_tokens,
                                               "exit_layer": models.adapter.exit_layer, "report": report}, indent=1))
        print(f"wrote {args.json}")


def cmd_compare_exit_layers(args: argparse.Namespace) -> None:
    """Kangaroo with one adapter per exit layer, timed against autoregressive decoding on the same prompts."""
    from rich.console import Console
    from rich.table import Table

    from ..adapter.model import KangarooAdapter
    from ..bench.exit_layers import compare_exit_layers
    from ..model_sets.loading import load_default

    models = load_default(args.model)
    adapters = {}
    for folder in args.adapters:
        adapter = KangarooAdapter.from_pretrained(folder, models.target)
        adapters[adapter.exit_layer] = adapter
    questions = read_questions(args.questions or question_file(args.model))
    options = {"max_draft_tokens": args.max_draft_tokens, "threshold": args.threshold}
    report = compare_exit_layers(models, adapters, questions, args.subtasks, args.per_subtask, args.max_new_tokens,
                                 args.repeats, options, args.threads)
    table = Table(title=f"Kangaroo by exit layer, {args.model}, greedy, γ ≤ {args.max_draft_tokens}, "
                        f"threshold {args.threshold} ({args.threads} thread(s))")
    for column in ("exit layer", "speedup", "#MAT", "α", "identical"):
        table.add_column(column, justify="right")
    for layer, row in sorted(report.items()):
        table.add_row(str(layer), f"{row['speedup']:.2f}x", f"{row['mean_accepted']:.2f}",
                      f"{row['acceptance_rate']:.2f}", f"{row['identical']}/{row['prompts']}")
    Console(width=120).print(table)
    if args.json:
        refuse_overwrite(Path(args.json), args.force)
        Path(args.json).write_text(json.dumps({"options": options, "report": report}, indent=1))


def cmd_time_feature_training(args: argparse.Namespace) -> None:
    """Adapter training from stored features against recomputing the target, on the same batches."""
    import torch

    from ..adapter.features import FeatureShards
    from ..adapter.vocab import draft_vocab_of
    from ..bench.feature_training import time_feature_training
    from .train import _target_and_tokenizer

    if args.json:
        refuse_overwrite(Path(args.json), args.force)
    torch.set_num_threads(args.threads)
    tokenizer, target = _target_and_tokenizer(args.model)
    features = FeatureShards(args.features, target, args.exit_layer)
    vocab = draft_vocab_of([(e.ids, e.predicts_reply) for e in features.examples()], args.draft_vocab_size,
                           tokenizer.eos_token_id)
    report = time_feature_training(target, features, vocab, steps=args.steps, batch_size=args.batch_size,
                                   held_out=args.held_out, repeats=args.repeats)
    report.update(model=args.model, exit_layer=args.exit_layer, threads=args.threads,
                  bytes_per_token=features.manifest["bytes_per_token"])
    epoch = report["seconds_per_epoch"]
    print(f"{args.model}, exit layer {args.exit_layer}, batch {args.batch_size}, {report['epoch_steps']} steps per "
          f"epoch: {epoch['features']:.1f} s per epoch from features, {epoch['recompute']:.1f} s recomputing the "
          f"target: {report['speedup']:.1f}x faster (median of {args.repeats}); loss curves differ by at most "
          f"{report['max_loss_difference']:.1e}; features take {report['bytes_per_token']:.0f} bytes per token")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


def cmd_draft_bounds(args: argparse.Namespace) -> None:
    """The hindsight bound on chain drafting's speedup per subtask: adapter, copies, either, on this machine's curve."""
    import torch
    from rich.console import Console
    from rich.table import Table
    from tqdm.auto import tqdm

    from ..bench.cost_model import context_cost_curve
    from ..bench.draft_bounds import SOURCES, hindsight_bounds
    from ..bench.runner import COST_SIZES, bench_prompts
    from ..core.draft_length import ContextCostCurve
    from ..decoding.autoregressive import autoregressive
    from ..model_sets.loading import load_default

    torch.set_num_threads(args.threads)
    models = load_default(args.model)
    questions = read_questions(args.questions or question_file(args.model))
    subtasks = list(dict.fromkeys(q["category"] for q in questions))
    prompts, _ = bench_prompts(models, questions, subtasks, args.questions_per_subtask, args.max_new_tokens)
    if args.curve_from:
        saved = json.loads(Path(args.curve_from).read_text())["cost_curves_by_context"]
        curve = ContextCostCurve({int(k): {int(n): v for n, v in c.items()} for k, c in saved.items()})
    else:
        curve = context_cost_curve(models.target, [ids for _, _, ids in prompts], list(COST_SIZES))
    replies = [(record["category"], ids[0].tolist(), autoregressive(models.target, ids, args.max_new_tokens).tokens)
               for record, _, ids in tqdm(prompts, desc="greedy replies", unit="prompt")]
    bounds = hindsight_bounds(models.target, models.adapter, replies, curve, args.longest)
    table = Table(title=f"hindsight bound on chain drafting's speedup, {args.model}, {len(replies)} prompts, "
                        f"{args.max_new_tokens} new tokens (free drafts, measured verification cost)")
    for column in ("subtask", "tokens", *SOURCES):
        table.add_column(column, justify="right")
    for group, row in bounds.items():
        table.add_row(group, str(row["tokens"]), *(f"{row[name]:.2f}×" for name in SOURCES))
    Console(width=140).print(table)
    if args.json:
        refuse_overwrite(Path(args.json), args.force)
        Path(args.json).write_text(json.dumps({"model": args.model, "prompts": len(replies),
                                               "max_new_tokens": args.max_new_tokens, "longest": args.longest,
                                               "cost_curves_by_context": {str(k): v for k, v in curve.curves.items()},
                                               "bounds": bounds}, indent=1))
        print(f"wrote {args.json}")


def cmd_kernels(args: argparse.Namespace) -> None:
    """The target's pass over n new tokens with PyTorch's stock linear kernels against the tuned ones."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from ..bench.kernels import compare_kernels
    from ..model_sets.loading import load_default
    from ..models.loading import encode_chat

    torch.set_num_threads(args.threads)
    models = load_default(args.model, tuned_kernels=False)
    question = read_questions(args.questions or question_file(args.model))[0]
    report = compare_kernels(models.target, encode_chat(models.tokenizer, question["turns"][0]), repeats=args.repeats)
    table = Table(title=f"{args.model}: one cached pass over n new tokens after {report['context']} "
                        f"({report['threads']} thread(s)), stock against tuned linear kernels")
    for column in ("n", "stock ms", "tuned ms", "speedup", "stock v(n)", "tuned v(n)"):
        table.add_column(column, justify="right")
    for n, row in report["passes"].items():
        table.add_row(str(n), f"{row['stock_ms']['median']:.1f}", f"{row['tuned_ms']['median']:.1f}",
                      f"{row['speedup']:.2f}×", f"{row['stock_cost']:.2f}", f"{row['tuned_cost']:.2f}")
    Console(width=120).print(table)
    if args.json:
        refuse_overwrite(Path(args.json), args.force)
        Path(args.json).write_text(json.dumps({"model": args.model, **report}, indent=1, ensure_ascii=False))
        print(f"wrote {args.json}")


def cmd_ctar(args: argparse.Namespace) -> None:
    """CTAR(k) of Kangaroo's chain and of Medusa's heads on the target's greedy replies, per subtask."""
    import torch
    from rich.console import Console
    from rich.table import Table
    from tqdm.auto import tqdm

    from ..adapter.medusa import medusa1_parameters
    from ..bench.ctar import compare_ctar
    from ..bench.runner import bench_prompts
    from ..decoding.autoregressive import autoregressive
    from ..model_sets.loading import load_default, load_medusa_heads

    if args.json:
        refuse_overwrite(Path(args.json), args.force)
    torch.set_num_threads(args.threads)
    models = load_default(args.model)
    heads = load_medusa_heads(models.target, args.model)
    questions = read_questions(args.questions or question_file(args.model))
    subtasks = list(dict.fromkeys(q["category"] for q in questions))
    prompts, _ = bench_prompts(models, questions, subtasks, args.questions_per_subtask, args.max_new_tokens)
    replies = [(record["category"], ids[0].tolist(), autoregressive(models.target, ids, args.max_new_tokens).tokens)
               for record, _, ids in tqdm(prompts, desc="greedy replies", unit="prompt")]
    found = compare_ctar(models.target, models.adapter, heads, replies)
    parameters = {"kangaroo_adapter": models.adapter.num_parameters(), "medusa_heads": heads.num_parameters(),
                  "medusa1_as_in_the_paper": medusa1_parameters(models.target, heads.num_heads),
                  "target": sum(p.numel() for p in models.target.parameters())}
    table = Table(title=f"CTAR(k): the first k drafts all right, {args.model}, {len(replies)} prompts, "
                        f"{args.max_new_tokens} new tokens (greedy replies)")
    for column in ("subtask", "positions", *(f"{name} k={k}" for name in ("Kangaroo", "Medusa")
                                             for k in range(1, heads.num_heads + 1))):
        table.add_column(column, justify="right")
    for group, row in found.items():
        table.add_row(group, str(row["positions"]), *(f"{v:.2f}" for v in row["kangaroo"] + row["medusa"]))
    Console(width=160).print(table)
    print(", ".join(f"{name.replace('_', ' ')}: {count:,} parameters" for name, count in parameters.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "prompts": len(replies),
                                               "max_new_tokens": args.max_new_tokens, "parameters": parameters,
                                               "ctar": found}, indent=1))
        print(f"wrote {args.json}")
