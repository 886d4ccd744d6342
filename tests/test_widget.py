"""The threshold-slider app: token fates (rejected drafts included), copied drafts in their own colours, exit
markers, HTML markers, live updates."""

from __future__ import annotations

import functools
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
import torch
from helpers import tiny_model

from kangaroo_lite import KangarooAdapter, kangaroo
from kangaroo_lite.core.result import DecodingResult, Step
from kangaroo_lite.notebook.slider_app import AdapterBank, build_app, quick_trainer
from kangaroo_lite.notebook.slider_view import (
    COLOURS,
    COPIED_COLOURS,
    FATES,
    REJECTED,
    ExitMarker,
    TokenRecord,
    app_figure,
    copied_accepted,
    legend_html,
    mean_draft_length,
    render_round_html,
    round_view,
    stats_html,
    summarize,
    token_records,
)
from kangaroo_lite.notebook.tokens import COPY, COPY_COLOURS, DRAFTER, emitted_sources, tokens_html

torch.set_num_threads(1)
PROMPT = torch.tensor([[3, 5, 7, 9, 11]])
OTHER_PROMPT = torch.tensor([[4, 8, 15, 16, 23, 42]])


@functools.cache
def target() -> torch.nn.Module:
    """A tiny random Llama with peaked next-token distributions and no EOS."""
    return tiny_model(layers=4, sharpness=8.0, eos=None)


@functools.cache
def adapter(exit_layer: int = 2) -> KangarooAdapter:
    """An untrained adapter (copied from the target's next layer): drafts, sometimes wrongly."""
    return KangarooAdapter.from_target(target(), exit_layer)


class LetterTokenizer:
    """Decodes token i as a letter, and token 0 as markup that must be escaped."""

    def decode(self, ids) -> str:
        return "".join("<b>&" if int(i) == 0 else chr(97 + int(i) % 26) for i in ids)


class Spans(HTMLParser):
    """Collects the attributes of every start tag."""

    def __init__(self):
        super().__init__()
        self.tags: list[dict] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(dict(attrs, tag=tag))


def parse(markup: str) -> list[dict]:
    parser = Spans()
    parser.feed(markup)
    return parser.tags


def run(threshold: float, max_draft_tokens: int = 5, max_new_tokens: int = 40, copy_drafts: bool = False
        ) -> DecodingResult:
    """Kangaroo on PROMPT; the adapter alone unless `copy_drafts` (the tiny random model repeats itself, so
    copies are many and would decide the draft lengths the threshold tests look at)."""
    return kangaroo(target(), adapter(), PROMPT, max_new_tokens, max_draft_tokens=max_draft_tokens, threshold=threshold,
                    copy_drafts=copy_drafts)


def models() -> SimpleNamespace:
    return SimpleNamespace(tokenizer=LetterTokenizer(), target=target(), adapter=adapter())


# ---------------------------------------------------------------- round_view


@pytest.mark.parametrize("copy_drafts", [False, True])
@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0])
def test_round_view_gives_every_drafted_and_emitted_token_its_fate(threshold, copy_drafts):
    result = run(threshold, copy_drafts=copy_drafts)
    rounds = round_view(result)
    assert len(rounds) == len(result.steps)
    emitted = []
    for view, step in zip(rounds, result.steps, strict=True):
        fates = [t.fate for t in view.tokens]
        tokens = [t.token for t in view.tokens]
        assert view.draft_length == len(step.drafted) and view.accepted == step.accepted
        # accepted drafts, then the rejected ones (the drafts after `accepted`), then the target's own token
        assert tokens[: step.accepted] == step.drafted[: step.accepted]
        assert fates[: step.accepted] == ["accepted"] * step.accepted
        assert tokens[step.accepted : -1] == step.drafted[step.accepted :]
        assert fates[step.accepted : -1] == [REJECTED] * (len(step.drafted) - step.accepted)
        assert fates[-1] == step.fates()[-1] and tokens[-1] == step.emitted[-1]
        assert [t.draft_position for t in view.tokens[:-1]] == list(range(1, len(step.drafted) + 1))
        assert [t.confidence for t in view.tokens[:-1]] == step.info.get("confidences", [])
        copied = step.info.get("copied", 0)
        assert [t.source for t in view.tokens[:-1]] == [COPY] * copied + [DRAFTER] * (len(step.drafted) - copied)
        assert view.tokens[-1].source is None  # the target's own token
        emitted += [t.token for t in view.tokens if t.fate != REJECTED]
    assert emitted == result.tokens
    assert [t.fate for t in token_records(result) if t.fate != REJECTED] == result.fates()
    assert set(t.fate for t in token_records(result)) <= set(FATES)
    assert (copied_accepted(result.steps) > 0) == copy_drafts  # the tiny model repeats itself: copies pay


