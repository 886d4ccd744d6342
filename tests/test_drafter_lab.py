"""Notebook 02's drafter lab on the tiny world: agreement by exit layer, a short training run with its records.

SmolLM2's lab runs in tests/test_notebooks_smollm2.py, through the notebook.
"""

from kangaroo_lite.models.corpus import training_corpus
from kangaroo_lite.notebook.drafter_lab import tiny_lab


def test_the_tiny_lab_measures_agreement_and_trains_with_records(shipped):
    lab = tiny_lab(shipped, training_corpus(120, seed=7000), training_corpus(12, seed=9000), batch_size=4)
    layer = shipped.adapter.exit_layer
    bare, with_adapter = lab.agreement(layer), lab.agreement(layer, shipped.adapter)
    assert {"top1", "acceptance"} <= set(bare) and with_adapter["top1"] > bare["top1"]
    assert lab.held_out_tokens and all(isinstance(t, int) for t in lab.held_out_tokens)
    seen = []
    adapter, history = lab.train(layer, 4, callback=seen.append)
    assert adapter.exit_layer == layer and history == seen and [r["step"] for r in history][-1] == 4
