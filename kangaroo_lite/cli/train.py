"""Commands that make data and train: the corpus, language models, Kangaroo adapters (online or from features)."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from ..models.corpus import (
    MIXTURES,
    evaluation_set,
    format_example,
    training_corpus,
    write_jsonl,
)
from .files import refuse_overwrite


def cmd_make_data(args: argparse.Namespace) -> None:
    """Regenerate the evaluation set and (optionally) retrain the tokenizer."""
    from ..models.tokenizer import train_tokenizer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    questions = out / "question.jsonl"
    refuse_overwrite(questions, args.force)
    write_jsonl(evaluation_set(), questions)
    print(f"wrote {questions}")
    if args.tokenizer:
        tok_dir = out / "tokenizer"
        refuse_overwrite(tok_dir, args.force)
        texts = [format_example(e) for e in training_corpus(args.tokenizer_examples, seed=args.seed)]
        train_tokenizer(texts, args.vocab_size).save_pretrained(tok_dir)
        print(f"wrote {tok_dir}")


def cmd_train_model(args: argparse.Namespace) -> None:
    """Train a target, draft or tiny model from scratch on the generated corpus."""
    import torch
    from transformers import LlamaForCausalLM

    from ..models.loading import load_model, load_tokenizer
    from ..models.training import TrainConfig, model_config, train_model

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


def _check_adapter_out(out: Path, resume: bool, force: bool) -> None:
    """Without `force`, refuse to overwrite a finished adapter or start afresh over an unfinished run."""
    if not resume and not (out / "checkpoint").is_dir():
        refuse_overwrite(out, force)
        return
    finished = [p.name for p in out.iterdir() if not p.name.startswith("checkpoint")] if out.is_dir() else []
    if finished and not force:
        raise SystemExit(f"{out} already exists ({', '.join(sorted(finished))}); pass --force to overwrite it")
    if not resume and not force:
        raise SystemExit(f"{out} holds the checkpoint of an unfinished run: pass --resume to continue it, "
                         "or --force to start afresh")


def cmd_train_adapter(args: argparse.Namespace) -> None:
    """Train a Kangaroo adapter for a target on the corpus and save it (under `accelerate launch`: on N processes)."""
    from accelerate import PartialState

    from ..adapter.model import KangarooAdapter
    from ..adapter.training import train_adapter
    from ..models.loading import check_tokenizer_matches, load_model, load_tokenizer

    out = Path(args.out)
    _check_adapter_out(out, args.resume, args.force)  # every process, before any writes (training syncs them)
    tokenizer = load_tokenizer(args.tokenizer)
    target = load_model(args.target)
    check_tokenizer_matches(tokenizer, target)
    init = KangarooAdapter.from_pretrained(args.init, target) if args.init else None  # a further stage
    exit_layer = args.exit_layer if args.exit_layer is not None else (init.exit_layer if init else 1)
    # not the target's training draw
    corpus = training_corpus(args.examples, seed=args.seed + 1000, mixture=MIXTURES[args.mixture])
    adapter, history = train_adapter(target, tokenizer, corpus, exit_layer, steps=args.steps, adapter=init,
                                     batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, seed=args.seed,
                                     held_out=args.held_out, eval_every=args.eval_every,
                                     draft_vocab_size=args.draft_vocab_size or None, checkpoint=out / "checkpoint",
                                     checkpoint_every=args.checkpoint_every, resume=args.resume)
    if not args.draft_vocab_size:  # 0: the whole vocabulary, even where --init had a draft vocabulary
        adapter.set_draft_vocab(None)
    state = PartialState()  # the processes `accelerate launch` started (after `Accelerator()`, which sets it up)
    if state.is_main_process:  # every process holds the same adapter: one writes it
        adapter.save_pretrained(out)
        (out / "training.json").write_text(json.dumps(history, indent=1))
        last = history[-1]
        vocab = "the whole vocabulary" if adapter.draft_vocab is None else f"{len(adapter.draft_vocab):,} tokens"
        print(f"adapter: {adapter.num_parameters():,} parameters ({100 * adapter.fraction_of(target):.1f}% of the "
              f"target); held-out loss {last['held_out_loss']:.3f}, top-1 {last['top1']:.3f}, "
              f"expected acceptance {last['acceptance']:.3f}; drafts over {vocab}"
              f"{f' ({state.num_processes} processes)' if state.num_processes > 1 else ''}; saved to {out}")
    state.wait_for_everyone()  # no process returns before the adapter is complete


def _target_and_tokenizer(model: str):
    """A model set's tokenizer and target (the adapter and draft are not needed to train a new adapter)."""
    from ..models.loading import DATA_DIR, load_model, load_tokenizer
    from ..models.smollm2 import smollm2_dir

    if model == "tiny":
        return load_tokenizer(DATA_DIR / "tokenizer"), load_model(DATA_DIR / "models" / "target")
    folder = smollm2_dir()
    return load_tokenizer(folder), load_model(folder)


