"""The model-training code, at a tiny size: it learns, saves safetensors and resumes."""

import json

from transformers import LlamaForCausalLM

from kangaroo_lite.models.corpus import format_example, training_corpus
from kangaroo_lite.models.loading import DATA_DIR, load_model, load_tokenizer
from kangaroo_lite.models.training import TrainConfig, model_config, train_model


def _run(out, steps, resume=True):
    tokenizer = load_tokenizer(DATA_DIR / "tokenizer")
    texts = [format_example(e) for e in training_corpus(300, seed=1)]
    model = LlamaForCausalLM(model_config("tiny", tokenizer))
    cfg = TrainConfig(steps=steps, batch_size=4, seq_len=64, lr=3e-3, warmup=5, checkpoint_every=10)
    return train_model(model, tokenizer, texts, out, cfg, resume=resume)


def test_training_reduces_the_loss_and_saves_a_loadable_model(tmp_path):
    losses = _run(tmp_path, 40)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0
    assert (tmp_path / "model.safetensors").is_file()
    assert load_model(tmp_path).config.num_hidden_layers == 2


def test_training_resumes_from_its_checkpoint(tmp_path):
    _run(tmp_path, 20)  # leaves a checkpoint at step 10
    progress = json.loads((tmp_path / "checkpoint" / "progress.json").read_text())
    assert progress["step"] == 10
    losses = _run(tmp_path, 30)
    assert len(losses) == 30 and losses[:10] == progress["losses"]
