"""Kangaroo's self-draft as an ordinary Hugging Face causal LM, for any engine that takes a draft model.

The self-draft is the target's first ℓ layers, then the adapter, then the target's LM head. The
adapter is a decoder block without MLP: input norm, attention, residual. So the self-draft *is*
a model of the target's own class with ℓ + 1 layers: layers 0…ℓ-1 copied from the target, layer
ℓ holding the adapter's norm and attention and an MLP whose output projection is zero (it adds
exactly nothing to the residual), the adapter's final norm as the model's norm, and the target's
LM head (an adapter with an MLP fills layer ℓ's MLP with its own). `save_pretrained` writes it;
`from_pretrained` loads it anywhere: our `speculative` and `mtad`, Hugging Face's
`generate(assistant_model=…)`, vLLM's or SGLang's draft-model speculation.

What it gives up against Kangaroo proper: its KV cache is its own (the shallow layers run twice,
once in the draft and once in the target) and it scores the whole vocabulary. The benchmark row
"speculative with the exported self-draft" measures what sharing buys.
"""

from __future__ import annotations

import copy

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from .model import KangarooAdapter


def export_self_draft(target: PreTrainedModel, adapter: KangarooAdapter) -> PreTrainedModel:
    """A standalone causal LM (the target's class, exit_layer + 1 layers) computing the self-draft's logits."""
    adapter.check_matches(target)
    exit_layer = adapter.exit_layer
    config = copy.deepcopy(target.config)
    config.num_hidden_layers = exit_layer + 1
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[: exit_layer + 1]
    draft = AutoModelForCausalLM.from_config(config, dtype=target.dtype)
    source, model = target.model, draft.model
    with torch.no_grad():
        model.embed_tokens.load_state_dict(source.embed_tokens.state_dict())
        for i in range(exit_layer):
            model.layers[i].load_state_dict(source.layers[i].state_dict())
        block = model.layers[exit_layer]
        block.input_layernorm.load_state_dict(adapter.input_layernorm.state_dict())
        block.self_attn.load_state_dict(adapter.self_attn.state_dict())
        if adapter.has_mlp:
            block.post_attention_layernorm.load_state_dict(adapter.post_attention_layernorm.state_dict())
            block.mlp.load_state_dict(adapter.mlp.state_dict())
        else:
            for parameter in block.mlp.parameters():
                parameter.zero_()  # the MLP adds nothing: SiLU(0) · 0 through a zero projection is exactly 0
        model.norm.load_state_dict(adapter.norm.state_dict())
        if not config.tie_word_embeddings:
            draft.lm_head.load_state_dict(target.lm_head.state_dict())
    draft.generation_config = copy.deepcopy(target.generation_config)
    return draft.to(target.device).eval()
