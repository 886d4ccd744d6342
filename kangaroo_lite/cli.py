"""The `kangaroo-lite` command line: demo, data, training, evaluation, benchmark, sweeps."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .corpus import MIXTURES, SUBTASKS, evaluation_set, format_example, read_questions, training_corpus, write_jsonl
from .models import DATA_DIR


def _refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and any(path.iterdir() if path.is_dir() else [path]) and not force:
        raise SystemExit(f"{path} already exists; pass --force to overwrite it")


def cmd_demo(args: argparse.Namespace) -> None:
    """One prompt per subtask through every method, coloured by token fate, with a table."""
    from .demo import run_demo

    run_demo(max_new_tokens=args.max_new_tokens, subtasks=args.subtasks, seed=args.seed)


def cmd_make_data(args: argparse.Namespace) -> None:
    """Regenerate the evaluation set and (optionally) retrain the tokenizer."""
    from .tokenizer import train_tokenizer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    questions = out / "question.jsonl"
    _refuse_overwrite(questions, args.force)
    write_jsonl(evaluation_set(), questions)
    print(f"wrote {questions}")
    if args.tokenizer:
        tok_dir = out / "tokenizer"
        _refuse_overwrite(tok_dir, args.force)
        texts = [format_example(e) for e in training_corpus(args.tokenizer_examples, seed=args.seed)]
        train_tokenizer(texts, args.vocab_size).save_pretrained(tok_dir)
        print(f"wrote {tok_dir}")


def cmd_train_model(args: argparse.Namespace) -> None:
    """Train a target, draft or tiny model from scratch on the generated corpus."""
    import torch
    from transformers import LlamaForCausalLM

    from .models import load_model, load_tokenizer
    from .training import TrainConfig, model_config, train_model

    out = Path(args.out)
    if (out / "model.safetensors").exists() and not args.force:
        raise SystemExit(f"{out} already holds a model; pass --force to overwrite it")
    tokenizer = load_tokenizer(args.tokenizer)
    texts = [format_example(e) for e in training_corpus(args.examples, seed=args.seed, mixture=MIXTURES[args.mixture])]
    torch.manual_seed(args.seed)
    if args.init:  # a further training stage on an existing model
        model = load_model(args.init)
        model.train()
    else:
        model = LlamaForCausalLM(model_config(args.shape, tokenizer))
    print(f"{args.shape}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
                      warmup=args.warmup, seed=args.seed, checkpoint_every=args.checkpoint_every)
    losses = train_model(model, tokenizer, texts, out, cfg, resume=not args.no_resume)
    print(f"final loss {sum(losses[-20:]) / len(losses[-20:]):.4f}; saved to {out}")


def cmd_train_adapter(args: argparse.Namespace) -> None:
    """Train a Kangaroo adapter for a target on the corpus and save it."""
    from .adapter import KangarooAdapter, train_adapter
    from .models import check_tokenizer_matches, load_model, load_tokenizer

    out = Path(args.out)
    _refuse_overwrite(out, args.force)
    tokenizer = load_tokenizer(args.tokenizer)
    target = load_model(args.target)
    check_tokenizer_matches(tokenizer, target)
    init = KangarooAdapter.from_pretrained(args.init, target) if args.init else None  # a further stage
    exit_layer = args.exit_layer if args.exit_layer is not None else (init.exit_layer if init else 1)
    # not the target's training draw
    corpus = training_corpus(args.examples, seed=args.seed + 1000, mixture=MIXTURES[args.mixture])
    adapter, history = train_adapter(target, tokenizer, corpus, exit_layer, steps=args.steps, adapter=init,
                                     batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, seed=args.seed,
                                     held_out=300, eval_every=200, draft_vocab_size=args.draft_vocab_size or None)
    if not args.draft_vocab_size:  # 0: the whole vocabulary, even where --init had a draft vocabulary
        adapter.set_draft_vocab(None)
    adapter.save_pretrained(out)
    (out / "training.json").write_text(json.dumps(history, indent=1))
    last = history[-1]
    vocab = "the whole vocabulary" if adapter.draft_vocab is None else f"{len(adapter.draft_vocab):,} tokens"
    print(f"adapter: {adapter.num_parameters():,} parameters ({100 * adapter.fraction_of(target):.1f}% of the "
          f"target); held-out loss {last['held_out_loss']:.3f}, top-1 {last['top1']:.3f}, "
          f"expected acceptance {last['acceptance']:.3f}; drafts over {vocab}; saved to {out}")


def cmd_eval_model(args: argparse.Namespace) -> None:
    """Greedy exact-answer accuracy per subtask and held-out perplexity of one or more models."""
    from .evaluation import evaluate_accuracy, held_out_perplexity
    from .models import check_tokenizer_matches, load_model, load_tokenizer

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

    from .bench import BenchConfig, mismatches, run_bench, write_results
    from .report import print_summary

    if args.sampling:
        _bench_sampling(args)
        return
    options = {"speculative": {"num_draft_tokens": args.num_draft_tokens,
                               "confidence_threshold": args.confidence_threshold},
               "kangaroo": {"threshold": args.threshold, "max_draft_tokens": args.max_draft_tokens}}
    if args.exit_layer is not None:
        options["hf_early_exit"] = {"exit_layer": args.exit_layer}
    fields = dict(subtasks=args.subtasks, device=args.device, dtype=args.dtype, data_dir=args.data_dir,
                  questions=args.questions, target=args.target, draft=args.draft, tokenizer=args.tokenizer,
                  adapter=args.adapter, options=options, threads=args.threads)
    if args.methods:
        fields["methods"] = args.methods
    for name in ("questions_per_subtask", "max_new_tokens", "repeats"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    cfg = BenchConfig.quick(**fields) if args.quick else BenchConfig(**fields)
    out = Path(args.out or Path("results") / datetime.now().strftime("%Y%m%d-%H%M%S"))
    _refuse_overwrite(out / "results.json", args.force)
    results = run_bench(cfg)
    path = write_results(results, out)
    print_summary(results)
    print(f"wrote {path} and {path.parent / 'report.html'}")
    wrong = mismatches(results)
    if wrong:
        sys.exit(f"LOSSLESS CHECK FAILED: {', '.join(wrong)} differ from the baseline's greedy output")


def _bench_sampling(args: argparse.Namespace) -> None:
    """MTAD against single-token and speculative sampling at one temperature: sampling.json and the floors."""
    from datetime import datetime

    import torch

    from .bench import BenchConfig, load_bench_models
    from .report import print_sampling_summary
    from .sampling_quality import METHODS, compare_sampling, floors

    if args.temperature <= 0:
        raise SystemExit(f"--sampling needs a temperature > 0, got {args.temperature}")
    out = Path(args.out or Path("results") / datetime.now().strftime("%Y%m%d-%H%M%S"))
    _refuse_overwrite(out / "sampling.json", args.force)
    cfg = BenchConfig(device=args.device, dtype=args.dtype, data_dir=args.data_dir, target=args.target,
                      draft=args.draft, tokenizer=args.tokenizer, adapter=args.adapter)
    models = load_bench_models(cfg)
    if models.target.device.type == "cpu":
        torch.set_num_threads(args.threads)
    drafting = {"num_draft_tokens": args.num_draft_tokens, "confidence_threshold": args.confidence_threshold}
    options = {"speculative": drafting, "mtad": {**drafting, "num_beams": args.num_beams},
               "mmtad": {**drafting, "num_beams": args.num_beams}}
    questions = read_questions(args.questions or Path(args.data_dir) / "question.jsonl")
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

    from .sweep import print_sweep, run_sweep

    out = Path(args.out or Path("results") / f"sweep-{Path(args.grid).stem}-{datetime.now():%Y%m%d-%H%M%S}")
    _refuse_overwrite(out / "sweep.json", args.force)
    rows = run_sweep(args.grid, out)
    print_sweep(rows)
    print(f"wrote {out / 'sweep.json'} and {out / 'sweep.html'}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="kangaroo-lite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run every method on one prompt per subtask")
    demo.add_argument("--max-new-tokens", type=int, default=64)
    demo.add_argument("--subtasks", nargs="+", default=list(SUBTASKS), choices=SUBTASKS)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)

    data = sub.add_parser("make-data", help="regenerate question.jsonl (and the tokenizer)")
    data.add_argument("--out", default=str(DATA_DIR))
    data.add_argument("--tokenizer", action="store_true", help="also retrain the tokenizer")
    data.add_argument("--vocab-size", type=int, default=4096)
    data.add_argument("--tokenizer-examples", type=int, default=30000)
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--force", action="store_true", help="overwrite existing files")
    data.set_defaults(func=cmd_make_data)

    train = sub.add_parser("train-model", help="train a model from scratch on the corpus")
    train.add_argument("--shape", choices=["target", "draft", "tiny"], required=True)
    train.add_argument("--out", required=True)
    train.add_argument("--tokenizer", default=str(DATA_DIR / "tokenizer"))
    train.add_argument("--examples", type=int, default=130000)
    train.add_argument("--steps", type=int, default=2000)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--seq-len", type=int, default=256)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--warmup", type=int, default=100)
    train.add_argument("--init", help="continue from this model (a second training stage)")
    train.add_argument("--mixture", choices=list(MIXTURES), default="pretraining",
                       help="subtask proportions of the generated corpus")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--checkpoint-every", type=int, default=200)
    train.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    train.add_argument("--force", action="store_true", help="overwrite a finished model")
    train.set_defaults(func=cmd_train_model)

    adapt = sub.add_parser("train-adapter", help="train a Kangaroo adapter for a target")
    adapt.add_argument("--target", default=str(DATA_DIR / "models" / "target"))
    adapt.add_argument("--tokenizer", default=str(DATA_DIR / "tokenizer"))
    adapt.add_argument("--out", default=str(DATA_DIR / "models" / "adapter"))
    adapt.add_argument("--exit-layer", type=int, help="default: 1, or the --init adapter's")
    adapt.add_argument("--init", help="continue training this adapter (a second training stage)")
    adapt.add_argument("--examples", type=int, default=26000)
    adapt.add_argument("--steps", type=int, default=2400)
    adapt.add_argument("--mixture", choices=list(MIXTURES), default="fine-tuning",
                       help="subtask proportions of the corpus (fine-tuning: more math and RAG; "
                            "translation-heavy: the shipped adapter's second stage)")
    adapt.add_argument("--batch-size", type=int, default=16)
    adapt.add_argument("--lr", type=float, default=1e-3)
    adapt.add_argument("--warmup", type=int, default=30)
    adapt.add_argument("--seed", type=int, default=0)
    adapt.add_argument("--draft-vocab-size", type=int, default=1024,
                       help="draft only over this many of the replies' most frequent tokens (0: the whole vocabulary)")
    adapt.add_argument("--force", action="store_true", help="overwrite an existing adapter")
    adapt.set_defaults(func=cmd_train_adapter)

    evaluate = sub.add_parser("eval-model", help="accuracy per subtask and perplexity")
    evaluate.add_argument("models", nargs="*", default=[str(DATA_DIR / "models" / "target"),
                                                        str(DATA_DIR / "models" / "draft")])
    evaluate.add_argument("--tokenizer", default=str(DATA_DIR / "tokenizer"))
    evaluate.add_argument("--questions", default=str(DATA_DIR / "question.jsonl"))
    evaluate.add_argument("--subtasks", nargs="+", default=list(SUBTASKS), choices=SUBTASKS)
    evaluate.add_argument("--limit", type=int, default=0, help="questions per subtask (0: all)")
    evaluate.add_argument("--max-new-tokens", type=int, default=96)
    evaluate.add_argument("--json", help="also write the report to this JSON file")
    evaluate.set_defaults(func=cmd_eval_model)
    bench = sub.add_parser("bench", help="the mini Spec-Bench benchmark of every method")
    bench.add_argument("--methods", nargs="+", help="default: every method, ours and Hugging Face's")
    bench.add_argument("--subtasks", nargs="+", default=list(SUBTASKS))
    bench.add_argument("--questions-per-subtask", type=int)
    bench.add_argument("--max-new-tokens", type=int)
    bench.add_argument("--repeats", type=int)
    bench.add_argument("--quick", action="store_true", help="a smoke-sized run (under 2 minutes)")
    bench.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    bench.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16")
    bench.add_argument("--threads", type=int, default=1, help="CPU threads (tiny models decode fastest on one)")
    bench.add_argument("--num-draft-tokens", type=int, default=20, help="speculative: most drafts per round")
    bench.add_argument("--confidence-threshold", type=float, default=0.4,
                       help="speculative: stop drafting below this draft confidence (0: never)")
    bench.add_argument("--threshold", type=float, default=0.4, help="kangaroo: draft-step early-exit threshold")
    bench.add_argument("--max-draft-tokens", type=int, default=20, help="kangaroo: most drafts per round")
    bench.add_argument("--exit-layer", type=int, help="hf_early_exit: layers of the early-exit draft")
    bench.add_argument("--data-dir", default=str(DATA_DIR))
    bench.add_argument("--questions", default="", help="a question.jsonl (ours or Spec-Bench's)")
    bench.add_argument("--target", default="", help="a local Hugging Face checkpoint for the target")
    bench.add_argument("--draft", default="", help="a local checkpoint for the draft")
    bench.add_argument("--tokenizer", default="", help="a local tokenizer folder")
    bench.add_argument("--adapter", default="", help="a trained Kangaroo adapter folder")
    bench.add_argument("--sampling", action="store_true",
                       help="instead: MTAD vs single-token and speculative sampling (perplexity, accuracy, "
                            "speed), written to sampling.json")
    bench.add_argument("--temperature", type=float, default=1.5, help="--sampling: the temperature")
    bench.add_argument("--seeds", type=int, default=3, help="--sampling: seeds per question")
    bench.add_argument("--num-beams", type=int, default=2, help="--sampling: MTAD's beam width B")
    bench.add_argument("--out", help="output folder (default results/<timestamp>/)")
    bench.add_argument("--force", action="store_true", help="overwrite an existing results.json")
    bench.set_defaults(func=cmd_bench)
    sweep = sub.add_parser("sweep", help="run a notebook over a parameter grid (papermill)")
    sweep.add_argument("grid", help="a YAML grid file, e.g. experiments/threshold.yaml")
    sweep.add_argument("--out", help="output folder (default results/sweep-<name>-<timestamp>/)")
    sweep.add_argument("--force", action="store_true", help="overwrite an existing sweep.json")
    sweep.set_defaults(func=cmd_sweep)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of `kangaroo-lite`."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"kangaroo-lite {args.command}: {error}")


if __name__ == "__main__":
    main()
