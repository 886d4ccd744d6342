"""`train-adapter` on two CPU processes trains what one process does on the same global batch, writes one adapter,
and a run resumed from its checkpoint ends with the adapter of an uninterrupted one."""

from __future__ import annotations

import json
import shutil

import pytest
from training_runs import assert_histories_close, history, launch, max_weight_difference

from kangaroo_lite.adapter.model import KangarooAdapter
from kangaroo_lite.cli import main
from kangaroo_lite.models.loading import DATA_DIR, load_model

# The embedded tiny target. 40 examples, 8 held out: 32 to train on, 4 global batches of 8 per epoch, so 8 steps
# are two whole epochs (no ragged last batch, which 1 and 2 processes would fill differently), and the checkpoint
# at step 5 lies inside the second: a resumed run replays one epoch's shuffle, then skips one batch.
RUN = ["train-adapter", "--examples", "40", "--held-out", "8", "--steps", "8", "--warmup", "2", "--eval-every", "1",
       "--draft-vocab-size", "0", "--checkpoint-every", "5"]
ONE, TWO = ["--batch-size", "8"], ["--batch-size", "4"]  # the same global batch: 8 × 1 process, 4 × 2 processes
# Two processes differ from one only in float summation order (batch shapes, the all-reduce); measured: 2.4e-7
# on the weights, 2.4e-7 on the losses. With each process's plain mean instead of the global batch's: 6e-3 on the
# weights, 0.1 on the train loss.
LOSS_TOLERANCE = 1e-5  # absolute, on every logged loss, agreement, acceptance and learning rate
WEIGHT_TOLERANCE = 1e-5  # absolute, on every adapter weight
RESUME_TOLERANCE = 1e-6  # one process both times, the same arithmetic: measured 0 (bit for bit)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """The same 8-step run on two processes (4 examples each per step) and on one (8 per step, in this process)."""
    tmp = tmp_path_factory.mktemp("runs")
    two = launch([*RUN, *TWO, "--out", str(tmp / "two")], processes=2)
    main([*RUN, *ONE, "--out", str(tmp / "one")])
    return dict(one=tmp / "one", two=tmp / "two", two_stdout=two.stdout)








def test_two_processes_train_what_one_does_on_the_same_global_batch(runs):
    one, two = history(runs["one"]), history(runs["two"])
    assert [r["step"] for r in one] == list(range(9))
    assert_histories_close(one, two, LOSS_TOLERANCE)  # train_loss: the mean over both processes
    assert len({r["train_loss"] for r in one[1:]}) == 8 and one[-1]["held_out_loss"] < one[0]["held_out_loss"]
    assert two[-1]["lr"] == pytest.approx(1e-4)  # the schedule counted 8 steps, not 8 per process
    assert max_weight_difference(runs["one"], runs["two"]) <= WEIGHT_TOLERANCE


def test_only_the_main_process_writes_one_complete_adapter(runs):
    out = runs["two"]
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "checkpoint", "model.safetensors",
                                                     "training.json"]
    assert not any(p.name.startswith("checkpoint.") for p in out.parent.iterdir())  # swapped in whole
    assert KangarooAdapter.from_pretrained(out, load_model(DATA_DIR / "models" / "target")).exit_layer == 1
    printed = [line for line in runs["two_stdout"].splitlines() if line.startswith("adapter:")]
    assert len(printed) == 1 and "(2 processes)" in printed[0]
    checkpoint = out / "checkpoint"
    progress = json.loads((checkpoint / "run.json").read_text())
    assert progress["step"] == 5 and progress["config"]["num_processes"] == 2
    assert [r["step"] for r in progress["history"]] == list(range(6))
    assert {"model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl",
            "random_states_1.pkl"} <= {p.name for p in checkpoint.iterdir()}


def test_a_resumed_run_ends_with_the_adapter_of_an_uninterrupted_one(runs, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(runs["one"] / "checkpoint", out / "checkpoint")  # as if the run had stopped after step 5
    launch([*RUN, *ONE, "--out", str(out), "--resume"], processes=1)
    assert max_weight_difference(out, runs["one"]) <= RESUME_TOLERANCE
    assert_histories_close(history(out), history(runs["one"]), RESUME_TOLERANCE)


def test_resuming_with_another_configuration_names_what_differs(runs, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copytree(runs["one"] / "checkpoint", one / "checkpoint")
    shutil.copytree(runs["two"] / "checkpoint", two / "checkpoint")
    with pytest.raises(SystemExit, match=r"batch_size \(checkpoint 8, this run 4\); lr \(checkpoint 0.001, this "
                                         r"run 0.002\)"):
        main([*RUN, *TWO, "--lr", "2e-3", "--out", str(one), "--resume"])
    with pytest.raises(SystemExit, match=r"num_processes \(checkpoint 2, this run 1\)"):
        main([*RUN, *TWO, "--out", str(two), "--resume"])
    with pytest.raises(SystemExit, match=r"steps \(checkpoint 8, this run 9\)"):
        main([*RUN, *ONE, "--steps", "9", "--out", str(one), "--resume"])
    with pytest.raises(SystemExit, match="pass --resume to continue it"):
        main([*RUN, *ONE, "--out", str(one)])
    with pytest.raises(SystemExit, match="no checkpoint to resume from"):
        main([*RUN, *ONE, "--out", str(tmp_path / "empty"), "--resume"])
    with pytest.raises(SystemExit, match="already exists"):  # a finished adapter is not resumed over
        main([*RUN, *ONE, "--out", str(runs["one"]), "--resume"])


def test_processes_accelerate_did_not_join_are_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")  # launched as two, but this process trains alone
    with pytest.raises(SystemExit, match="2 processes were launched but Accelerate joins 1"):
        main([*RUN, *ONE, "--out", str(tmp_path / "alone")])
    assert not (tmp_path / "alone").exists()

