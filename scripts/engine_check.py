"""Greedy output of a serving engine with Kangaroo's exported self-draft as draft model equals its output without.

Two steps, so that each engine may live in an environment of its own (scripts/gpu_check.sh runs both):

    # in the project's venv: the token ids of a few Spec-Bench prompts, one per subtask
    .venv/bin/python scripts/engine_check.py prompts --model smollm2 --count 4 --out prompts.json
    # in any environment with the engine (transformers, vllm or sglang) installed
    python scripts/engine_check.py check --engine vllm --target TARGET --draft DRAFT --prompts prompts.json

`check` prints one line, `ENGINE: ran (…)`, `ENGINE: skipped (why)` or `ENGINE: failed (why)`, and exits 1
when the engine failed or any prompt's greedy tokens differed with the draft. Engine settings are the ones
docs/serving_engines.md gives (3 draft tokens a round, a chain: SGLang's top-k 1).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Callable
from pathlib import Path

DRAFT_TOKENS = 3
MEMORY_FRACTION = 0.3  # each engine instance: two fit on the GPU at once should the first linger


def write_prompts(model: str, count: int, out: Path) -> None:
    """The chat-formatted token ids of the first turn of `count` questions, one subtask after another."""
    from kangaroo_lite.model_sets.loading import load_default, question_file
    from kangaroo_lite.models.corpus import read_questions
    from kangaroo_lite.models.loading import encode_chat

    if count < 1:
        raise ValueError(f"--count must be at least 1, got {count}")
    tokenizer = load_default(model).tokenizer
    by_subtask: dict[str, list[dict]] = {}
    for question in read_questions(question_file(model)):
        by_subtask.setdefault(question["category"], []).append(question)
    rounds = zip(*by_subtask.values(), strict=False)  # one question per subtask, then the next of each
    chosen = [q for questions in rounds for q in questions][:count]
    ids = [encode_chat(tokenizer, q["turns"][0])[0].tolist() for q in chosen]
    out.write_text(json.dumps({"model": model, "question_ids": [q["question_id"] for q in chosen], "prompts": ids}))
    print(f"wrote {len(ids)} prompts to {out}")


def transformers_outputs(target: str, draft: str | None, prompts: list[list[int]], max_new_tokens: int,
                         dtype: str) -> list[list[int]]:
    """Greedy `generate`, with `assistant_model=` the draft when one is given."""
    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, *assistant = (AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()
                         for path in [target, draft] if path)
    extra = {"assistant_model": assistant[0]} if assistant else {}
    outputs = []
    for ids in prompts:
        x = torch.tensor([ids], device=device)
        with torch.inference_mode():
            out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=model.generation_config.pad_token_id, **extra)
        outputs.append(out[0, len(ids):].tolist())
    return outputs


def vllm_outputs(target: str, draft: str | None, prompts: list[list[int]], max_new_tokens: int,
                 dtype: str) -> list[list[int]]:
    """vLLM's offline `LLM.generate`, greedy, with `speculative_config` method draft_model when a draft is given."""
    from vllm import LLM, SamplingParams, TokensPrompt

    spec = {"speculative_config": {"method": "draft_model", "model": draft, "num_speculative_tokens": DRAFT_TOKENS}}
    llm = LLM(model=target, dtype=dtype, gpu_memory_utilization=MEMORY_FRACTION, seed=0, **(spec if draft else {}))
    results = llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompts],
                           SamplingParams(temperature=0.0, max_tokens=max_new_tokens))
    del llm
    gc.collect()
    return [list(result.outputs[0].token_ids) for result in results]


def sglang_outputs(target: str, draft: str | None, prompts: list[list[int]], max_new_tokens: int,
                   dtype: str) -> list[list[int]]:
    """SGLang's offline `Engine.generate`, greedy, with the STANDALONE algorithm when a draft is given."""
    import sglang

    spec = {"speculative_algorithm": "STANDALONE", "speculative_draft_model_path": draft,
            "speculative_num_steps": DRAFT_TOKENS, "speculative_eagle_topk": 1,
            "speculative_num_draft_tokens": DRAFT_TOKENS + 1}
    engine = sglang.Engine(model_path=target, dtype=dtype, mem_fraction_static=MEMORY_FRACTION, random_seed=0,
                           **(spec if draft else {}))
    try:
        results = engine.generate(input_ids=prompts, sampling_params={"temperature": 0.0,
                                                                       "max_new_tokens": max_new_tokens})
    finally:
        engine.shutdown()
    return [list(result["output_ids"]) for result in results]


ENGINES: dict[str, Callable[..., list[list[int]]]] = {
    "transformers": transformers_outputs,
    "vllm": vllm_outputs,
    "sglang": sglang_outputs,
}  # each name is also the module the engine imports


def check(engine: str, target: str, draft: str, prompts_file: Path, max_new_tokens: int, dtype: str) -> int:
    """Run the engine without and with the draft; print one status line; 0 when every prompt's tokens agree."""
    try:
        __import__(engine)
    except ImportError as error:
        print(f"{engine}: skipped ({engine} is not importable by {sys.executable}: {error})")
        return 0
    outputs = ENGINES[engine]
    prompts = json.loads(prompts_file.read_text())["prompts"]
    try:
        plain = outputs(target, None, prompts, max_new_tokens, dtype)
        drafted = outputs(target, draft, prompts, max_new_tokens, dtype)
    except Exception as error:  # an engine's own failure is this check's result, reported in one line
        print(f"{engine}: failed ({type(error).__name__}: {error})")
        return 1
    same = sum(a == b for a, b in zip(plain, drafted, strict=True))
    differing = [i for i, (a, b) in enumerate(zip(plain, drafted, strict=True)) if a != b]
    detail = f"greedy tokens identical with and without the draft on {same}/{len(prompts)} prompts"
    print(f"{engine}: ran ({detail}{f'; differing prompts: {differing}' if differing else ''}; dtype {dtype})")
    return 0 if not differing else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point: `prompts` or `check`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    prompts = sub.add_parser("prompts", help="write the token ids of a few Spec-Bench prompts (project venv)")
    prompts.add_argument("--model", default="smollm2", choices=["tiny", "smollm2"])
    prompts.add_argument("--count", type=int, default=4)
    prompts.add_argument("--out", type=Path, required=True)
    run = sub.add_parser("check", help="greedy output with and without the draft, compared")
    run.add_argument("--engine", choices=sorted(ENGINES), required=True)
    run.add_argument("--target", required=True, help="the target checkpoint folder")
    run.add_argument("--draft", required=True, help="the folder `kangaroo-lite export-draft` wrote")
    run.add_argument("--prompts", type=Path, required=True, help="the file the prompts step wrote")
    run.add_argument("--max-new-tokens", type=int, default=48)
    run.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args(argv)
    if args.step == "prompts":
        write_prompts(args.model, args.count, args.out)
        return 0
    return check(args.engine, args.target, args.draft, args.prompts, args.max_new_tokens, args.dtype)


if __name__ == "__main__":
    sys.exit(main())
