"""The autoregressive baseline: equal to Hugging Face `generate`, seeded sampling, clear errors."""

import pytest
import torch
from helpers import ARCHITECTURES, eos_in_the_middle, tiny_model

from kangaroo_lite import autoregressive, encode_chat


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_greedy_output_equals_hugging_face_generate(arch):
    model = tiny_model(arch, layers=2, seed=1, sharpness=4.0)
    for length in (1, 3, 9):
        ids = torch.randint(3, 64, (1, length), generator=torch.Generator().manual_seed(length))
        ours = autoregressive(model, ids, 24).tokens
        theirs = model.generate(ids, max_new_tokens=24, do_sample=False)[0, length:].tolist()
        assert ours == theirs


def test_greedy_stops_at_eos_like_generate():
    model = tiny_model("llama", seed=3, sharpness=4.0)
    ids = torch.tensor([[5, 6, 7]])
    eos = eos_in_the_middle(model, autoregressive(model, ids, 20).tokens)
    ours = autoregressive(model, ids, 20)
    theirs = model.generate(ids, max_new_tokens=20, do_sample=False)[0, 3:].tolist()
    assert ours.tokens == theirs
    assert ours.tokens[-1] == eos and ours.stop_reason == "eos"


def test_shipped_target_greedy_equals_generate(shipped, questions):
    for record in questions[::60]:
        ids = encode_chat(shipped.tokenizer, record["turns"][0])
        ours = autoregressive(shipped.target, ids, 40).tokens
        theirs = shipped.target.generate(ids, max_new_tokens=40, do_sample=False)[0, ids.shape[1]:].tolist()
        assert ours == theirs


def test_without_kv_cache_the_output_is_the_same():
    model = tiny_model("qwen2", seed=2, sharpness=4.0)
    ids = torch.tensor([[4, 9, 12, 30]])
    assert autoregressive(model, ids, 16).tokens == autoregressive(model, ids, 16, use_cache=False).tokens


def test_sampling_is_reproducible_with_a_seed_and_varies_across_seeds():
    model = tiny_model("llama", seed=4)
    ids = torch.tensor([[4, 5]])
    a = autoregressive(model, ids, 20, temperature=1.0, seed=11).tokens
    assert a == autoregressive(model, ids, 20, temperature=1.0, seed=11).tokens
    assert a != autoregressive(model, ids, 20, temperature=1.0, seed=12).tokens


def test_result_counts_one_token_per_target_forward():
    model = tiny_model("llama", seed=5)
    result = autoregressive(model, torch.tensor([[3, 4]]), 10)
    assert len(result.tokens) == result.target_forwards == len(result.steps) == 10
    assert result.mean_accepted == 1.0 and result.tokens_per_second > 0
    assert result.fates() == ["target"] * 10


def test_text_is_decoded_when_a_tokenizer_is_given(shipped):
    ids = encode_chat(shipped.tokenizer, "Who is the mayor of Linroun?")
    result = autoregressive(shipped.target, ids, 30, tokenizer=shipped.tokenizer)
    assert result.text == shipped.tokenizer.decode(result.tokens, skip_special_tokens=True)
    assert result.text


@pytest.mark.parametrize("ids,new,error", [
    (torch.zeros((1, 0), dtype=torch.long), 5, "empty"),
    (torch.ones(1, 2, 2, dtype=torch.long), 5, "one sequence"),
    (torch.tensor([[1, 999]]), 5, "vocabulary"),
    (torch.tensor([[1, 2]]), 0, "max_new_tokens"),
    (torch.tensor([[1, 2]]), 10_000, "context"),
    (torch.tensor([[1.0, 2.0]]), 5, "integer"),
])
def test_bad_input_gets_a_clear_error(ids, new, error):
    with pytest.raises((ValueError, TypeError), match=error):
        autoregressive(tiny_model(), ids, new)


def test_text_instead_of_ids_is_a_type_error():
    with pytest.raises(TypeError, match="tokenizer"):
        autoregressive(tiny_model(), "hello", 5)


@pytest.mark.parametrize("temperature,top_p", [(-1.0, 1.0), (float("nan"), 1.0), (1.0, 0.0), (1.0, 1.01)])
def test_bad_sampling_parameters_get_a_clear_error(temperature, top_p):
    with pytest.raises(ValueError, match="temperature|top_p"):
        autoregressive(tiny_model(), torch.tensor([[1, 2]]), 5, temperature=temperature, top_p=top_p)


def test_an_empty_chat_prompt_is_rejected(shipped):
    with pytest.raises(ValueError, match="empty"):
        encode_chat(shipped.tokenizer, "   ")
