"""The `kangaroo-lite` command line: sub-commands run, and nothing a user wrote is overwritten."""

import pytest
import torch
from helpers import tiny_model

from kangaroo_lite.adapter.model import KangarooAdapter
from kangaroo_lite.cli import build_parser, main
from kangaroo_lite.models.loading import DATA_DIR


def test_every_documented_sub_command_exists():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"demo", "bench", "train-model", "train-adapter", "eval-model", "make-data"} <= set(commands)


def test_make_data_regenerates_the_question_file_and_refuses_to_overwrite(tmp_path):
    main(["make-data", "--out", str(tmp_path)])
    assert (tmp_path / "question.jsonl").read_text() == (DATA_DIR / "question.jsonl").read_text()
    with pytest.raises(SystemExit, match="already exists"):
        main(["make-data", "--out", str(tmp_path)])


def test_eval_model_reports_accuracy_per_subtask(tmp_path, capsys):
    model = tiny_model(vocab=4096, seed=3)
    model.save_pretrained(tmp_path / "m")
    main(["eval-model", str(tmp_path / "m"), "--limit", "1", "--max-new-tokens", "4", "--subtasks", "qa", "rag",
          "--json", str(tmp_path / "report.json")])
    out = capsys.readouterr().out
    assert "qa" in out and "perplexity" in out
    assert (tmp_path / "report.json").is_file()


def test_train_model_refuses_to_overwrite_a_finished_model(tmp_path):
    tiny_model(vocab=4096).save_pretrained(tmp_path)
    with pytest.raises(SystemExit, match="already holds a model"):
        main(["train-model", "--shape", "tiny", "--out", str(tmp_path)])


def test_a_missing_model_path_is_a_clean_error_not_a_traceback(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        main(["eval-model", str(tmp_path / "nowhere")])


def test_train_adapter_runs_a_second_stage_from_an_adapter_and_ranks_its_draft_vocabulary(tmp_path, capsys):
    target = tiny_model(layers=3, vocab=4096, seed=3)
    target.save_pretrained(tmp_path / "target")
    common = ["train-adapter", "--target", str(tmp_path / "target"), "--examples", "40", "--steps", "2",
              "--batch-size", "4", "--warmup", "1"]
    main([*common, "--exit-layer", "2", "--draft-vocab-size", "50", "--out", str(tmp_path / "stage1")])
    assert "drafts over" in capsys.readouterr().out
    main([*common, "--init", str(tmp_path / "stage1"), "--mixture", "translation-heavy", "--draft-vocab-size", "0",
          "--out", str(tmp_path / "stage2")])
    first = KangarooAdapter.from_pretrained(tmp_path / "stage1", target)
    second = KangarooAdapter.from_pretrained(tmp_path / "stage2", target)
    assert first.exit_layer == second.exit_layer == 2  # the second stage continues the first's adapter
    assert first.draft_vocab is not None and len(first.draft_vocab) <= 51
    assert second.draft_vocab is None  # --draft-vocab-size 0: the whole vocabulary
    assert not torch.equal(first.self_attn.q_proj.weight, second.self_attn.q_proj.weight)
    with pytest.raises(SystemExit, match="already exists"):
        main([*common, "--out", str(tmp_path / "stage1")])
    with pytest.raises(SystemExit, match="exit_layer"):
        main([*common, "--exit-layer", "0", "--out", str(tmp_path / "stage0")])
    with pytest.raises(SystemExit, match="exits after layer 2"):
        main([*common, "--init", str(tmp_path / "stage1"), "--exit-layer", "1", "--out", str(tmp_path / "other")])
