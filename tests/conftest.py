"""Fixtures: the shipped models (loaded once) and the evaluation questions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)  # small models: one thread avoids oversubscription and is faster


@pytest.fixture(scope="session")
def shipped():
    """The embedded default tokenizer, target, draft and adapter."""
    from kangaroo_lite import load_default

    return load_default()


@pytest.fixture(scope="session")
def questions():
    """The committed mini Spec-Bench evaluation set."""
    from kangaroo_lite.models.corpus import read_questions
    from kangaroo_lite.models.loading import DATA_DIR

    return read_questions(DATA_DIR / "question.jsonl")


@pytest.fixture(scope="session")
def baseline_greedy(shipped, questions):
    """Autoregressive greedy tokens of the shipped target for the first turn of every question."""
    from kangaroo_lite import autoregressive, encode_chat

    prompts = {q["question_id"]: encode_chat(shipped.tokenizer, q["turns"][0]) for q in questions}
    return {qid: (ids, autoregressive(shipped.target, ids, LOSSLESS_TOKENS).tokens) for qid, ids in prompts.items()}


LOSSLESS_TOKENS = 64  # new tokens per prompt: enough for every reference reply of the first turn


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`), restored afterwards:
    tiny models run ~20x faster on one thread than on two busy ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