def cmd_distill_replies(args: argparse.Namespace) -> None:
    """The target's greedy replies to the project's distillation prompts (resumable)."""
    import torch

    from ..adapter.replies import generate_replies

    torch.set_num_threads(args.threads)
    tokenizer, target = _target_and_tokenizer(args.model)
    prompts = [json.loads(line) for line in Path(args.prompts).read_text(encoding="utf-8").splitlines() if line]
    if args.limit:
        prompts = prompts[: args.limit]
    if args.sample:
        chosen = sorted(random.Random(args.seed).sample(range(len(prompts)), min(args.sample, len(prompts))))
        prompts = [prompts[i] for i in chosen]
    path = generate_replies(target, tokenizer, prompts, args.out, args.max_new_tokens, args.batch_size)
    print(f"replies in {path}")


def cmd_write_prompts(args: argparse.Namespace) -> None:
    """Prompts whose material (questions, problems, articles, paragraphs) the target writes (resumable)."""
    import torch

    from ..adapter.written_prompts import write_prompts

    torch.set_num_threads(args.threads)
    tokenizer, target = _target_and_tokenizer(args.model)
    report = write_prompts(target, tokenizer, args.out, args.per_subtask, args.seed, args.max_new_tokens,
                           args.temperature, args.batch_size)
    unusable = report["unusable"]
    print(f"{report['written']} prompts appended to {args.out}; {len(unusable)} unusable (too short)"
          + (f": {', '.join(unusable[:10])}{' …' if len(unusable) > 10 else ''}" if unusable else ""))


def cmd_precompute_features(args: argparse.Namespace) -> None:
    """The target's exited states and top-k next-token logits on the replies, in shards."""
    import torch

    from ..adapter.features import precompute_features
    from ..adapter.replies import read_replies, reply_examples
    from ..adapter.training import encode_corpus

    torch.set_num_threads(args.threads)
    tokenizer, target = _target_and_tokenizer(args.model)
    if args.replies:
        examples = reply_examples([record for path in args.replies for record in read_replies(path)])
    elif args.model != "tiny":
        raise SystemExit("--corpus-examples draws the tiny world's corpus: use it with --model tiny")
    else:  # the draw train-adapter makes (seed 1000, fine-tuning mixture)
        examples = encode_corpus(tokenizer, training_corpus(args.corpus_examples, seed=1000,
                                                            mixture=MIXTURES["fine-tuning"]))
    out = precompute_features(target, examples, args.out, args.exit_layers, top_k=args.top_k,
                              batch_size=args.batch_size)
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"{manifest['examples']} examples, {manifest['tokens']:,} tokens, {manifest['bytes'] / 2**20:.0f} MiB "
          f"({manifest['bytes_per_token']:.0f} bytes per token) in {out}")


