"""The `kangaroo-lite` command line: demo, data, training, evaluation, benchmark, sweeps.

May import: every other folder (the top floor, beside `notebook`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..model_sets.loading import MODEL_SETS
from ..models.corpus import MIXTURES, SUBTASKS
from ..models.loading import DATA_DIR, DATA_IS_INSTALLED
from .course import cmd_notebooks
from .export import cmd_export_draft
from .measure import (
    cmd_bench,
    cmd_compare_exit_layers,
    cmd_ctar,
    cmd_demo,
    cmd_draft_bounds,
    cmd_eval_adapter,
    cmd_eval_model,
    cmd_kernels,
    cmd_sweep,
    cmd_time_feature_training,
)
from .train import (
    cmd_distill_replies,
    cmd_make_data,
    cmd_precompute_features,
    cmd_train_adapter,
    cmd_train_adapter_on_features,
    cmd_train_medusa,
    cmd_train_model,
    cmd_write_prompts,
)


def _writes_into_data(path: Path) -> dict:
    """A default `--out` inside the data folder in a checkout; required where that folder is an installed package's."""
    if DATA_IS_INSTALLED:
        return {"required": True, "help": f"required here: the installed package's data ({path}) is not written to "
                                          "unless you name it"}
    return {"default": str(path)}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="kangaroo-lite", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run every method on one prompt per subtask")
    demo.add_argument("--max-new-tokens", type=int, default=64)
    demo.add_argument("--subtasks", nargs="+", default=list(SUBTASKS), choices=SUBTASKS)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)

    course = sub.add_parser("notebooks", help="copy the course's notebooks into a folder (never over your edits)")
    course.add_argument("dir", help="the folder to copy them into (created if missing)")
    course.set_defaults(func=cmd_notebooks)

    data = sub.add_parser("make-data", help="regenerate question.jsonl (and the tokenizer)")
    data.add_argument("--out", **_writes_into_data(DATA_DIR))
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
    adapt.add_argument("--out", **_writes_into_data(DATA_DIR / "models" / "adapter"))
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
    adapt.add_argument("--held-out", type=int, default=300, help="examples kept out of training and evaluated")
    adapt.add_argument("--eval-every", type=int, default=200, help="evaluate (and log) every N steps")
    adapt.add_argument("--checkpoint-every", type=int, default=0,
                       help="save a resumable checkpoint to OUT/checkpoint every N steps (0: never)")
    adapt.add_argument("--resume", action="store_true",
                       help="continue the run whose checkpoint is in OUT/checkpoint (the same configuration)")
    adapt.add_argument("--force", action="store_true",
                       help="overwrite an existing adapter (or start afresh over an unfinished run's checkpoint)")
    adapt.set_defaults(func=cmd_train_adapter)

    replies = sub.add_parser("distill-replies", help="the target's replies to the distillation prompts")
    replies.add_argument("--model", default="smollm2", choices=["smollm2"])
    replies.add_argument("--prompts", default=str(DATA_DIR / "distill" / "prompts.jsonl"))
    replies.add_argument("--out", required=True, help="a JSON-lines file (appended to: the run resumes)")
    replies.add_argument("--max-new-tokens", type=int, default=160)
    replies.add_argument("--batch-size", type=int, default=16)
    replies.add_argument("--limit", type=int, default=0, help="only the first N prompts (0: all)")
    replies.add_argument("--sample", type=int, default=0, help="a seeded random N prompts, in file order (0: all)")
    replies.add_argument("--seed", type=int, default=0, help="the seed of --sample")
    replies.add_argument("--threads", type=int, default=2)
    replies.set_defaults(func=cmd_distill_replies)

    writing = sub.add_parser("write-prompts", help="distillation prompts whose material the target writes itself")
    writing.add_argument("--model", default="smollm2", choices=["smollm2"])
    writing.add_argument("--out", required=True, help="a JSON-lines file (appended to: the run resumes)")
    writing.add_argument("--per-subtask", type=int, default=200)
    writing.add_argument("--seed", type=int, default=0)
    writing.add_argument("--max-new-tokens", type=int, default=120)
    writing.add_argument("--temperature", type=float, default=0.9)
    writing.add_argument("--batch-size", type=int, default=16)
    writing.add_argument("--threads", type=int, default=2)
    writing.set_defaults(func=cmd_write_prompts)

    features = sub.add_parser("precompute-features", help="the target's exited states and top-k logits, in shards")
    features.add_argument("--model", default="smollm2", choices=["smollm2", "tiny"])
    source = features.add_mutually_exclusive_group(required=True)
    source.add_argument("--replies", nargs="+", help="one or more replies files, in order")
    source.add_argument("--corpus-examples", type=int,
                        help="tiny: N examples of the synthetic fine-tuning corpus (the adapter's draw) instead")
    features.add_argument("--out", required=True)
    features.add_argument("--exit-layers", type=int, nargs="+", default=[2])
    features.add_argument("--top-k", type=int, default=32)
    features.add_argument("--batch-size", type=int, default=8)
    features.add_argument("--threads", type=int, default=2)
    features.set_defaults(func=cmd_precompute_features)

    distil = sub.add_parser("train-adapter-features", help="train a Kangaroo adapter from precomputed features")
    distil.add_argument("--model", default="smollm2", choices=["smollm2", "tiny"])
    distil.add_argument("--features", required=True)
    distil.add_argument("--exit-layer", type=int, default=1)
    distil.add_argument("--out", required=True)
    distil.add_argument("--init", help="continue training this adapter")
    distil.add_argument("--mlp", action="store_true",
                        help="keep the decoder block's MLP in the adapter (a whole layer; SmolLM2: 3.5M weights)")
    distil.add_argument("--draft-vocab-size", type=int, default=8192)
    distil.add_argument("--steps", type=int, default=2000)
    distil.add_argument("--batch-size", type=int, default=8)
    distil.add_argument("--lr", type=float, default=3e-3)
    distil.add_argument("--warmup", type=int, default=30)
    distil.add_argument("--eval-every", type=int, default=200)
    distil.add_argument("--seed", type=int, default=0)
    distil.add_argument("--held-out", type=int, default=64, help="examples kept out of training and evaluated")
    distil.add_argument("--threads", type=int, default=2)
    distil.add_argument("--checkpoint-every", type=int, default=0,
                        help="save a resumable checkpoint to OUT/checkpoint every N steps (0: never)")
    distil.add_argument("--resume", action="store_true",
                        help="continue the run whose checkpoint is in OUT/checkpoint (the same configuration)")
    distil.add_argument("--recompute", action="store_true",
                        help="run the target over every batch instead of reading its features (to time what they save)")
    distil.add_argument("--force", action="store_true",
                        help="overwrite an existing adapter (or start afresh over an unfinished run's checkpoint)")
    distil.set_defaults(func=cmd_train_adapter_on_features)

    medusa = sub.add_parser("train-medusa", help="train Medusa-1 heads from final-layer features")
    medusa.add_argument("--model", default="smollm2", choices=["smollm2", "tiny"])
    medusa.add_argument("--features", required=True, help="a feature folder holding the last layer (see --exit-layers)")
    medusa.add_argument("--out", required=True)
    medusa.add_argument("--heads", type=int, default=4)
    medusa.add_argument("--shared-lm-head", action="store_true",
                        help="the heads share the target's LM head (frozen) instead of each training its own")
    medusa.add_argument("--draft-vocab-size", type=int, default=0, help="propose only the N most used reply tokens "
                        "(0: the whole vocabulary)")
    medusa.add_argument("--steps", type=int, default=1000)
    medusa.add_argument("--batch-size", type=int, default=8)
    medusa.add_argument("--lr", type=float, default=1e-3)
    medusa.add_argument("--warmup", type=int, default=50)
    medusa.add_argument("--eval-every", type=int, default=100)
    medusa.add_argument("--seed", type=int, default=0)
    medusa.add_argument("--held-out", type=int, default=64, help="examples kept out of training and evaluated")
    medusa.add_argument("--threads", type=int, default=1)
    medusa.add_argument("--force", action="store_true", help="overwrite existing heads")
    medusa.set_defaults(func=cmd_train_medusa)

    timing = sub.add_parser("time-feature-training",
                            help="adapter training from stored features against recomputing the target")
    timing.add_argument("--model", default="smollm2", choices=["smollm2", "tiny"])
    timing.add_argument("--features", required=True)
    timing.add_argument("--exit-layer", type=int, default=1)
    timing.add_argument("--draft-vocab-size", type=int, default=8192)
    timing.add_argument("--steps", type=int, default=20, help="optimiser steps per timed run")
    timing.add_argument("--batch-size", type=int, default=8)
    timing.add_argument("--held-out", type=int, default=8)
    timing.add_argument("--repeats", type=int, default=3)
    timing.add_argument("--threads", type=int, default=1)
    timing.add_argument("--json", help="also write the report to this JSON file")
    timing.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    timing.set_defaults(func=cmd_time_feature_training)

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
    quality = sub.add_parser("eval-adapter", help="self-draft agreement per subtask, with and without adapter")
    quality.add_argument("--model", default="smollm2", choices=MODEL_SETS)
    quality.add_argument("--questions", default="", help="default: the model set's question file")
    quality.add_argument("--per-subtask", type=int, default=10)
    quality.add_argument("--max-new-tokens", type=int, default=64)
    quality.add_argument("--json", help="also write the report to this JSON file")
    quality.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    quality.set_defaults(func=cmd_eval_adapter)

    kernels = sub.add_parser("kernels", help="the target's verification passes with stock against tuned linear kernels")
    kernels.add_argument("--model", default="smollm2", choices=MODEL_SETS)
    kernels.add_argument("--questions", default="", help="default: the model set's question file (its first prompt)")
    kernels.add_argument("--repeats", type=int, default=9)
    kernels.add_argument("--threads", type=int, default=1)
    kernels.add_argument("--json", help="also write the report to this JSON file")
    kernels.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    kernels.set_defaults(func=cmd_kernels)

    bounds = sub.add_parser("draft-bounds", help="how fast chain drafting could be here, in hindsight, per subtask")
    bounds.add_argument("--model", default="smollm2", choices=MODEL_SETS)
    bounds.add_argument("--questions", default="", help="default: the model set's question file")
    bounds.add_argument("--questions-per-subtask", type=int, default=4)
    bounds.add_argument("--max-new-tokens", type=int, default=48)
    bounds.add_argument("--longest", type=int, default=8, help="most drafts verified in one round")
    bounds.add_argument("--curve-from", default="", help="a bench results JSON whose cost curves to use "
                                                         "(default: measure them now)")
    bounds.add_argument("--threads", type=int, default=1)
    bounds.add_argument("--json", help="also write the bounds to this JSON file")
    bounds.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    bounds.set_defaults(func=cmd_draft_bounds)

    ctar = sub.add_parser("ctar", help="Kangaroo against Medusa: the chance the first k drafts are all right, "
                                       "per subtask, with their extra parameters")
    ctar.add_argument("--model", default="smollm2", choices=MODEL_SETS)
    ctar.add_argument("--questions", default="", help="default: the model set's question file")
    ctar.add_argument("--questions-per-subtask", type=int, default=4)
    ctar.add_argument("--max-new-tokens", type=int, default=48)
    ctar.add_argument("--threads", type=int, default=1)
    ctar.add_argument("--json", help="also write the comparison to this JSON file")
    ctar.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    ctar.set_defaults(func=cmd_ctar)

    layers = sub.add_parser("compare-exit-layers", help="Kangaroo's speed with one adapter per exit layer")
    layers.add_argument("adapters", nargs="+", help="adapter folders, one per exit layer")
    layers.add_argument("--model", default="smollm2", choices=MODEL_SETS)
    layers.add_argument("--questions", default="", help="default: the model set's question file")
    layers.add_argument("--subtasks", nargs="+", default=list(SUBTASKS))
    layers.add_argument("--per-subtask", type=int, default=2)
    layers.add_argument("--max-new-tokens", type=int, default=48)
    layers.add_argument("--repeats", type=int, default=2)
    layers.add_argument("--max-draft-tokens", type=int, default=2)
    layers.add_argument("--threshold", type=float, default=0.5)
    layers.add_argument("--threads", type=int, default=1)
    layers.add_argument("--json", help="also write the report to this JSON file")
    layers.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    layers.set_defaults(func=cmd_compare_exit_layers)

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
    bench.add_argument("--model", choices=MODEL_SETS, default="tiny",
                       help="model set: tiny (embedded, mini Spec-Bench) or smollm2 (SmolLM2-135M, real Spec-Bench)")
    bench.add_argument("--num-draft-tokens", type=int, help="speculative: most drafts per round (tiny: 20)")
    bench.add_argument("--confidence-threshold", type=float,
                       help="speculative: stop drafting below this draft confidence (0: never; tiny: 0.4)")
    bench.add_argument("--threshold", type=float, help="kangaroo: draft-step early-exit threshold (tiny: 0.4)")
    bench.add_argument("--max-draft-tokens", type=int, help="kangaroo: most drafts per round (tiny: 20)")
    bench.add_argument("--exit-layer", type=int, help="hf_early_exit: layers of the early-exit draft")
    bench.add_argument("--data-dir", default=str(DATA_DIR))
    bench.add_argument("--questions", default="", help="a question.jsonl (ours or Spec-Bench's)")
    bench.add_argument("--target", default="", help="a local Hugging Face checkpoint for the target")
    bench.add_argument("--draft", default="", help="a local checkpoint for the draft")
    bench.add_argument("--tokenizer", default="", help="a local tokenizer folder")
    bench.add_argument("--adapter", default="", help="a trained Kangaroo adapter folder")
    bench.add_argument("--stock-kernels", action="store_true",
                       help="PyTorch's own linear kernels, not those measured fastest for few rows on a CPU")
    bench.add_argument("--sampling", action="store_true",
                       help="instead: MTAD vs single-token and speculative sampling (perplexity, accuracy, "
                            "speed), written to sampling.json")
    bench.add_argument("--temperature", type=float, default=1.5, help="--sampling: the temperature")
    bench.add_argument("--seeds", type=int, default=3, help="--sampling: seeds per question")
    bench.add_argument("--num-beams", type=int, default=2, help="--sampling: MTAD's beam width B")
    bench.add_argument("--batch-size", type=int, nargs="+",
                       help="instead: throughput at these batch sizes (e.g. 1 2 4 8 16) of the batched methods "
                            "against batched autoregressive decoding, written to batching.json and batching.md")
    bench.add_argument("--out", help="output folder (default results/<timestamp>/)")
    bench.add_argument("--force", action="store_true", help="overwrite an existing results.json")
    bench.set_defaults(func=cmd_bench)
    sweep = sub.add_parser("sweep", help="run a notebook over a parameter grid (papermill)")
    sweep.add_argument("grid", help="a YAML grid file, e.g. experiments/threshold.yaml")
    sweep.add_argument("--out", help="output folder (default results/sweep-<name>-<timestamp>/)")
    sweep.add_argument("--force", action="store_true", help="overwrite an existing sweep.json")
    sweep.set_defaults(func=cmd_sweep)

    export = sub.add_parser("export-draft", help="save Kangaroo's self-draft as a draft model for serving engines")
    export.add_argument("--model", choices=MODEL_SETS, required=True, help="the model set whose adapter to export")
    export.add_argument("--out", required=True, help="a new (or empty) folder for the draft model")
    export.add_argument("--force", action="store_true", help="write into a folder that already holds files")
    export.set_defaults(func=cmd_export_draft)
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
