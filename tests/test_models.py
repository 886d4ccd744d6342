"""Loading models and tokenizers offline, with clear errors for what does not fit."""

import pytest
from helpers import tiny_model
from transformers import ViTConfig

from kangaroo_lite import load_default, load_model, load_tokenizer
from kangaroo_lite.models.loading import DATA_DIR, check_same_vocabulary, check_tokenizer_matches


def test_load_default_returns_tokenizer_target_draft_offline(shipped):
    tokenizer, target, draft, _ = shipped
    assert len(tokenizer) == target.config.vocab_size == draft.config.vocab_size
    assert target.config.num_hidden_layers > draft.config.num_hidden_layers
    assert not target.training and not draft.training


def test_shipped_weights_stay_under_60_megabytes():
    size = sum(p.stat().st_size for p in (DATA_DIR / "models").glob("*/model.safetensors"))
    assert 0 < size < 60e6


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_any_local_llama_family_checkpoint_loads(tmp_path, arch):
    model = tiny_model(arch)
    model.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    assert type(loaded) is type(model) and not loaded.training


def test_a_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        load_tokenizer(tmp_path / "nowhere")


def test_a_checkpoint_that_is_not_a_causal_lm_is_rejected(tmp_path):
    ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a causal language model"):
        load_model(tmp_path)


def test_a_checkpoint_without_weights_is_a_clear_error(tmp_path):
    tiny_model().config.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_model(tmp_path)


def test_tokenizer_model_vocabulary_mismatch_is_rejected(shipped):
    with pytest.raises(ValueError, match=r"4096 tokens.*64"):
        check_tokenizer_matches(shipped.tokenizer, tiny_model(vocab=64))
    with pytest.raises(ValueError, match="vocabulary"):
        check_same_vocabulary(shipped.target, tiny_model(vocab=64))


def test_load_default_from_an_empty_folder_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        load_default(data_dir=tmp_path)


def test_loading_a_checkpoint_prints_no_progress_bar_and_leaves_bars_as_they_were(capfd):
    from transformers.utils import logging as hf_logging

    load_model(DATA_DIR / "models" / "draft")
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # other transformers bars (a download, a conversion) still show