def test_copies_are_accepted_and_rejected_and_drafts_follow_them():
    records = token_records(run(0.0, copy_drafts=True))
    kinds = {(t.fate, t.source) for t in records}
    assert {("accepted", COPY), (REJECTED, COPY), ("accepted", DRAFTER)} <= kinds


def test_some_drafts_are_rejected_and_some_accepted():
    fates = {t.fate for t in token_records(run(0.0))}
    assert {"accepted", REJECTED, "correction"} <= fates


def test_exit_marker_sits_after_the_last_draft_when_the_threshold_stopped_the_loop():
    threshold = 0.08  # about the median confidence of the tiny model's drafts
    result = run(threshold, max_draft_tokens=3)
    stops = set()
    for view, step in zip(round_view(result), result.steps, strict=True):
        markers = [i for i, item in enumerate(view.items) if isinstance(item, ExitMarker)]
        stop = step.info.get("draft_stop")
        stops.add(stop)
        if not step.drafted or stop in ("budget", "copy"):  # a round of copies only: no draft loop ran
            assert markers == []
            continue
        assert markers == [len(view.items) - 2], "the marker comes right before the target's own token"
        marker = view.items[markers[0]]
        assert marker.reason == stop and marker.confidence == step.info["confidences"][-1]
        if stop == "threshold":
            assert marker.confidence < threshold
    assert {"threshold", "max_draft_tokens"} <= stops


def test_round_view_of_hand_made_rounds():
    result = DecodingResult(method="kangaroo", prompt_tokens=[1])
    info = dict(draft_stop="threshold", confidences=[0.9, 0.8, 0.7, 0.3])
    copy_info = dict(draft_stop="threshold", confidences=[0.5, 0.5, 0.9, 0.2], copied=2)
    result.steps = [
        Step(emitted=[5]),
        Step(emitted=[1, 2, 9], drafted=[1, 2, 3, 4], accepted=2, info=info),
        Step(emitted=[1, 2, 3, 7], drafted=[1, 2, 3], accepted=3, info=dict(draft_stop="max_draft_tokens")),
        # cut at EOS (token 2) inside the accepted drafts: the drafts after it were never judged
        Step(emitted=[1, 2], drafted=[1, 2, 3, 4], accepted=2, info=info),
        # two copies, then two adapter drafts: the first copy accepted, the second rejected
        Step(emitted=[6, 8], drafted=[6, 7, 1, 2], accepted=1, info=copy_info),
        # copies only: all accepted, then the bonus
        Step(emitted=[6, 7, 9], drafted=[6, 7], accepted=2, info=dict(draft_stop="copy", copied=2)),
    ]
    result.tokens = [t for s in result.steps for t in s.emitted]
    views = round_view(result)
    assert [(t.token, t.fate) for t in views[0].tokens] == [(5, "target")]
    assert [(t.token, t.fate) for t in views[1].tokens] == [
        (1, "accepted"),
        (2, "accepted"),
        (3, REJECTED),
        (4, REJECTED),
        (9, "correction"),
    ]
    assert views[1].items[4] == ExitMarker("threshold", 1, 0.3)
    assert [t.fate for t in views[2].tokens] == ["accepted"] * 3 + ["bonus"]
    assert isinstance(views[2].items[3], ExitMarker) and views[2].items[3].reason == "max_draft_tokens"
    assert views[3].items == [TokenRecord(1, "accepted", 3, 1, 0.9, DRAFTER),
                              TokenRecord(2, "accepted", 3, 2, 0.8, DRAFTER)]
    assert [(t.token, t.fate, t.source) for t in views[4].tokens] == [
        (6, "accepted", COPY),
        (7, REJECTED, COPY),
        (1, REJECTED, DRAFTER),
        (2, REJECTED, DRAFTER),
        (8, "correction", None),
    ]
    assert [(t.fate, t.source) for t in views[5].tokens] == [("accepted", COPY)] * 2 + [("bonus", None)]
    assert not any(isinstance(item, ExitMarker) for item in views[5].items)  # no draft loop ran
    assert copied_accepted(result.steps) == 3
    assert emitted_sources(result.steps[4]) == [COPY, None]
    assert emitted_sources(result.steps[1]) == [DRAFTER] * 2 + [None]


