"""scripts/engine_check.py and scripts/gpu_check.sh: what runs without a GPU (the transformers engine, on CPU)."""

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from kangaroo_lite.cli import main as kangaroo_lite
from kangaroo_lite.model_sets.loading import target_dir

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load_engine_check():
    spec = importlib.util.spec_from_file_location("engine_check", SCRIPTS / "engine_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def draft_and_prompts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engines")
    kangaroo_lite(["export-draft", "--model", "tiny", "--out", str(folder / "draft")])
    assert load_engine_check().main(["prompts", "--model", "tiny", "--count", "2", "--out",
                                     str(folder / "prompts.json")]) == 0
    return folder / "draft", folder / "prompts.json"


def test_transformers_greedy_output_with_the_draft_is_reported_identical(draft_and_prompts, capsys):
    draft, prompts = draft_and_prompts
    status = load_engine_check().main(["check", "--engine", "transformers", "--target", str(target_dir("tiny")),
                                       "--draft", str(draft), "--prompts", str(prompts), "--max-new-tokens", "16"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "transformers: ran (greedy tokens identical with and without the draft on 2/2 prompts" in printed


def test_an_engine_that_is_not_installed_is_skipped_not_failed(draft_and_prompts, capsys):
    if importlib.util.find_spec("sglang") is not None:
        pytest.skip("sglang is installed here")
    draft, prompts = draft_and_prompts
    status = load_engine_check().main(["check", "--engine", "sglang", "--target", str(target_dir("tiny")),
                                       "--draft", str(draft), "--prompts", str(prompts)])
    assert status == 0
    assert capsys.readouterr().out.startswith("sglang: skipped (sglang is not importable")


def test_gpu_check_is_valid_bash_and_says_why_it_cannot_run_without_a_gpu():
    script = SCRIPTS / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU machine: the script would run the whole check")
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "nvidia-smi is not on the PATH" in result.stderr or "no project venv" in result.stderr
