"""The exported self-draft: an ordinary Hugging Face causal LM with exactly the self-draft's logits."""

import pytest
import torch
from helpers import ARCHITECTURES, tiny_model
from transformers import AutoModelForCausalLM

from kangaroo_lite import autoregressive, speculative
from kangaroo_lite.adapter.distill import _adapter_states
from kangaroo_lite.adapter.export import export_self_draft
from kangaroo_lite.adapter.model import KangarooAdapter
from kangaroo_lite.bench.methods import hf_generate

PROMPT = torch.tensor([[5, 6, 7, 8, 9]])


def self_draft_logits(target, adapter, ids):
    with torch.no_grad():
        exited = target.model(ids, output_hidden_states=True).hidden_states[adapter.exit_layer]
        return target.lm_head(_adapter_states(adapter, target, exited))


def trained_like(target, exit_layer, seed=3, mlp=False):
    """An adapter whose weights differ from the copied layer, as a trained one's do."""
    adapter = KangarooAdapter.from_target(target, exit_layer, mlp=mlp)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return adapter


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("exit_layer,mlp", [(1, False), (2, False), (1, True)])
def test_exported_draft_logits_equal_the_self_draft(arch, exit_layer, mlp, tmp_path):
    target = tiny_model(arch, layers=4, vocab=96, seed=1, sharpness=3.0)
    adapter = trained_like(target, exit_layer, mlp=mlp)
    exported = export_self_draft(target, adapter)
    assert exported.config.num_hidden_layers == exit_layer + 1
    assert type(exported) is type(target)
    expected = self_draft_logits(target, adapter, PROMPT)
    with torch.no_grad():
        torch.testing.assert_close(exported(PROMPT).logits, expected, rtol=0, atol=1e-5)
    exported.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(PROMPT).logits, expected, rtol=0, atol=1e-5)


def test_exported_draft_drives_speculative_decoding_and_hf_assisted_losslessly():
    target = tiny_model(layers=4, vocab=96, seed=1, sharpness=3.0)
    exported = export_self_draft(target, trained_like(target, 2))
    base = autoregressive(target, PROMPT, 24).tokens
    assert speculative(target, exported, PROMPT, 24).tokens == base
    assert hf_generate(target, PROMPT, 24, "hf_assisted", assistant_model=exported).tokens == base


def test_export_refuses_an_adapter_of_another_target():
    adapter = KangarooAdapter.from_target(tiny_model(layers=4, hidden=32), 2)
    with pytest.raises(ValueError, match="another target"):
        export_self_draft(tiny_model(layers=4, hidden=64, heads=4), adapter)