def test_lowering_the_threshold_lengthens_drafts():
    gamma = 5
    eager, cautious = run(0.0, gamma), run(1.0, gamma)
    assert eager.tokens == cautious.tokens  # lossless either way
    assert all(len(s.drafted) == 1 for s in cautious.steps if s.drafted)
    assert all(len(s.drafted) == gamma for s in eager.steps if s.info.get("draft_stop") != "budget" and s.drafted)
    assert mean_draft_length(eager) > mean_draft_length(cautious) == 1.0
    lengths = [mean_draft_length(run(t, gamma)) for t in (0.0, 0.3, 0.6, 1.0)]
    assert lengths[0] >= lengths[-1] and lengths[0] > 1


# ---------------------------------------------------------------- HTML and numbers


@pytest.mark.parametrize("copy_drafts", [False, True])
def test_html_marks_every_token_with_its_fate_and_every_round_with_its_draft_length(copy_drafts):
    result = run(0.3, copy_drafts=copy_drafts)
    rounds = round_view(result)
    markup = render_round_html(rounds, LetterTokenizer(), prompt="a <prompt>")
    tags = parse(markup)
    tokens = [t for t in tags if "data-fate" in t]
    assert [t["data-fate"] for t in tokens] == [r.fate for r in token_records(result)]
    assert [t.get("data-source") for t in tokens] == [r.source for r in token_records(result)]
    assert all(t["class"] == "kl-token" for t in tokens)
    round_tags = [t for t in tags if "data-draft-length" in t]
    assert [int(t["data-draft-length"]) for t in round_tags] == [len(s.drafted) for s in result.steps]
    assert [int(t["data-accepted"]) for t in round_tags] == [s.accepted for s in result.steps]
    exits = [t for t in tags if t.get("class") == "kl-exit"]
    assert len(exits) == sum(isinstance(i, ExitMarker) for r in rounds for i in r.items)
    assert all(t["data-exit"] in ("threshold", "max_draft_tokens") for t in exits)
    legend = [(t["data-legend"], t.get("data-source")) for t in tags if "data-legend" in t]
    copies = [("accepted", COPY), (REJECTED, COPY)] if copy_drafts else []
    assert sorted(legend, key=str) == sorted([(f, None) for f in FATES] + copies, key=str)
    assert "<b>&" not in markup.replace("<b>&lt;", "")  # token text is escaped
    assert "a &lt;prompt&gt;" in markup


def test_rejected_drafts_are_struck_through():
    markup = render_round_html(round_view(run(0.0, copy_drafts=True)), LetterTokenizer(), legend=False)
    rejected = [t for t in parse(markup) if t.get("data-fate") == REJECTED]
    assert rejected and all("line-through" in t["style"] for t in rejected)
    assert {t.get("data-source") for t in rejected} == {COPY, DRAFTER}


def _background(tag: dict) -> str:
    return tag["style"].split("background:")[1].split(";")[0]


def test_copied_drafts_have_their_own_colours_accepted_and_rejected():
    assert len({COLOURS["accepted"], COPIED_COLOURS["accepted"], COLOURS[REJECTED], COPIED_COLOURS[REJECTED],
                COLOURS["correction"], COLOURS["bonus"], COLOURS["target"]}) == 7
    markup = render_round_html(round_view(run(0.0, copy_drafts=True)), LetterTokenizer())
    tags = [t for t in parse(markup) if "data-fate" in t]
    for fate in ("accepted", REJECTED):
        for source, colours in ((COPY, COPIED_COLOURS), (DRAFTER, COLOURS)):
            chosen = [t for t in tags if t["data-fate"] == fate and t.get("data-source") == source]
            assert chosen and {_background(t) for t in chosen} == {colours[fate]}, (fate, source)
    (copied_key,) = [t for t in parse(markup) if t.get("data-legend") == "accepted" and t.get("data-source") == COPY]
    assert _background(copied_key) == COPIED_COLOURS["accepted"]
    assert "data-source" not in legend_html(copies=False)  # a trace without copies keeps the plain key


