"""Linear layers with measured kernels: the plan is the fastest option, every kernel computes the same layer."""

import copy
import json

import pytest
import torch
from torch import nn

from kangaroo_lite import load_default
from kangaroo_lite.bench.kernels import SIZES, compare_kernels
from kangaroo_lite.cli import main
from kangaroo_lite.models import cpu_kernels
from kangaroo_lite.models.cpu_kernels import (
    KERNELS,
    TunedLinear,
    best_plan,
    describe_plans,
    kernel_plans,
    packed_kernels_available,
    plan_options,
    timed_options,
    tune_linears,
    worth_tuning,
)

needs_onednn = pytest.mark.skipif(not packed_kernels_available(), reason="this PyTorch build has no oneDNN linear")


def test_best_plan_takes_the_fastest_kernel_and_pads_to_a_cheaper_row_count():
    seconds = {("stock", 1): 1.0, ("stock", 2): 2.0, ("stock", 3): 3.0, ("stock", 4): 2.5, ("packed", 1): 1.5,
               ("packed", 2): 1.8, ("packed", 3): 1.9, ("packed", 4): 1.2, ("pair", 1): 0.9, ("pair", 2): 1.6}
    assert best_plan(seconds) == {1: ("pair", 1), 2: ("packed", 4), 3: ("packed", 4), 4: ("packed", 4)}


def test_the_pair_kernel_is_an_option_for_at_most_two_rows():
    options = plan_options(KERNELS, (1, 2, 3))
    assert ("pair", 3) not in options and ("pair", 2) in options
    assert ("stock", 3) in options and ("packed", 3) in options and ("bare", 3) not in options
    assert set(timed_options((1, 2, 3))) == set(options) | {("bare", 1), ("bare", 2), ("bare", 3)}


def test_a_plan_is_worth_tuning_only_where_it_saves_enough_against_a_plain_linear_layer():
    seconds = {("bare", 1): 1.0, ("bare", 2): 2.0, ("packed", 1): 0.8, ("packed", 2): 1.0}
    plan = best_plan(seconds)
    assert plan == {1: ("packed", 1), 2: ("packed", 2)} and worth_tuning(plan, seconds)
    assert not worth_tuning(plan, {**seconds, ("packed", 1): 1.0, ("packed", 2): 1.8})  # 7% saved: not enough


def test_best_plan_prefers_fewer_rows_on_ties():
    assert best_plan({("stock", 1): 1.0, ("stock", 2): 1.0}) == {1: ("stock", 1), 2: ("stock", 2)}


@needs_onednn
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 7), (1, 17), (0,)])
def test_every_kernel_and_padding_computes_the_linear_layer(kernel, bias, shape):
    torch.manual_seed(0)
    linear = nn.Linear(24, 40, bias=bias)
    tuned = TunedLinear(linear, {rows: (kernel, 16) for rows in (1, 2, 16)} if kernel != "pair"
                        else {1: ("pair", 2), 2: ("pair", 2), 16: ("stock", 16)})
    x = torch.randn(*shape, 24)
    with torch.inference_mode():
        assert torch.allclose(tuned(x), linear(x), atol=1e-5)


@needs_onednn
def test_a_changed_weight_is_reordered_again():
    linear = nn.Linear(8, 8)
    tuned = TunedLinear(linear, {1: ("packed", 1)})
    x = torch.randn(1, 8)
    with torch.inference_mode():
        tuned(x)
    with torch.no_grad():
        linear.weight.mul_(2)
    with torch.inference_mode():
        assert torch.allclose(tuned(x), linear(x), atol=1e-5)


def test_gradients_take_the_stock_kernel():
    linear = nn.Linear(8, 4)
    tuned = TunedLinear(linear, {1: ("packed", 1)})
    tuned(torch.randn(1, 8)).sum().backward()
    assert linear.weight.grad is not None


def _packed_fastest(layers, options):
    return {(kernel, rows): {"packed": 1.0, "pair": 2.0, "stock": 3.0, "bare": 3.0}[kernel] for kernel, rows in options}


