"""The batch benchmark: pass costs, throughput per batch size against batched baselines, the CLI."""

import json

import pytest
import torch
from helpers import make_tiny_data_dir, tiny_model

from kangaroo_lite.bench.batch_cost import batch_cost_curves, batch_pass_costs, ms_per_token
from kangaroo_lite.bench.batch_report import batch_markdown, batch_mismatches
from kangaroo_lite.bench.batching import BATCHED, crossover, groups_of, hf_generate_batch, run_batch_bench
from kangaroo_lite.bench.methods import hf_generate
from kangaroo_lite.bench.runner import BenchConfig
from kangaroo_lite.cli import main


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_data_dir(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def results(tiny_data):
    cfg = BenchConfig.quick(data_dir=str(tiny_data), methods=list(BATCHED), subtasks=["qa", "translation"],
                            max_new_tokens=8)
    return run_batch_bench(cfg, [2, 1], progress=False)


def test_every_method_is_measured_at_every_batch_size_against_the_faster_baseline(results):
    assert results["batch_sizes"] == [1, 2]
    for size in (1, 2):
        entry = results["by_batch_size"][size]
        assert set(entry["methods"]) == set(BATCHED)
        assert entry["baseline"] in ("autoregressive", "hf_greedy")
        assert entry["methods"][entry["baseline"]]["speedup"] == 1.0
        for row in entry["methods"].values():
            assert row["tokens_per_second"] > 0 and row["mean_latency"] > 0
            assert row["identity"]["identity_rate"] == 1.0  # every row equals its prompt decoded alone
    assert set(results["crossover"]) == {"speculative", "kangaroo"}
    assert set(results["pass_costs_ms"]) == {1, 2}


def test_the_report_names_the_machine_the_crossover_and_the_lossless_check(results):
    text = batch_markdown(json.loads(json.dumps(results)))
    assert "tokens/s" in text.lower() and "batch 2" in text and "crossover" in text
    assert "equals its prompt decoded alone" in text
    assert batch_mismatches(json.loads(json.dumps(results))) == []


def test_crossover_is_the_first_batch_size_below_the_bar():
    assert crossover({1: 2.0, 2: 1.5, 4: 1.05, 8: 1.2}) == 4
    assert crossover({1: 2.0, 16: 1.2}) is None


def test_groups_keep_order_and_the_last_one_may_be_short():
    assert groups_of([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]


def test_pass_costs_grow_with_rows_and_tokens_and_curves_start_at_one():
    model = tiny_model(layers=2, hidden=64, vocab=128)
    costs = batch_pass_costs(model, torch.arange(3, 20).unsqueeze(0), [1, 4], [1, 4], repeats=3)
    assert set(costs) == {1, 4} and all(set(c) == {1, 4} for c in costs.values())
    assert all(curve[1] == 1.0 for curve in batch_cost_curves(costs).values())
    assert ms_per_token(costs)[4][4] == pytest.approx(costs[4][4] / 16)
    with pytest.raises(ValueError):
        batch_pass_costs(model, torch.arange(3, 9).unsqueeze(0), [0], [1])


def test_hf_batched_generate_gives_each_row_its_greedy_output_cut_at_eos():
    model = tiny_model(layers=2, vocab=64, sharpness=30.0)
    prompts = [torch.tensor([5, 6, 7, 8, 9]), torch.tensor([10]), torch.tensor([11, 12])]
    batch = hf_generate_batch(model, prompts, 12)
    alone = [hf_generate(model, p.unsqueeze(0), 12, "hf_greedy") for p in prompts]
    assert [r.tokens for r in batch] == [a.tokens for a in alone]


def test_a_method_that_cannot_batch_is_refused(tiny_data):
    cfg = BenchConfig.quick(data_dir=str(tiny_data), methods=["hf_assisted"], subtasks=["qa"], max_new_tokens=4)
    with pytest.raises(ValueError, match="do not decode batches"):
        run_batch_bench(cfg, [1], progress=False)


def test_cli_batch_size_writes_batching_json_and_md_and_refuses_to_overwrite(tiny_data, tmp_path, capsys):
    args = ["bench", "--quick", "--data-dir", str(tiny_data), "--subtasks", "qa", "--max-new-tokens", "6",
            "--batch-size", "1", "2", "--out", str(tmp_path)]
    main(args)
    data = json.loads((tmp_path / "batching.json").read_text())
    assert set(data["by_batch_size"]["2"]["methods"]) == set(BATCHED)
    assert (tmp_path / "batching.md").read_text().startswith("# Batched decoding")
    assert "crossover" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="already exists"):
        main(args)
