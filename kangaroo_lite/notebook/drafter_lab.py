"""Notebook 02's bench for self-drafts: agreement with the target and a short training run, on either model set.

The tiny world trains online on its synthetic corpus and evaluates on held-out corpus replies
(`train_adapter`, `evaluate_drafter`). SmolLM2 follows Kangaroo's recipe at notebook scale: the
target answers a few of the project's distillation prompts, its features are computed once into a
temporary folder, adapters train on them (`train_adapter_on_features`), and agreement is measured
on the target's own replies to real Spec-Bench questions — never trained on.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..adapter.distill import evaluate_on_features, train_adapter_on_features
from ..adapter.features import FeatureExample, FeatureShards, precompute_features, target_features
from ..adapter.model import KangarooAdapter
from ..adapter.replies import generate_replies, read_replies, reply_examples
from ..adapter.training import encode_corpus, evaluate_drafter, train_adapter
from ..adapter.vocab import draft_vocab_of
from ..decoding.autoregressive import autoregressive
from ..model_sets.loading import DefaultModels
from ..models.corpus import Example
from ..models.loading import DATA_DIR, encode_chat

Examples = list[tuple[torch.Tensor, torch.Tensor]]  # (ids, predicts-reply mask) pairs


class DrafterLab:
    """Agreement of a self-draft with its target at any exit layer, and adapters trained for a few steps."""

    def __init__(self, models: DefaultModels, evaluate: Callable[[int, KangarooAdapter | None], dict],
                 train: Callable[[int, int, KangarooAdapter | None, Callable | None],
                                 tuple[KangarooAdapter, list[dict]]],
                 held_out_tokens: list[int]):
        self.models = models
        self._evaluate, self._train = evaluate, train
        self.held_out_tokens = held_out_tokens  # the reply tokens agreement is measured on

    def agreement(self, exit_layer: int, adapter: KangarooAdapter | None = None) -> dict:
        """{"top1", "acceptance"} on the held-out replies: with `adapter`, or exiting straight into the head."""
        return self._evaluate(exit_layer, adapter)

    def train(self, exit_layer: int, steps: int, adapter: KangarooAdapter | None = None,
              callback: Callable[[dict], None] | None = None) -> tuple[KangarooAdapter, list[dict]]:
        """An adapter trained `steps` steps at `exit_layer` (fresh, or continuing `adapter`) and its history.

        With a `callback`, agreement is recorded ten times along the way: each record {step,
        train_loss, held_out_loss, top1, acceptance, …} goes to the history and the callback.
        """
        return self._train(exit_layer, steps, adapter, callback)


def tiny_lab(models: DefaultModels, train_corpus: Sequence[Example], eval_corpus: Sequence[Example],
             batch_size: int = 8, seed: int = 0) -> DrafterLab:
    """The tiny world's lab: online training on `train_corpus`, agreement on `eval_corpus`'s replies."""
    tokenizer, target = models.tokenizer, models.target

    def evaluate(layer: int, adapter: KangarooAdapter | None) -> dict:
        return evaluate_drafter(target, tokenizer, eval_corpus, layer, adapter=adapter)

    def train(layer: int, steps: int, adapter: KangarooAdapter | None,
              callback: Callable | None) -> tuple[KangarooAdapter, list[dict]]:
        return train_adapter(target, tokenizer, train_corpus, layer, steps=steps, batch_size=batch_size,
                             warmup=max(1, steps // 10), held_out=48 if callback else 16, seed=seed,
                             eval_every=max(1, steps // 10) if callback else steps, adapter=adapter,
                             progress=False, callback=callback)

    replies = [ids[1:][mask[:-1]] for ids, mask in encode_corpus(tokenizer, eval_corpus)]
    return DrafterLab(models, evaluate, train, torch.cat(replies).tolist())


def real_reply_examples(models: DefaultModels, questions: Sequence[dict], max_new_tokens: int,
                        on_reply: Callable[[], object] | None = None) -> Examples:
    """(ids, mask) of the target's greedy replies to the first turns of `questions`; `on_reply()` after each."""
    examples = []
    for record in questions:
        prompt = encode_chat(models.tokenizer, record["turns"][0])
        reply = autoregressive(models.target, prompt, max_new_tokens).tokens
        ids = torch.cat([prompt[0], torch.tensor(reply, dtype=torch.long)])
        mask = torch.zeros(len(ids), dtype=torch.bool)
        mask[prompt.shape[1] - 1 : len(ids) - 1] = True
        examples.append((ids, mask))
        if on_reply is not None:
            on_reply()
    return examples


