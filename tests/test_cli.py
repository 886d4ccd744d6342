"""The `kangaroo-lite` command line: sub-commands run, and nothing a user wrote is overwritten."""

import pytest
from helpers import tiny_model

from kangaroo_lite.cli import build_parser, main
from kangaroo_lite.models import DATA_DIR


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
