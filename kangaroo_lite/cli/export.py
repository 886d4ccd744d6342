"""`kangaroo-lite export-draft`: Kangaroo's self-draft saved as an ordinary draft model for serving engines."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from .files import refuse_overwrite


def cmd_export_draft(args: argparse.Namespace) -> None:
    """Save the model set's self-draft (safetensors + tokenizer) into --out and print how engines use it."""
    from ..adapter.export import export_self_draft
    from ..model_sets.loading import load_default, target_dir

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    refuse_overwrite(out, args.force)
    tokenizer, target, _, adapter = load_default(args.model)
    if adapter is None:
        raise FileNotFoundError(f"the {args.model!r} model set has no trained Kangaroo adapter to export")
    draft = export_self_draft(target, adapter)
    draft.save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(f"wrote {out}: the target's first {adapter.exit_layer} layer(s) + the adapter + the LM head, "
          f"a {type(draft).__name__} of {draft.config.num_hidden_layers} layers")
    print(serving_instructions(target_dir(args.model).resolve(), out.resolve()))


def serving_instructions(target: Path, draft: Path) -> str:
    """How to use `draft` as the draft model of `target` in transformers, vLLM and SGLang (docs/serving_engines.md)."""
    spec = {"method": "draft_model", "model": str(draft), "num_speculative_tokens": 3}
    t, d = shlex.quote(str(target)), shlex.quote(str(draft))
    return f"""
Hugging Face transformers (assisted generation; greedy output identical to plain greedy generate):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained({str(target)!r})
    target = AutoModelForCausalLM.from_pretrained({str(target)!r})
    draft = AutoModelForCausalLM.from_pretrained({str(draft)!r})
    ids = tokenizer("Hello", return_tensors="pt").input_ids
    out = target.generate(ids, assistant_model=draft, do_sample=False, max_new_tokens=64)

vLLM >= 0.15.0 (draft-model speculation in the V1 engine):
    vllm serve {t} --speculative-config {shlex.quote(json.dumps(spec))}
    # Python: LLM(model={str(target)!r}, speculative_config={spec!r})

SGLang >= 0.5.2 (standalone draft-model speculation):
    python3 -m sglang.launch_server --model-path {t} --speculative-algorithm STANDALONE \\
        --speculative-draft-model-path {d} \\
        --speculative-num-steps 3 --speculative-eagle-topk 1 --speculative-num-draft-tokens 4

Both models share one tokenizer. Engines keep the draft's own KV cache and score the whole vocabulary:
see docs/serving_engines.md for what that costs against Kangaroo, and what was tested."""