def cmd_train_adapter_on_features(args: argparse.Namespace) -> None:
    """Train an adapter from precomputed features and save it with its loss curve (under `accelerate launch`: on N
    processes, each reading its share of every batch)."""
    import time

    import torch
    from accelerate import PartialState

    from ..adapter.distill import train_adapter_on_features
    from ..adapter.features import FeatureShards
    from ..adapter.model import KangarooAdapter
    from ..adapter.vocab import draft_vocab_of

    out = Path(args.out)
    _check_adapter_out(out, args.resume, args.force)  # every process, before any writes (training syncs them)
    torch.set_num_threads(args.threads)
    tokenizer, target = _target_and_tokenizer(args.model)
    features = FeatureShards(args.features, target, args.exit_layer)
    examples = [(e.ids, e.predicts_reply) for e in features.examples()]
    vocab = draft_vocab_of(examples, args.draft_vocab_size, tokenizer.eos_token_id)
    if args.init:
        init = KangarooAdapter.from_pretrained(args.init, target)
        if args.mlp and not init.has_mlp:
            raise SystemExit(f"--mlp: the adapter in {args.init} has no MLP to continue training")
    else:
        init = KangarooAdapter.from_target(target, args.exit_layer, mlp=args.mlp) if args.mlp else None
    start = time.perf_counter()
    adapter, history = train_adapter_on_features(target, features, vocab, steps=args.steps, lr=args.lr,
                                                 batch_size=args.batch_size, warmup=args.warmup, seed=args.seed,
                                                 held_out=args.held_out, eval_every=args.eval_every, adapter=init,
                                                 checkpoint=out / "checkpoint", checkpoint_every=args.checkpoint_every,
                                                 resume=args.resume, recompute=args.recompute)
    seconds = time.perf_counter() - start
    state = PartialState()
    if state.is_main_process:  # every process holds the same adapter: one writes it
        adapter.save_pretrained(out)
        (out / "training.json").write_text(json.dumps(history, indent=1))
        last = history[-1]
        print(f"adapter: {adapter.num_parameters():,} parameters, exit layer {args.exit_layer}, {len(vocab):,}-token "
              f"draft vocabulary; held-out top-1 {last['top1']:.3f}, Σ min(p, q) {last['acceptance']:.3f}; "
              f"{args.steps} steps in {seconds:.1f} s ({'recomputing the target' if args.recompute else 'features'}"
              f"{f', {state.num_processes} processes' if state.num_processes > 1 else ''}); saved to {out}")
    state.wait_for_everyone()  # no process returns before the adapter is complete


def cmd_train_medusa(args: argparse.Namespace) -> None:
    """Train Medusa-1 heads on final-layer features and save them with their training log."""
    import time

    import torch

    from ..adapter.features import FeatureShards
    from ..adapter.medusa import MedusaHeads, medusa1_parameters
    from ..adapter.medusa_training import train_medusa_heads
    from ..adapter.vocab import draft_vocab_of

    out = Path(args.out)
    refuse_overwrite(out / "medusa_config.json", args.force)
    torch.set_num_threads(args.threads)
    tokenizer, target = _target_and_tokenizer(args.model)
    features = FeatureShards(args.features, target, target.config.num_hidden_layers)
    vocab = None
    if args.draft_vocab_size:
        vocab = draft_vocab_of([(e.ids, e.predicts_reply) for e in features.examples()], args.draft_vocab_size,
                               tokenizer.eos_token_id)
    heads = MedusaHeads.from_target(target, args.heads, own_lm_head=not args.shared_lm_head, draft_vocab=vocab)
    start = time.perf_counter()
    heads, history = train_medusa_heads(target, features, heads, steps=args.steps, batch_size=args.batch_size,
                                        lr=args.lr, warmup=args.warmup, seed=args.seed, held_out=args.held_out,
                                        eval_every=args.eval_every)
    seconds = time.perf_counter() - start
    heads.save_pretrained(out)
    (out / "training.json").write_text(json.dumps(history, indent=1))
    last = history[-1]
    print(f"Medusa heads: {heads.num_parameters():,} trained parameters ({args.heads} heads, "
          f"{'a shared' if args.shared_lm_head else 'each its own'} LM head; as the paper builds them "
          f"{medusa1_parameters(target, args.heads):,}); held-out top-1 by head "
          f"{', '.join(f'{t:.3f}' for t in last['top1_by_head'])}; {args.steps} steps in {seconds:.0f} s; "
          f"saved to {out}")
