"""Adapter training from feature shards at scale: read lazily, per process, resumable, and stray shards refused.

Two processes must train what one does on the same global batch (as `train-adapter` does in
test_multiprocess_training.py), each reading only its share; training that recomputes the target
for every batch must follow the same loss curve as reading its stored features.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import tiny_model
from training_runs import assert_histories_close, history, launch, max_weight_difference

from kangaroo_lite.adapter.distill import train_adapter_on_features
from kangaroo_lite.adapter.features import FeatureDataset, FeatureShards, precompute_features
from kangaroo_lite.adapter.model import KangarooAdapter
from kangaroo_lite.cli import main
from kangaroo_lite.models.loading import DATA_DIR, load_model

# 40 examples of the embedded tiny target, 8 held out: 32 to train on, 4 global batches of 8 per epoch, so 8 steps
# are two whole epochs, and the checkpoint at step 5 lies inside the second.
RUN = ["train-adapter-features", "--model", "tiny", "--exit-layer", "1", "--steps", "8", "--warmup", "2",
       "--eval-every", "1", "--held-out", "8", "--draft-vocab-size", "512", "--lr", "1e-3", "--threads", "1",
       "--checkpoint-every", "5"]
ONE, TWO = ["--batch-size", "8"], ["--batch-size", "4"]  # the same global batch: 8 × 1 process, 4 × 2 processes
TOLERANCE = 1e-5  # absolute, on every logged number and every weight: only float summation order differs
RESUME_TOLERANCE = 1e-6  # one process both times, the same arithmetic
RECOMPUTE_TOLERANCE = 2e-3  # features stored in float16: a batch's recomputed ones may round an ulp apart


def examples(count: int, vocab: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` token sequences of 12–27 tokens whose second half predicts reply tokens."""
    generator = torch.Generator().manual_seed(seed)
    data = []
    for i in range(count):
        length = 12 + i % 16
        ids = torch.randint(3, vocab, (length,), generator=generator)
        mask = torch.zeros(length, dtype=torch.bool)
        mask[length // 2 : -1] = True
        data.append((ids, mask))
    return data


@pytest.fixture(scope="module")
def shipped_target():
    return load_model(DATA_DIR / "models" / "target")


@pytest.fixture(scope="module")
def feature_dir(shipped_target, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("features")
    return precompute_features(shipped_target, examples(40, shipped_target.config.vocab_size), out, exit_layers=[1],
                               top_k=16, examples_per_shard=12, progress=False)


@pytest.fixture(scope="module")
def runs(feature_dir, tmp_path_factory) -> dict:
    """The same 8-step run on two processes (4 examples each per step) and on one (8 per step, in this process)."""
    tmp = tmp_path_factory.mktemp("runs")
    two = launch([*RUN, *TWO, "--features", str(feature_dir), "--out", str(tmp / "two")], processes=2)
    main([*RUN, *ONE, "--features", str(feature_dir), "--out", str(tmp / "one")])
    return dict(one=tmp / "one", two=tmp / "two", two_stdout=two.stdout)








def test_the_dataset_reads_each_example_with_replies_as_the_shards_hold_it(shipped_target, feature_dir):
    shards = FeatureShards(feature_dir, shipped_target, 1)
    whole = [e for e in shards.examples() if e.predicts_reply.any()]
    dataset = FeatureDataset(shards)
    assert len(dataset) == len(whole) == 40 and len(shards.files) == 4
    for index in (0, 11, 12, 39):  # first and last of a shard, first of the next, the very last
        read, expected = dataset[index], whole[index]
        for name in ("ids", "predicts_reply", "exited", "topk_ids", "topk_logits"):
            assert torch.equal(getattr(read, name), getattr(expected, name)), (index, name)
        assert [t.tolist() for t in dataset.tokens(index)] == [expected.ids.tolist(), expected.predicts_reply.tolist()]


def test_two_processes_train_from_features_what_one_does_on_the_same_global_batch(runs):
    one, two = history(runs["one"]), history(runs["two"])
    assert [r["step"] for r in one] == list(range(9))
    assert_histories_close(one, two, TOLERANCE)
    assert len({r["train_loss"] for r in one[1:]}) == 8 and one[-1]["held_out_loss"] < one[0]["held_out_loss"]
    assert max_weight_difference(runs["one"], runs["two"]) <= TOLERANCE
    printed = [line for line in runs["two_stdout"].splitlines() if line.startswith("adapter:")]
    assert len(printed) == 1 and "2 processes" in printed[0]  # only the main process writes and reports
    assert sorted(p.name for p in runs["two"].iterdir()) == ["adapter_config.json", "checkpoint",
                                                             "model.safetensors", "training.json"]


def test_a_resumed_run_from_features_ends_as_an_uninterrupted_one(runs, feature_dir, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(runs["one"] / "checkpoint", out / "checkpoint")  # as if the run had stopped after step 5
    main([*RUN, *ONE, "--features", str(feature_dir), "--out", str(out), "--resume"])
    assert max_weight_difference(out, runs["one"]) <= RESUME_TOLERANCE
    assert_histories_close(history(out), history(runs["one"]), RESUME_TOLERANCE)


def test_resuming_from_features_with_another_configuration_names_what_differs(runs, feature_dir, tmp_path):
    out = tmp_path / "one"
    shutil.copytree(runs["one"] / "checkpoint", out / "checkpoint")
    with pytest.raises(SystemExit, match=r"batch_size \(checkpoint 8, this run 4\)"):
        main([*RUN, *TWO, "--features", str(feature_dir), "--out", str(out), "--resume"])
    with pytest.raises(SystemExit, match=r"held_out \(checkpoint 8, this run 9\)"):
        main([*RUN, *ONE, "--held-out", "9", "--features", str(feature_dir), "--out", str(out), "--resume"])
    with pytest.raises(SystemExit, match=r"num_processes \(checkpoint 2, this run 1\)"):
        shutil.copytree(runs["two"] / "checkpoint", tmp_path / "two" / "checkpoint")
        main([*RUN, *TWO, "--features", str(feature_dir), "--out", str(tmp_path / "two"), "--resume"])


def test_recomputing_the_target_follows_the_loss_curve_of_reading_its_features(shipped_target, feature_dir):
    shards = FeatureShards(feature_dir, shipped_target, 1)
    vocab = list(range(shipped_target.config.vocab_size))
    settings = dict(steps=4, batch_size=8, held_out=8, eval_every=1, warmup=1, lr=1e-3, progress=False)
    _, stored = train_adapter_on_features(shipped_target, shards, vocab, **settings)
    _, recomputed = train_adapter_on_features(shipped_target, shards, vocab, recompute=True, **settings)
    assert_histories_close(stored, recomputed, RECOMPUTE_TOLERANCE)
    assert stored[-1]["train_loss"] != stored[1]["train_loss"]  # it trained


def test_a_shard_copied_from_another_feature_folder_is_refused(tmp_path):
    target, other = tiny_model(layers=4, vocab=64, seed=1), tiny_model(layers=4, vocab=64, seed=9)
    data = examples(6, 64)
    made = {name: precompute_features(model, data, tmp_path / name, exit_layers=layers, top_k=4,
                                      examples_per_shard=3, progress=False)
            for name, model, layers in (("mine", target, [2]), ("layer3", target, [3]), ("other", other, [2]))}
    FeatureShards(made["mine"], target, 2)  # as written: accepted
    shard = "features-00001.safetensors"
    shutil.copy(made["layer3"] / shard, made["mine"] / shard)
    with pytest.raises(ValueError, match="holds exit layers \\[3\\].*another feature folder"):
        FeatureShards(made["mine"], target, 2)
    shutil.copy(made["other"] / shard, made["mine"] / shard)
    with pytest.raises(ValueError, match="computed from another target"):
        FeatureShards(made["mine"], target, 2)
    (made["mine"] / shard).unlink()
    with pytest.raises(FileNotFoundError, match="lacks feature shards"):
        FeatureShards(made["mine"], target, 2)


def test_the_timing_command_compares_both_ways_on_the_same_batches(feature_dir, tmp_path, capsys):
    report_path = tmp_path / "timing.json"
    main(["time-feature-training", "--model", "tiny", "--features", str(feature_dir), "--draft-vocab-size", "512",
          "--steps", "2", "--repeats", "1", "--json", str(report_path)])
    report = json.loads(report_path.read_text())
    assert report["epoch_steps"] == 4 and len(report["seconds"]["features"]) == len(report["seconds"]["recompute"])
    assert report["max_loss_difference"] <= RECOMPUTE_TOLERANCE and report["speedup"] > 0
    assert "faster" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="already exists"):
        main(["time-feature-training", "--model", "tiny", "--features", str(feature_dir), "--json",
              str(report_path)])


def test_an_adapter_with_an_mlp_trains_from_features(feature_dir, shipped_target, tmp_path):
    out = tmp_path / "mlp"
    main([*RUN, *ONE, "--mlp", "--features", str(feature_dir), "--out", str(out)])
    adapter = KangarooAdapter.from_pretrained(out, shipped_target)
    start = KangarooAdapter.from_target(shipped_target, 1, mlp=True)
    assert adapter.has_mlp and json.loads((out / "adapter_config.json").read_text())["mlp"] is True
    assert not torch.equal(adapter.mlp.down_proj.weight, start.mlp.down_proj.weight)  # the MLP trained too
    plain = tmp_path / "plain"
    KangarooAdapter.from_target(shipped_target, 1).save_pretrained(plain)
    with pytest.raises(SystemExit, match="has no MLP"):
        main([*RUN, *ONE, "--mlp", "--init", str(plain), "--features", str(feature_dir), "--out", str(tmp_path / "x")])