@pytest.fixture
def packed_everywhere(monkeypatch):
    """Tuning that picks oneDNN for every layer and keeps it whatever whole passes say."""
    monkeypatch.setattr(cpu_kernels, "_sweep_times", _packed_fastest)
    monkeypatch.setattr(cpu_kernels, "_PLANS", {})
    monkeypatch.setattr(cpu_kernels, "MODEL_GAIN", -100.0)


@needs_onednn
def test_a_tuned_model_keeps_its_parameters_state_dict_and_outputs(packed_everywhere):
    _, target, _, _ = load_default("tiny", tuned_kernels=False)
    stock = copy.deepcopy(target)
    keys = set(target.state_dict())
    plans = tune_linears(target)
    tuned_layers = [m for m in target.modules() if isinstance(m, TunedLinear)]
    assert plans and tuned_layers and kernel_plans(target) == plans
    assert set(target.state_dict()) == keys
    if target.config.tie_word_embeddings:
        assert target.lm_head.weight is target.model.embed_tokens.weight
    ids = torch.randint(0, target.config.vocab_size, (1, 9))
    with torch.inference_mode():
        assert torch.allclose(target(ids).logits, stock(ids).logits, atol=1e-4)
        copy.deepcopy(target)(ids)  # the reordered weights are rebuilt, not copied
    assert tune_linears(target) == {}  # tuned already


@needs_onednn
def test_a_model_whose_whole_passes_do_not_gain_keeps_its_linear_layers(packed_everywhere, monkeypatch):
    monkeypatch.setattr(cpu_kernels, "MODEL_GAIN", 1.0)  # would need passes that take no time at all
    target = load_default("tiny", tuned_kernels=False).target
    assert tune_linears(target) == {}
    assert not kernel_plans(target) and any(type(m) is nn.Linear for m in target.modules())


def test_shapes_tuning_would_not_speed_up_enough_keep_their_linear_layers(monkeypatch):
    barely_faster = lambda layers, options: {option: 1.0 if option[0] == "bare" else 0.95 for option in options}  # noqa: E731
    monkeypatch.setattr(cpu_kernels, "_sweep_times", barely_faster)
    monkeypatch.setattr(cpu_kernels, "_PLANS", {})
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    assert tune_linears(model) == {}
    assert all(type(m) is nn.Linear for m in model)


@needs_onednn
def test_loading_tunes_only_when_asked(packed_everywhere):
    assert not any(isinstance(m, TunedLinear) for m in load_default("tiny", tuned_kernels=False).target.modules())
    models = load_default("tiny")
    assert kernel_plans(models.target) and kernel_plans(models.draft) and kernel_plans(models.adapter)


def test_plans_in_words():
    words = describe_plans({(49152, 576, False): {1: ("pair", 2), 2: ("pair", 2), 4: ("packed", 4)}})
    assert words == {"49152×576": {1: "pair (padded to 2)", 2: "pair", 4: "packed"}}


@needs_onednn
def test_compare_kernels_times_both_and_tunes_the_target(packed_everywhere):
    target = load_default("tiny", tuned_kernels=False).target
    ids = torch.randint(0, target.config.vocab_size, (1, 12))
    report = compare_kernels(target, ids, sizes=(1, 2), repeats=2)
    assert report["context"] == 12 and set(report["passes"]) == {1, 2} and report["plans"]
    assert report["passes"][1]["stock_cost"] == 1.0 == report["passes"][1]["tuned_cost"]
    assert report["passes"][2]["speedup"] > 0 and kernel_plans(target)
    with pytest.raises(ValueError, match="tuned already"):
        compare_kernels(target, ids, sizes=(1,), repeats=1)


@needs_onednn
def test_the_kernels_command_writes_its_report(tmp_path, packed_everywhere, capsys):
    main(["kernels", "--model", "tiny", "--repeats", "2", "--json", str(tmp_path / "kernels.json")])
    report = json.loads((tmp_path / "kernels.json").read_text())
    assert report["model"] == "tiny" and set(report["passes"]) == {str(n) for n in SIZES} and report["plans"]
    assert "stock against tuned" in capsys.readouterr().out
