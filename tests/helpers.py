"""Shared test helpers: tiny random models of several architectures, distribution checks, notebook runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import papermill
import torch
from scipy.stats import chisquare
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from kangaroo_lite.core.sampling import warp

ARCHITECTURES = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
}
FALSE_ALARM = 1e-3  # p-value below which a distribution test fails


def tiny_model(arch: str = "llama", layers: int = 2, hidden: int = 32, vocab: int = 64, seed: int = 0,
               sharpness: float = 1.0, kv_heads: int = 2, heads: int = 4, eos: int | None = 1,
               max_positions: int = 256) -> PreTrainedModel:
    """A randomly initialised causal LM; `sharpness` scales the LM head to make it more confident."""
    config_class, model_class = ARCHITECTURES[arch]
    torch.manual_seed(seed)
    config = config_class(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=max_positions,
        bos_token_id=0, eos_token_id=eos, pad_token_id=2, tie_word_embeddings=False,
    )
    model = model_class(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(sharpness)
    return model


def exact_two_token_distribution(model: PreTrainedModel, prompt: list[int], temperature: float,
                                 top_p: float) -> torch.Tensor:
    """The target's exact joint distribution of the first two new tokens, shape (V, V)."""
    vocab = model.config.vocab_size
    with torch.no_grad():
        first = warp(model(input_ids=torch.tensor([prompt])).logits[0, -1], temperature, top_p)
        batch = torch.tensor([prompt + [x] for x in range(vocab)])
        second = warp(model(input_ids=batch).logits[:, -1], temperature, top_p)
    return first[:, None] * second


def chi_square_pvalue(samples: list[tuple[int, int]], probs: torch.Tensor) -> float:
    """p-value of observed (x1, x2) pairs against a (V, V) distribution, pooling cells expected < 5."""
    n = len(samples)
    counts = torch.zeros_like(probs)
    for a, b in samples:
        counts[a, b] += 1
    expected, observed = (probs * n).flatten(), counts.flatten()
    big = expected >= 5
    exp_cells = torch.cat([expected[big], expected[~big].sum().reshape(1)])
    obs_cells = torch.cat([observed[big], observed[~big].sum().reshape(1)])
    keep = exp_cells > 0
    if (obs_cells[~keep] > 0).any():
        return 0.0  # a sample the distribution says is impossible
    return float(chisquare(obs_cells[keep].numpy(), exp_cells[keep].numpy()).pvalue)


def eos_in_the_middle(model: PreTrainedModel, tokens: list[int]) -> int:
    """Make the token at the middle of a known greedy output the model's EOS; returns that id."""
    eos = tokens[len(tokens) // 2]
    model.generation_config.eos_token_id = eos
    model.config.eos_token_id = eos
    return eos


def make_tiny_data_dir(root: Path) -> Path:
    """A folder shaped like data/: the real tokenizer and questions, tiny random models, adapter and Medusa heads."""
    from kangaroo_lite.adapter.medusa import MedusaHeads
    from kangaroo_lite.adapter.model import KangarooAdapter
    from kangaroo_lite.models.loading import DATA_DIR

    shutil.copytree(DATA_DIR / "tokenizer", root / "tokenizer")
    shutil.copy(DATA_DIR / "question.jsonl", root / "question.jsonl")
    target = tiny_model(layers=4, vocab=4096, seed=1, sharpness=3.0)
    draft = tiny_model(layers=1, vocab=4096, seed=2, sharpness=3.0)
    target.save_pretrained(root / "models" / "target")
    draft.save_pretrained(root / "models" / "draft")
    adapter = KangarooAdapter.from_target(target, 2)
    adapter.set_draft_vocab(list(range(0, 4096, 2)))  # so that the benchmark's Kangaroo drafts over one
    adapter.save_pretrained(root / "models" / "adapter")
    MedusaHeads.from_target(target, 2, own_lm_head=False).save_pretrained(root / "models" / "medusa")
    return root


NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run_notebook(notebook: str, out: Path, name: str, **parameters) -> dict:
    """Run `notebooks/<notebook>.ipynb` under papermill with `parameters`; what it wrote to its result_json."""
    result = out / f"{name}.json"
    papermill.execute_notebook(str(NOTEBOOKS / f"{notebook}.ipynb"), str(out / f"{name}.ipynb"),
                               parameters={**parameters, "result_json": str(result)}, cwd=str(NOTEBOOKS),
                               progress_bar=False)
    return json.loads(result.read_text())
