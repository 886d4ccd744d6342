"""`kangaroo-lite export-draft`: the self-draft as a folder any engine loads, lossless as HF's assistant model."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from kangaroo_lite import encode_chat
from kangaroo_lite.cli import main
from kangaroo_lite.model_sets.loading import question_file, target_dir
from kangaroo_lite.models.corpus import read_questions

MAX_NEW_TOKENS = 32


def greedy(target, ids, **kwargs) -> list[int]:
    with torch.inference_mode():
        out = target.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW_TOKENS,
                              do_sample=False, pad_token_id=target.generation_config.pad_token_id, **kwargs)
    return out[0, ids.shape[1]:].tolist()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The folder the command writes for the tiny set's self-draft."""
    out = tmp_path_factory.mktemp("export") / "draft"
    main(["export-draft", "--model", "tiny", "--out", str(out)])
    return out


@pytest.fixture(scope="module")
def tokenizer_and_target():
    from kangaroo_lite import load_default

    tokenizer, target, _, _ = load_default("tiny")
    return tokenizer, target


def test_export_draft_writes_safetensors_config_and_tokenizer(exported):
    names = {p.name for p in exported.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    draft = AutoModelForCausalLM.from_pretrained(exported)
    target = AutoModelForCausalLM.from_pretrained(target_dir("tiny"))
    assert type(draft) is type(target)
    assert draft.config.vocab_size == target.config.vocab_size  # one tokenizer for both


def test_hf_assisted_generation_with_the_exported_draft_equals_greedy_generate(exported, tokenizer_and_target):
    tokenizer, target = tokenizer_and_target
    draft = AutoModelForCausalLM.from_pretrained(exported).eval()
    by_subtask = {}
    for question in read_questions(question_file("tiny")):
        by_subtask.setdefault(question["category"], question)
    prompts = [encode_chat(tokenizer, q["turns"][0]) for q in by_subtask.values()][:4]
    for ids in prompts:
        assert greedy(target, ids, assistant_model=draft) == greedy(target, ids)


def test_export_draft_prints_the_engine_configurations(tmp_path, capsys):
    out = tmp_path / "draft"
    main(["export-draft", "--model", "tiny", "--out", str(out)])
    printed = capsys.readouterr().out
    for snippet in ("assistant_model=draft", '"method": "draft_model"', "--speculative-algorithm STANDALONE",
                    f"--speculative-draft-model-path {out.resolve()}", str(target_dir("tiny").resolve())):
        assert snippet in printed


def test_export_draft_refuses_a_non_empty_folder_without_force(tmp_path):
    out = tmp_path / "draft"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="already exists; pass --force"):
        main(["export-draft", "--model", "tiny", "--out", str(out)])
    assert [p.name for p in out.iterdir()] == ["notes.txt"]  # nothing was written
    main(["export-draft", "--model", "tiny", "--out", str(out), "--force"])
    assert (out / "model.safetensors").is_file() and (out / "notes.txt").read_text() == "mine"


def test_export_draft_refuses_a_file_as_out(tmp_path):
    out = tmp_path / "draft"
    out.write_text("mine")
    with pytest.raises(SystemExit, match="is a file, not a folder"):
        main(["export-draft", "--model", "tiny", "--out", str(out)])