def test_emitted_token_view_colours_copies_apart():
    with_copies, without = run(0.0, copy_drafts=True), run(0.0)
    tags = [t for t in parse(tokens_html(LetterTokenizer(), with_copies)) if "data-fate" in t]
    assert [t["data-fate"] for t in tags] == with_copies.fates()
    copied = [t for t in tags if t.get("data-source") == COPY]
    drafted = [t for t in tags if t.get("data-source") == DRAFTER]
    assert len(copied) == copied_accepted(with_copies.steps) > 0 and drafted
    assert {_background(t) for t in copied} == {COPY_COLOURS["accepted"]} != {_background(t) for t in drafted}
    assert all(t["data-fate"] == "accepted" for t in copied + drafted)
    assert 'data-source="copy"' not in tokens_html(LetterTokenizer(), without)


def test_summarize_and_stats_html():
    baseline = SimpleNamespace(tokens=run(0.0).tokens, wall_time=0.2)
    result = run(0.0)
    stats = summarize(result, baseline, seconds=0.1, baseline_seconds=0.2)
    assert stats["speedup"] == pytest.approx(2.0) and stats["identical"]
    assert stats["mean_accepted"] == result.mean_accepted and stats["rounds"] == len(result.steps)
    assert stats["mean_draft_length"] == mean_draft_length(result)
    (tag,) = [t for t in parse(stats_html(dict(threshold=0.25, **stats))) if t.get("class") == "kl-stats"]
    assert tag["data-threshold"] == "0.25" and tag["data-speedup"] == "2.000" and tag["data-identical"] == "true"
    assert float(tag["data-mean-accepted"]) == pytest.approx(result.mean_accepted, abs=1e-3)
    exits = run(1.0)  # every round stops at the threshold: the line counts them against every round
    line = stats_html(dict(threshold=1.0, **summarize(exits, baseline, 0.1, 0.2)))
    assert f"threshold exits {len(exits.steps)} of {len(exits.steps)} rounds" in line
    copying = run(0.0, copy_drafts=True)
    stats = summarize(copying, baseline, 0.1, 0.2)
    assert stats["copied"] == copied_accepted(copying.steps) > 0
    assert stats["accepted_drafts"] == sum(s.accepted for s in copying.steps)
    assert f"{stats['copied']} of {stats['accepted_drafts']} accepted drafts copied" in stats_html(stats)


def test_app_figure_shows_acceptance_by_position():
    result = run(0.0, max_draft_tokens=4)
    stats = summarize(result, result, 0.1, 0.1)
    fig = app_figure(result, stats, max_draft_tokens=4)
    by_position = result.acceptance_by_position()
    assert list(fig.data[0].y[: len(by_position)]) == pytest.approx(by_position)
    assert list(fig.data[0].x) == [1, 2, 3, 4]
    drafted = [d for trace in fig.data[1:6] for d in trace.y]
    assert sum(drafted) == sum(1 for s in result.steps if s.drafted)
    copying = run(0.0, max_draft_tokens=4, copy_drafts=True)  # rounds with copies are counted too
    fig = app_figure(copying, summarize(copying, copying, 0.1, 0.1), max_draft_tokens=4)
    assert sum(d for trace in fig.data[1:6] for d in trace.y) == sum(1 for s in copying.steps if s.drafted)
    made = DecodingResult(method="kangaroo", prompt_tokens=[1])  # a round of copies only, one cut by cost
    made.steps = [Step(emitted=[6, 7, 9], drafted=[6, 7], accepted=2, info=dict(draft_stop="copy", copied=2)),
                  Step(emitted=[3], drafted=[4], accepted=0, info=dict(draft_stop="cost"))]
    made.tokens = [6, 7, 9, 3]
    fig = app_figure(made, summarize(made, made, 0.1, 0.1), max_draft_tokens=4)
    assert [trace.name for trace in fig.data[4:6]] == ["copied only", "other (end of text, cost)"]
    assert list(fig.data[4].y)[:2] == [0, 1] and list(fig.data[5].y)[:2] == [1, 0]


# ---------------------------------------------------------------- the app


