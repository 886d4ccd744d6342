"""Every decoding method — ours and Hugging Face's — behind one call shape.

A runner is `f(input_ids) -> DecodingResult`, built for one set of models and options, so the
demo, the benchmark and the notebooks time and compare them all the same way.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from transformers import PreTrainedModel

from ..adapter.medusa import MedusaHeads
from ..core.checks import eos_id
from ..core.result import DecodingResult, Step
from ..decoding.autoregressive import autoregressive
from ..decoding.kangaroo import kangaroo
from ..decoding.lookup import lookup
from ..decoding.medusa import medusa
from ..decoding.mtad import mtad
from ..decoding.speculative import speculative
from ..model_sets.loading import DefaultModels, load_medusa_heads

Runner = Callable[[torch.Tensor], DecodingResult]

OURS = ("autoregressive", "speculative", "kangaroo", "lookup")  # lookup: copy drafts alone
# Kangaroo with its adapter's draft vocabulary removed (the whole vocabulary scored at every draft
# step, as in the paper, and the draft's confidence taken over it): what the draft vocabulary is
# worth, measured in the same run; and Kangaroo without copy drafts (its adapter alone): what copying adds.
ABLATIONS = ("kangaroo_full_vocab", "kangaroo_no_copy")
TREES = ("medusa", "kangaroo_tree")  # token-tree methods (Medusa-1 heads: the model set's shipped ones)
SAMPLING_ONLY = ("mtad", "mmtad")  # multi-token joint decoding approximations: temperature > 0
PEERS = ("hf_greedy", "hf_assisted", "hf_prompt_lookup", "hf_early_exit")
LOSSLESS = ("speculative", "kangaroo", "kangaroo_full_vocab", "kangaroo_no_copy", "lookup", "medusa", "kangaroo_tree",
            "hf_greedy", "hf_assisted", "hf_prompt_lookup", "hf_early_exit")
# Benchmark settings: speculative gets Hugging Face's assisted-generation defaults (20 drafts,
# stop below confidence 0.4) so the two are compared like for like; Kangaroo's were chosen by
# the threshold sweep on the shipped models (experiments/threshold.yaml).
DEFAULT_OPTIONS: dict[str, dict] = {
    "speculative": {"num_draft_tokens": 20, "confidence_threshold": 0.4},
    "kangaroo": {"max_draft_tokens": 20, "threshold": 0.4},
    "kangaroo_tree": {"tree": True, "max_draft_tokens": 20, "threshold": 0.4},
    "mtad": {"num_draft_tokens": 20, "num_beams": 2, "confidence_threshold": 0.4},
    "mmtad": {"num_draft_tokens": 20, "num_beams": 2, "confidence_threshold": 0.4},
    "hf_prompt_lookup": {"prompt_lookup_num_tokens": 10},
}
MEASURED = "measured"  # an option value the benchmark replaces with the cost curve it measured
# Per model set, what differs from DEFAULT_OPTIONS. SmolLM2 on a CPU (tuned kernels): a pass over 2–6 new
# tokens costs 1.04–1.17 passes over one, over 8 about 1.35 (the measured cost curve), and its self-draft
# agrees far less often than the tiny world's: short drafts, and only those worth their verification cost
# (`cost_curve`, measured at the start of the run). Kangaroo stops drafting below 0.8: each further
# draft costs a shallow pass and an adapter step, and its drafts below 0.8 were mostly rejected (on the
# real questions 0.6 and 0.8 were up to 4% faster than 0.3 on every subtask tried; docs/smollm2_adapter.md).
MODEL_SET_OPTIONS: dict[str, dict[str, dict]] = {
    "smollm2": {
        "speculative": {"num_draft_tokens": 3, "confidence_threshold": 0.3, "cost_curve": MEASURED},
        "kangaroo": {"max_draft_tokens": 3, "threshold": 0.8, "cost_curve": MEASURED},
        "lookup": {"cost_curve": MEASURED},
        "medusa": {"cost_curve": MEASURED},
        # a path's value is the product of its drafts' confidences: a lower exit than the chain's per-draft 0.8,
        # the measured cost curve choosing how many of the nodes to verify; two levels: as fast as six, with as
        # many tokens per pass and fewer drafting passes; an exit at 0.3 skips the second level's drafting pass
        # where it seldom pays (3% faster than 0.1 on 14 of the benchmark's prompts, docs/medusa.md)
        "kangaroo_tree": {"tree": True, "max_draft_tokens": 2, "threshold": 0.3, "top_k": 3, "max_nodes": 12,
                          "cost_curve": MEASURED},
        "mtad": {"num_draft_tokens": 3, "num_beams": 2, "confidence_threshold": 0.3},
        "mmtad": {"num_draft_tokens": 3, "num_beams": 2, "confidence_threshold": 0.3},
    },
}


class _ForwardCounter:
    """Counts forward calls of a model while active (for Hugging Face's `generate`)."""

    def __init__(self, model: PreTrainedModel):
        self.model, self.count = model, 0

    def __enter__(self):
        self.handle = self.model.register_forward_hook(self._hook)
        return self

    def _hook(self, *_):
        self.count += 1

    def __exit__(self, *_):
        self.handle.remove()


class _AssistedGenerationNotice(logging.Filter):
    """Drops transformers' deprecation notice about its *own* internal call in assisted generation.

    `AssistedCandidateGenerator` calls the assistant's `generate` with a `generation_config` and
    generation keywords together (transformers 5.x); our `generate(assistant_model=...)` call passes
    neither, so there is nothing on our side to change.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passing `generation_config` together with generation-related")


@contextmanager
def _filtered(logger: logging.Logger, notice: logging.Filter) -> Iterator[None]:
    """`logger` with `notice` as a filter while the block runs."""
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


def hf_generate(target: PreTrainedModel, input_ids: torch.Tensor, max_new_tokens: int, name: str,
                count_forwards: bool = True, **generate_kwargs) -> DecodingResult:
    """`target.generate(...)` greedy, wrapped as a `DecodingResult` with tokens counted like ours.

    Forward passes are counted with a hook; where the draft is the target itself
    (`assistant_early_exit`) they cannot be told apart, and `target_forwards` stays 0.
    """
    ids = input_ids.to(target.device)
    counter = _ForwardCounter(target)
    notices = logging.getLogger("transformers.generation.utils")
    start = time.perf_counter()
    with counter, torch.inference_mode(), _filtered(notices, _AssistedGenerationNotice()):
        out = target.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                              do_sample=False, pad_token_id=target.generation_config.pad_token_id,
                              **generate_kwargs)
    wall = time.perf_counter() - start
    tokens = out[0, ids.shape[1]:].tolist()
    return DecodingResult(method=name, prompt_tokens=ids[0].tolist(), tokens=tokens,
                          steps=[Step(emitted=tokens)], target_forwards=counter.count if count_forwards else 0,
                          wall_time=wall, stop_reason="eos" if tokens and tokens[-1] == eos_id(target) else "length")


def method_runners(models: DefaultModels, max_new_tokens: int, methods: list[str] | tuple[str, ...] = OURS,
                   options: dict[str, dict] | None = None, temperature: float = 0.0,
                   seed: int | None = 0, medusa_heads: MedusaHeads | None = None) -> dict[str, Runner]:
    """name → runner for each requested method; `options` override `DEFAULT_OPTIONS` per method.

    Medusa uses `medusa_heads`, or else the shipped heads trained for the target (`load_medusa_heads`).
    """
    known = OURS + TREES + ABLATIONS + SAMPLING_ONLY + PEERS
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; available: {list(known)}")
    if any(m.startswith("kangaroo") for m in methods) and models.adapter is None:
        raise ValueError("kangaroo needs a trained adapter: none was found in data/models/adapter")
    if temperature > 0 and any(m in PEERS for m in methods):
        raise ValueError("the Hugging Face peers are benchmarked greedy only (temperature 0)")
    if temperature == 0 and any(m in SAMPLING_ONLY for m in methods):
        raise ValueError("mtad and mmtad are sampling methods: give a temperature > 0")
    options = options or {}
    opts = {name: {**DEFAULT_OPTIONS.get(name, {}), **options.get(name, {})} for name in methods}
    full_vocab = None  # the ablation: Kangaroo's settings (and its own overrides), the adapter without its vocabulary
    for ablation in set(ABLATIONS) & set(methods):  # Kangaroo's settings, then the ablation's own overrides
        opts[ablation] = {**DEFAULT_OPTIONS["kangaroo"], **options.get("kangaroo", {}), **options.get(ablation, {})}
    if "kangaroo_no_copy" in methods:
        opts["kangaroo_no_copy"]["copy_drafts"] = False
    if "kangaroo_full_vocab" in methods:
        full_vocab = copy.deepcopy(models.adapter)
        full_vocab.set_draft_vocab(None)
    target, tok = models.target, models.tokenizer
    common = {"tokenizer": tok, "temperature": temperature, "seed": seed}
    heads = medusa_heads if medusa_heads is not None or "medusa" not in methods else load_medusa_heads(target)
    early_exit = opts.get("hf_early_exit", {}).get("exit_layer") or getattr(models.adapter, "exit_layer", 2)

    def runner(name: str) -> Runner:
        if name == "autoregressive":
            return lambda ids: autoregressive(target, ids, max_new_tokens, **common)
        if name == "speculative":
            return lambda ids: speculative(target, models.draft, ids, max_new_tokens, **common, **opts[name])
        if name in SAMPLING_ONLY:
            return lambda ids: mtad(target, models.draft, ids, max_new_tokens, multi_candidate=name == "mmtad",
                                    **common, **opts[name])
        if name in ("kangaroo", "kangaroo_no_copy", "kangaroo_tree"):
            return lambda ids: kangaroo(target, models.adapter, ids, max_new_tokens, **common, **opts[name])
        if name == "medusa":
            return lambda ids: medusa(target, heads, ids, max_new_tokens, **common, **opts[name])
        if name == "lookup":
            return lambda ids: lookup(target, ids, max_new_tokens, **common, **opts[name])
        if name == "kangaroo_full_vocab":
            return lambda ids: kangaroo(target, full_vocab, ids, max_new_tokens, **common, **opts[name])
        if name == "hf_assisted":
            return lambda ids: hf_generate(target, ids, max_new_tokens, name, assistant_model=models.draft)
        if name == "hf_early_exit":
            return lambda ids: hf_generate(target, ids, max_new_tokens, name, count_forwards=False,
                                           assistant_early_exit=early_exit)
        return lambda ids: hf_generate(target, ids, max_new_tokens, name, **opts[name])  # hf_greedy, hf_prompt_lookup

    return {name: runner(name) for name in methods}