def features_by_layer(models: DefaultModels, examples: Examples, exit_layers: Sequence[int],
                      top_k: int = 32) -> dict[int, list[FeatureExample]]:
    """In-memory features of `examples` at each exit layer (one target pass per example)."""
    by_layer: dict[int, list[FeatureExample]] = {layer: [] for layer in exit_layers}
    for ids, mask in examples:
        parts = target_features(models.target, [(ids, mask)], list(exit_layers), top_k)
        for layer in exit_layers:
            by_layer[layer].append(FeatureExample(ids, mask, parts[f"exited.{layer}"][0],
                                                  parts["topk_ids"][0].long(), parts["topk_logits"][0]))
    return by_layer


def smollm2_lab(models: DefaultModels, questions: Sequence[dict], train_layers: Sequence[int],
                distill_prompts: int = 24, reply_tokens: int = 48, answer_tokens: int = 32,
                batch_size: int = 4, lr: float = 3e-3, seed: int = 0,
                workdir: str | Path | None = None, progress: bool = False) -> DrafterLab:
    """SmolLM2's lab: replies to `distill_prompts` of the project's prompts, features at `train_layers`.

    Fresh adapters train at `lr`; a trained one given to `train` continues at a tenth of it.
    Agreement is measured at every layer on the target's `answer_tokens`-token replies to `questions`.
    `progress` shows a bar over the preparation (each real reply, the distillation replies, their features).
    """
    target = models.target
    with tqdm(total=len(questions) + 2, desc="target replies and features", disable=not progress) as bar:
        real = features_by_layer(models, real_reply_examples(models, questions, answer_tokens, bar.update),
                                 range(1, target.config.num_hidden_layers))
        folder = Path(workdir or tempfile.mkdtemp(prefix="kangaroo_lab_"))
        lines = (DATA_DIR / "distill" / "prompts.jsonl").read_text(encoding="utf-8").splitlines()
        prompts = [json.loads(line) for line in lines[:: max(1, len(lines) // distill_prompts)]][:distill_prompts]
        replies = generate_replies(target, models.tokenizer, prompts, folder / "replies.jsonl", reply_tokens,
                                   batch_size=len(prompts), progress=False)
        bar.update()
        examples = reply_examples(read_replies(replies))
        features = precompute_features(target, examples, folder / "features", list(train_layers), progress=False)
        bar.update()
    vocab = draft_vocab_of(examples, 8192, models.tokenizer.eos_token_id)
    if models.adapter is not None and models.adapter.draft_vocab is not None:
        vocab = models.adapter.draft_vocab.tolist()  # continue with the shipped adapter's vocabulary

    def evaluate(layer: int, adapter: KangarooAdapter | None) -> dict:
        return evaluate_on_features(target, adapter, real[layer])

    def train(layer: int, steps: int, adapter: KangarooAdapter | None,
              callback: Callable | None) -> tuple[KangarooAdapter, list[dict]]:
        if layer not in train_layers:
            raise ValueError(f"features were computed for exit layers {list(train_layers)}, not {layer}")
        fresh = adapter is None
        adapter = KangarooAdapter.from_target(target, layer) if fresh else adapter
        history: list[dict] = []

        def on_record(record: dict) -> None:  # held-out agreement on the real replies, not on two distill ones
            training = adapter.training
            adapter.eval()
            real_scores = evaluate(layer, adapter)
            adapter.train(training)
            history.append({**record, **{k: real_scores[k] for k in ("held_out_loss", "top1", "acceptance")}})
            if callback is not None:
                callback(history[-1])

        rate = lr if fresh else lr / 10  # a few dozen replies: a trained adapter is only nudged
        trained, _ = train_adapter_on_features(target, FeatureShards(features, target, layer), vocab, steps=steps,
                                               batch_size=batch_size, lr=rate, warmup=max(1, steps // 10), seed=seed,
                                               held_out=2, eval_every=max(1, steps // 10) if callback else steps,
                                               adapter=adapter, progress=False, callback=on_record)
        return trained, history

    tokens = [t for e in real[1] for t in e.ids[1:][e.predicts_reply[:-1]].tolist()]
    return DrafterLab(models, evaluate, train, tokens)
