"""The benchmark runner on tiny random models: results.json, the HTML report, the lossless check."""

import json

import pytest
import torch
from helpers import make_tiny_data_dir

from kangaroo_lite.bench.cost_model import expected_speedup
from kangaroo_lite.bench.methods import ABLATIONS, OURS, PEERS, TREES, hf_generate
from kangaroo_lite.bench.runner import (
    BenchConfig,
    cost_estimate,
    cost_sizes,
    mismatches,
    resolve_device,
    round_costs_of,
    run_bench,
    write_results,
)
from kangaroo_lite.cli import main


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A data folder shaped like data/, with tiny random models over the real tokenizer."""
    return make_tiny_data_dir(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def results(tiny_data):
    cfg = BenchConfig.quick(data_dir=str(tiny_data), questions_per_subtask=1, max_new_tokens=8, repeats=1)
    return run_bench(cfg, progress=False)


def test_every_method_is_summarised_with_per_subtask_figures(results):
    assert set(results["summary"]) == set(OURS + TREES + ABLATIONS + PEERS)
    for name, summary in results["summary"].items():
        assert summary["speedup"] > 0 and summary["tokens_per_second"] > 0, name
        assert set(summary["per_subtask"]) == {"mt_bench", "translation", "summarization", "qa",
                                               "math_reasoning", "rag"}
    assert results["baseline"] in ("autoregressive", "hf_greedy")
    assert results["summary"][results["baseline"]]["speedup"] == pytest.approx(1.0)


def test_lossless_methods_match_the_baseline_and_mismatches_are_reported(results):
    assert mismatches(results) == []
    assert all(results["summary"][m]["identical_to_baseline"]
               for m in ("speculative", "kangaroo", "kangaroo_full_vocab", "kangaroo_no_copy", "lookup", "hf_assisted"))
    broken = json.loads(json.dumps(results))
    broken["summary"]["kangaroo"]["identical_to_baseline"] = False
    assert mismatches(broken) == ["kangaroo"]


def test_the_cost_models_estimate_is_computed_from_the_stored_round_costs(results):
    from kangaroo_lite.core.result import Step

    stored = json.loads(json.dumps(results))  # as read back from results.json
    for name in ("speculative", "kangaroo"):
        summary, costs = results["summary"][name], round_costs_of(stored, name)
        assert costs.c == pytest.approx(summary["cost_ratio"]) and set(costs.curve) >= {1, 8}
        c = costs.c * (1 - summary["copied_drafts"])  # a copied draft needs no draft step
        assert expected_speedup(summary["judged_acceptance_rate"], summary["mean_drafted"], c,
                                costs.verify_cost(summary["mean_drafted"] + 1)) == pytest.approx(
            summary["estimated_speedup"])
    lookup = results["summary"]["lookup"]
    assert lookup["cost_ratio"] == 0 and round_costs_of(stored, "lookup").curve == costs.curve  # copies: no draft step
    assert lookup["accepted_by_source"]["drafted"] == 0
    steps = [Step(emitted=[1, 2], drafted=[1, 5], accepted=1), Step(emitted=[3])]  # one judged rejection
    estimate = cost_estimate(steps, costs)
    assert estimate["judged_acceptance_rate"] == pytest.approx(0.5) and estimate["mean_drafted"] == pytest.approx(1)
    assert estimate["estimated_speedup"] == pytest.approx(costs.expected_speedup(0.5, 1))


def test_the_cost_curve_is_timed_as_far_as_the_longest_verification_pass():
    assert cost_sizes(0) == cost_sizes(7) == (1, 2, 3, 4, 5, 6, 7, 8)
    assert cost_sizes(8)[-1] == 12 and cost_sizes(20)[-1] == 24 and cost_sizes(40)[-1] == 24


def test_question_records_look_like_spec_bench_answers(results):
    record = results["questions"][0]
    assert {"question_id", "category", "turn", "method", "new_tokens", "wall_time", "decoding_steps",
            "accept_lengths"} <= set(record)
    turns = {r["turn"] for r in results["questions"] if r["category"] == "mt_bench"}
    assert turns == {0, 1}  # both turns of the conversation are benchmarked


def test_results_json_and_a_self_contained_html_report_are_written(results, tmp_path):
    path = write_results(results, tmp_path)
    assert json.loads(path.read_text())["summary"].keys() == results["summary"].keys()
    report = (tmp_path / "report.html").read_text()
    assert "Plotly.newPlot" in report  # plotly.js is inlined ...
    assert '<script src="http' not in report.replace("'", '"')  # ... and nothing is fetched from a CDN
    assert report.count('class="plotly-graph-div"') == 3
    assert 'id="sources"' in report  # where each subtask's accepted drafts came from


def test_accepted_drafts_are_credited_to_the_context_or_the_drafter():
    from kangaroo_lite.bench.report import copied_share, source_rows
    from kangaroo_lite.bench.runner import accepted_by_source
    from kangaroo_lite.core.result import Step

    steps = [Step(emitted=[1, 2, 3], drafted=[1, 2, 4], accepted=2, info={"copied": 1}),  # a copy, a draft
             Step(emitted=[5, 6, 7, 8], drafted=[5, 6, 7], accepted=3, info={"copied": 3}),  # three copies
             Step(emitted=[9])]
    sources = accepted_by_source(steps)
    assert sources == {"copied": 4, "drafted": 1, "own": 3}
    assert copied_share(sources) == pytest.approx(0.8) and copied_share({"copied": 0, "drafted": 0}) is None
    drafted_only = {"copied": 0, "drafted": 2}
    results = {"summary": {"kangaroo": {"per_subtask": {"rag": {"accepted_by_source": sources}}},
                           "speculative": {"per_subtask": {"rag": {"accepted_by_source": drafted_only}}}}}
    assert source_rows(results) == (["kangaroo"], [["rag", "4 / 1"]])


def test_the_device_option_is_honoured():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")


def test_the_thread_count_is_used_for_the_run_and_restored_after(results, tiny_data):
    assert results["environment"]["threads"] == 1  # the default, whatever the caller had
    before = torch.get_num_threads()
    cfg = BenchConfig.quick(data_dir=str(tiny_data), methods=[], subtasks=["qa"], questions_per_subtask=1,
                            max_new_tokens=2, repeats=1, threads=2)
    assert run_bench(cfg, progress=False)["environment"]["threads"] == 2
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        run_bench(BenchConfig.quick(data_dir=str(tiny_data), threads=0), progress=False)


def test_cli_bench_writes_results_and_refuses_to_overwrite(tiny_data, tmp_path, capsys):
    args = ["bench", "--quick", "--data-dir", str(tiny_data), "--methods", "speculative", "--subtasks", "qa",
            "--max-new-tokens", "6", "--out", str(tmp_path)]
    main(args)
    data = json.loads((tmp_path / "results.json").read_text())
    assert set(data["summary"]) == {"autoregressive", "speculative"}
    with pytest.raises(SystemExit, match="already exists"):
        main(args)


def test_cli_bench_sampling_writes_the_mtad_comparison_with_its_floors(tiny_data, tmp_path, capsys):
    args = ["bench", "--sampling", "--quick", "--data-dir", str(tiny_data), "--subtasks", "qa", "math_reasoning",
            "--max-new-tokens", "6", "--num-draft-tokens", "3", "--out", str(tmp_path)]
    main(args)
    data = json.loads((tmp_path / "sampling.json").read_text())
    assert set(data["methods"]) == {"autoregressive", "speculative", "kangaroo", "lookup", "mtad", "mmtad"}
    assert data["config"]["options"]["mtad"]["num_draft_tokens"] == 3
    assert set(data["floors"]["checks"]) == {"perplexity", "accuracy", "faster", "less_cpu"}
    assert "less CPU time per token than speculative sampling" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="already exists"):
        main(args)
    with pytest.raises(SystemExit, match="temperature"):
        main([*args[:-2], "--out", str(tmp_path / "cold"), "--temperature", "0"])


def test_hugging_faces_assisted_generation_prints_no_notice_about_its_own_internal_call(shipped, capfd):
    tokenizer, target, draft, _ = shipped
    ids = tokenizer("Which river flows through Linroun?", return_tensors="pt").input_ids
    result = hf_generate(target, ids, 8, "hf_assisted", assistant_model=draft)
    assert result.tokens and "deprecated" not in capfd.readouterr().err