def test_build_app_redraws_when_the_threshold_slider_moves():
    app = build_app(models(), {"first": PROMPT, "second": OTHER_PROMPT}, max_new_tokens=30, repeats=1, threshold=0.0,
                    copy_drafts=False)
    assert app.error is None
    assert "threshold" in app.threshold.description
    assert app.exit_layer.value == adapter().exit_layer and app.exit_layer.max == 3
    before_html, before_stats = app.tokens.value, app.stats_view.value
    before_lengths = [int(t["data-draft-length"]) for t in parse(before_html) if "data-draft-length" in t]
    assert 'data-threshold="0.00"' in before_stats

    app.threshold.value = 1.0  # the observer redraws at once
    assert app.error is None
    after_lengths = [int(t["data-draft-length"]) for t in parse(app.tokens.value) if "data-draft-length" in t]
    assert app.tokens.value != before_html and after_lengths != before_lengths
    assert set(after_lengths) <= {0, 1}
    assert 'data-threshold="1.00"' in app.stats_view.value and app.stats["threshold"] == 1.0
    assert app.stats["identical"] and app.result.tokens == app.baseline.tokens

    app.max_draft_tokens.value = 2
    assert app.stats["max_draft_tokens"] == 2
    app.prompt.value = "second"
    assert app.stats["prompt"] == "second" and app.result.prompt_tokens == OTHER_PROMPT[0].tolist()


def test_app_shows_copied_drafts_and_turns_copying_off():
    app = build_app(models(), {"first": PROMPT}, max_new_tokens=30, repeats=1)
    assert app.copy_drafts.value and app.stats["copy_drafts"] and app.error is None
    sources = {t.get("data-source") for t in parse(app.tokens.value) if "data-fate" in t}
    assert COPY in sources and app.stats["copied"] > 0
    assert 'data-source="copy"' in app.tokens.value.split('class="kl-round"')[0]  # the legend keys the copies
    app.copy_drafts.value = False  # the observer redraws at once
    assert app.error is None and not app.stats["copy_drafts"] and app.stats["copied"] == 0
    assert 'data-source="copy"' not in app.tokens.value
    assert app.stats["identical"] and app.result.tokens == app.baseline.tokens


def test_exit_layer_slider_trains_an_adapter_once_and_keeps_it():
    calls = []

    def trainer(layer: int) -> KangarooAdapter:
        calls.append(layer)
        return KangarooAdapter.from_target(target(), layer)

    bank = AdapterBank(target(), [adapter()], trainer=trainer)
    app = build_app(models(), {"p": PROMPT}, bank=bank, max_new_tokens=20, repeats=1)
    assert calls == [] and app.stats["exit_layer"] == 2
    app.exit_layer.value = 1
    app.exit_layer.value = 2
    app.exit_layer.value = 1
    assert calls == [1] and bank.layers == [1, 2]
    assert app.stats["exit_layer"] == 1 and app.stats["identical"] and app.error is None


def test_adapter_bank_errors():
    with pytest.raises(ValueError, match="no adapter for exit layer 1"):
        AdapterBank(target()).get(1)
    wrong = AdapterBank(target(), trainer=lambda layer: KangarooAdapter.from_target(target(), 3))
    with pytest.raises(ValueError, match="exit layer 3, not 1"):
        wrong.get(1)
    with pytest.raises(ValueError, match="not one of"):
        build_app(models(), {"p": PROMPT}, prompt="missing", repeats=1)


def test_app_shows_errors_instead_of_losing_them():
    bank = AdapterBank(target(), [adapter()])  # no trainer: other exit layers cannot be had
    app = build_app(models(), {"p": PROMPT}, bank=bank, max_new_tokens=10, repeats=1)
    app.exit_layer.value = 1
    assert app.error and "no adapter for exit layer 1" in app.error
    assert "no adapter for exit layer 1" in app.status.value
    app.exit_layer.value = 2
    assert app.error is None


def test_quick_trainer_trains_an_adapter_for_any_exit_layer():
    from kangaroo_lite.models.loading import DATA_DIR, load_tokenizer

    tokenizer = load_tokenizer(DATA_DIR / "tokenizer")
    model = tiny_model(layers=3, vocab=len(tokenizer), eos=tokenizer.eos_token_id)
    trained = quick_trainer(model, tokenizer, steps=2, examples=12, batch_size=4)(2)
    assert isinstance(trained, KangarooAdapter) and trained.exit_layer == 2
    trained.check_matches(model)
