"""The threshold-slider app of notebook 03: Kangaroo's rounds drawn token by token.

Everything the app shows is computed by plain functions that the tests call directly:

- `round_view(result)` turns a Kangaroo trace into rounds of token records, one per drafted or
  emitted token, with its fate — including the drafts the target *rejected*, which the result
  itself does not emit — and a marker where the draft loop stopped;
- `render_round_html(rounds, tokenizer)` draws them as HTML whose spans carry machine-readable
  attributes (`data-fate`, `data-draft-length`, …) for tests and for a browser;
- `summarize(...)` and `stats_html(...)` give #MAT, acceptance, draft length and the speedup over
  autoregressive decoding; `app_figure(...)` the acceptance-by-position chart;
- `build_app(models, prompts)` wires them to ipywidgets sliders.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .adapter import KangarooAdapter, train_adapter
from .corpus import training_corpus
from .decoding.autoregressive import autoregressive
from .decoding.kangaroo import BUDGET, MAX_DRAFT_TOKENS, THRESHOLD, kangaroo
from .measure import interleaved
from .result import ACCEPTED, BONUS, CORRECTION, TARGET, DecodingResult, Step
from .viz import FATE_COLOURS, FATE_LABELS

if TYPE_CHECKING:
    import plotly.graph_objects as go

REJECTED = "rejected"
FATES = (ACCEPTED, REJECTED, CORRECTION, BONUS, TARGET)
COLOURS = {**FATE_COLOURS, REJECTED: "#f1f3f5"}
LABELS = {**FATE_LABELS, REJECTED: "drafted and rejected"}
EXIT_MARKS = {THRESHOLD: "η", MAX_DRAFT_TOKENS: "γ"}
EXIT_LABELS = {
    THRESHOLD: "draft loop stopped: the last draft's confidence fell below the threshold η",
    MAX_DRAFT_TOKENS: "draft loop stopped: max draft tokens γ reached",
}


# ---------------------------------------------------------------- the trace, round by round


@dataclass(frozen=True)
class TokenRecord:
    """One token of the view: a draft (accepted or rejected) or a token the target emitted itself."""

    token: int
    fate: str  # one of FATES
    round: int  # index of the step in `result.steps`
    draft_position: int | None = None  # 1-based position among the round's drafts; None for the target's own
    confidence: float | None = None  # the draft's top-1 probability when it was proposed


@dataclass(frozen=True)
class ExitMarker:
    """Where a round's draft loop stopped: after its last draft, by threshold or by max draft tokens."""

    reason: str  # THRESHOLD or MAX_DRAFT_TOKENS
    round: int
    confidence: float | None = None  # the last draft's confidence


@dataclass
class RoundView:
    """One target forward pass: its drafts and emitted tokens in reading order, and an exit marker."""

    index: int
    draft_length: int
    accepted: int
    draft_stop: str | None
    items: list[TokenRecord | ExitMarker] = field(default_factory=list)

    @property
    def tokens(self) -> list[TokenRecord]:
        """The token records of the round, without the exit marker."""
        return [item for item in self.items if isinstance(item, TokenRecord)]


def _round(index: int, step: Step) -> RoundView:
    drafted, accepted, emitted = step.drafted, step.accepted, step.emitted
    confidences = step.info.get("confidences", [])
    stop = step.info.get("draft_stop") if drafted else None
    view = RoundView(index=index, draft_length=len(drafted), accepted=accepted, draft_stop=stop)
    fates = step.fates()

    def confidence(i: int) -> float | None:
        return confidences[i] if i < len(confidences) else None

    for i in range(accepted):
        view.items.append(TokenRecord(emitted[i], fates[i], index, i + 1, confidence(i)))
    # The target's own token follows the accepted drafts; when it was cut (at EOS inside the accepted
    # drafts) the later drafts were never judged, so they are neither shown as rejected nor marked.
    own = len(emitted) > accepted
    if own:
        for i in range(accepted, len(drafted)):
            view.items.append(TokenRecord(drafted[i], REJECTED, index, i + 1, confidence(i)))
        if stop in EXIT_MARKS:
            view.items.append(ExitMarker(stop, index, confidence(len(drafted) - 1)))
        view.items.append(TokenRecord(emitted[accepted], fates[accepted], index))
    return view


def round_view(result: DecodingResult) -> list[RoundView]:
    """Every round of a Kangaroo (or speculative) trace with each token's fate, rejected drafts included.

    Within a round the order is: accepted drafts, rejected drafts (the round's drafted tokens after
    `accepted`), the exit marker (when the loop stopped by threshold or at max draft tokens), then
    the target's own token (a correction after a rejection, a bonus after a full accept, or a plain
    target token when nothing was drafted).
    """
    return [_round(i, step) for i, step in enumerate(result.steps)]


def token_records(result: DecodingResult) -> list[TokenRecord]:
    """All token records of `round_view(result)` in reading order (exit markers left out)."""
    return [token for view in round_view(result) for token in view.tokens]


# ---------------------------------------------------------------- HTML


def _decode(tokenizer: PreTrainedTokenizerBase | None, token: int) -> str:
    return tokenizer.decode([token]) if tokenizer is not None else f"[{token}]"


def _token_html(record: TokenRecord, text: str) -> str:
    title = LABELS[record.fate]
    if record.draft_position is not None:
        title = f"draft {record.draft_position}, {title}"
        if record.confidence is not None:
            title += f", confidence {record.confidence:.2f}"
    style = f"background:{COLOURS[record.fate]};border-radius:3px;padding:1px 0;white-space:pre-wrap"
    if record.fate == REJECTED:
        style += ";text-decoration:line-through;color:#868e96"
    position = "" if record.draft_position is None else f' data-draft-position="{record.draft_position}"'
    confidence = "" if record.confidence is None else f' data-confidence="{record.confidence:.4f}"'
    return (
        f'<span class="kl-token" data-fate="{record.fate}"{position}{confidence} '
        f'title="{html.escape(title)}" style="{style}">{html.escape(text)}</span>'
    )


def _marker_html(marker: ExitMarker) -> str:
    title = EXIT_LABELS[marker.reason]
    if marker.confidence is not None:
        title += f" (confidence {marker.confidence:.2f})"
    colour = "#e8590c" if marker.reason == THRESHOLD else "#868e96"
    return (
        f'<span class="kl-exit" data-exit="{marker.reason}" title="{html.escape(title)}" '
        f'style="color:{colour};font-weight:bold;font-size:80%;padding:0 1px">|{EXIT_MARKS[marker.reason]}</span>'
    )


def legend_html() -> str:
    """The key to the token view's colours and markers (no `data-fate`, so it is never counted)."""
    keys = []
    for fate in FATES:
        style = f"background:{COLOURS[fate]};padding:1px 6px;border-radius:3px"
        if fate == REJECTED:
            style += ";text-decoration:line-through;color:#868e96"
        keys.append(f'<span data-legend="{fate}" style="{style}">{LABELS[fate]}</span>')
    keys.append('<span style="color:#e8590c;font-weight:bold">|η</span> loop stopped by the threshold')
    keys.append('<span style="color:#868e96;font-weight:bold">|γ</span> at max draft tokens')
    return f'<div class="kl-legend" style="font-size:85%;margin-bottom:6px">{" ".join(keys)}</div>'


def render_round_html(
    rounds: Sequence[RoundView],
    tokenizer: PreTrainedTokenizerBase | None = None,
    prompt: str | None = None,
    legend: bool = True,
) -> str:
    """The token view: one `data-draft-length` span per round holding one `data-fate` span per token."""
    parts = []
    for view in rounds:
        inner = "".join(
            _token_html(item, _decode(tokenizer, item.token)) if isinstance(item, TokenRecord) else _marker_html(item)
            for item in view.items
        )
        stop = f' data-draft-stop="{view.draft_stop}"' if view.draft_stop else ""
        parts.append(
            f'<span class="kl-round" data-round="{view.index}" data-draft-length="{view.draft_length}" '
            f'data-accepted="{view.accepted}"{stop} '
            f'style="border-bottom:2px solid #ced4da;margin-right:3px;padding-bottom:1px">{inner}</span>'
        )
    head = legend_html() if legend else ""
    if prompt is not None:
        head += (
            f'<div class="kl-prompt" style="color:#868e96;white-space:pre-wrap;margin-bottom:4px">'
            f"{html.escape(prompt)}</div>"
        )
    return f'<div class="kl-tokens" style="font-family:monospace;line-height:2">{head}{"".join(parts)}</div>'


# ---------------------------------------------------------------- numbers


def mean_draft_length(result: DecodingResult) -> float:
    """Mean number of drafts per round, over the rounds that drafted (the prefill does not)."""
    lengths = [len(s.drafted) for s in result.steps if s.drafted]
    return sum(lengths) / len(lengths) if lengths else 0.0


def summarize(
    result: DecodingResult,
    baseline: DecodingResult,
    seconds: float | None = None,
    baseline_seconds: float | None = None,
) -> dict[str, Any]:
    """#MAT, acceptance rate, mean draft length, threshold exits and the speedup over `baseline`.

    `seconds` and `baseline_seconds` default to the results' own wall times; the speedup is the
    ratio of tokens per second, the tokens being counted the same way for both.
    """
    seconds = result.wall_time if seconds is None else seconds
    baseline_seconds = baseline.wall_time if baseline_seconds is None else baseline_seconds
    rate = len(result.tokens) / seconds if seconds > 0 else 0.0
    base_rate = len(baseline.tokens) / baseline_seconds if baseline_seconds > 0 else 0.0
    stops = [s.info.get("draft_stop") for s in result.steps if s.drafted]
    return dict(
        tokens=len(result.tokens),
        rounds=len(result.steps),
        mean_accepted=result.mean_accepted,
        acceptance_rate=result.acceptance_rate(),
        mean_draft_length=mean_draft_length(result),
        threshold_exits=stops.count(THRESHOLD),
        kangaroo_ms=1000 * seconds,
        autoregressive_ms=1000 * baseline_seconds,
        speedup=rate / base_rate if base_rate > 0 else 0.0,
        identical=result.tokens == baseline.tokens,
    )


_STAT_FORMATS = {
    "threshold": ".2f",
    "mean_accepted": ".3f",
    "acceptance_rate": ".3f",
    "mean_draft_length": ".3f",
    "kangaroo_ms": ".1f",
    "autoregressive_ms": ".1f",
    "speedup": ".3f",
}


def stats_html(stats: dict[str, Any]) -> str:
    """A `kl-stats` element: the numbers as `data-*` attributes (for tests) and as a readable line."""
    attributes = []
    for key, value in stats.items():
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, float):
            text = format(value, _STAT_FORMATS.get(key, ".4g"))
        else:
            text = str(value)
        attributes.append(f'data-{key.replace("_", "-")}="{html.escape(text)}"')
    same = "identical to autoregressive ✓" if stats.get("identical") else "DIFFERS from autoregressive ✗"
    line = (
        f"<b>{stats['speedup']:.2f}×</b> vs autoregressive "
        f"({stats['kangaroo_ms']:.0f} ms vs {stats['autoregressive_ms']:.0f} ms) · "
        f"#MAT <b>{stats['mean_accepted']:.2f}</b> tokens per target pass · "
        f"acceptance α <b>{stats['acceptance_rate']:.2f}</b> · "
        f"mean draft length <b>{stats['mean_draft_length']:.2f}</b> · "
        f"threshold exits {stats['threshold_exits']} of {stats['rounds'] - 1} rounds · {same}"
    )
    return f'<div class="kl-stats" {" ".join(attributes)} style="margin:4px 0">{line}</div>'


def app_figure(result: DecodingResult, stats: dict[str, Any], max_draft_tokens: int | None = None) -> go.Figure:
    """Three panels: acceptance by draft position, rounds by draft length and stop reason, tokens/s."""
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=3,
        column_widths=[0.4, 0.4, 0.2],
        subplot_titles=("acceptance by draft position", "rounds by draft length", "tokens / s"),
    )
    longest = max([max_draft_tokens or 0] + [len(s.drafted) for s in result.steps])
    positions = list(range(1, longest + 1))
    drafted = [sum(len(s.drafted) >= i for s in result.steps) for i in positions]
    accepted = [sum(s.accepted >= i for s in result.steps if len(s.drafted) >= i) for i in positions]
    rates = [a / d if d else 0.0 for a, d in zip(accepted, drafted, strict=True)]
    fig.add_bar(
        x=positions,
        y=rates,
        text=[f"{a}/{d}" for a, d in zip(accepted, drafted, strict=True)],
        textposition="outside",
        marker_color=COLOURS[ACCEPTED],
        marker_line_color="#2b8a3e",
        marker_line_width=1,
        name="accepted / drafted",
        showlegend=False,
        row=1,
        col=1,
    )
    for reason, colour, label in (
        (THRESHOLD, "#e8590c", "stopped by threshold"),
        (MAX_DRAFT_TOKENS, "#868e96", "max draft tokens"),
        (BUDGET, "#ced4da", "token budget"),
    ):
        counts = [
            sum(len(s.drafted) == k and s.info.get("draft_stop") == reason for s in result.steps) for k in positions
        ]
        fig.add_bar(x=positions, y=counts, name=label, marker_color=colour, row=1, col=2)
    most = max((sum(len(s.drafted) == k for s in result.steps) for k in positions), default=0)
    fig.update_yaxes(dtick=1 if most <= 8 else None, row=1, col=2)
    fig.add_bar(
        x=["autoregressive", "kangaroo"],
        y=[
            1000 * stats["tokens"] / stats["autoregressive_ms"] if stats["autoregressive_ms"] else 0.0,
            1000 * stats["tokens"] / stats["kangaroo_ms"] if stats["kangaroo_ms"] else 0.0,
        ],
        marker_color=["#adb5bd", COLOURS[BONUS]],
        text=["1.00×", f"{stats['speedup']:.2f}×"],
        textposition="outside",
        showlegend=False,
        row=1,
        col=3,
    )
    fig.update_yaxes(range=[0, 1.15], row=1, col=1)
    fig.update_xaxes(title_text="draft position", dtick=1, row=1, col=1)
    fig.update_xaxes(title_text="drafts in the round", dtick=1, row=1, col=2)
    fig.update_layout(
        barmode="stack",
        height=300,
        margin=dict(l=40, r=20, t=40, b=40),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


# ---------------------------------------------------------------- adapters per exit layer


class AdapterBank:
    """Kangaroo adapters by exit layer: the given ones, and others trained on first use and kept."""

    def __init__(
        self,
        target: PreTrainedModel,
        adapters: Iterable[KangarooAdapter] = (),
        trainer: Callable[[int], KangarooAdapter] | None = None,
    ):
        self.target = target
        self.trainer = trainer
        self.adapters: dict[int, KangarooAdapter] = {}
        for adapter in adapters:
            adapter.check_matches(target)
            self.adapters[adapter.exit_layer] = adapter

    def __contains__(self, exit_layer: int) -> bool:
        return exit_layer in self.adapters

    @property
    def layers(self) -> list[int]:
        """The exit layers that have an adapter now."""
        return sorted(self.adapters)

    def get(self, exit_layer: int) -> KangarooAdapter:
        """The adapter for `exit_layer`, trained by the bank's trainer the first time it is asked for."""
        if exit_layer not in self.adapters:
            if self.trainer is None:
                raise ValueError(f"no adapter for exit layer {exit_layer} and no trainer to make one")
            adapter = self.trainer(exit_layer)
            adapter.check_matches(self.target)
            if adapter.exit_layer != exit_layer:
                raise ValueError(f"the trainer made an adapter for exit layer {adapter.exit_layer}, not {exit_layer}")
            self.adapters[exit_layer] = adapter
        return self.adapters[exit_layer]


def quick_trainer(
    target: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    steps: int = 60,
    examples: int = 600,
    batch_size: int = 8,
    seed: int = 0,
) -> Callable[[int], KangarooAdapter]:
    """A trainer for `AdapterBank`: a short `train_adapter` schedule (seconds on a CPU) at any exit layer."""
    corpus = training_corpus(examples, seed=seed + 2000)

    def train(exit_layer: int) -> KangarooAdapter:
        adapter, _ = train_adapter(
            target,
            tokenizer,
            corpus,
            exit_layer,
            steps=steps,
            batch_size=batch_size,
            warmup=max(1, steps // 10),
            seed=seed,
            held_out=max(2, batch_size),
            eval_every=steps,
            progress=False,
        )
        return adapter

    return train


# ---------------------------------------------------------------- the app


class KangarooApp(widgets.VBox):
    """Sliders for threshold, max draft tokens and exit layer, a prompt chooser, and the views they redraw."""

    def __init__(
        self,
        target: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase | None,
        prompts: dict[str, torch.Tensor],
        bank: AdapterBank,
        exit_layer: int,
        max_new_tokens: int = 64,
        threshold: float = 0.6,
        max_draft_tokens: int = 6,
        prompt: str | None = None,
        repeats: int = 2,
        max_draft_limit: int = 12,
    ):
        if not prompts:
            raise ValueError("build_app needs at least one prompt")
        if prompt is not None and prompt not in prompts:
            raise ValueError(f"prompt {prompt!r} is not one of {list(prompts)}")
        self.target, self.tokenizer, self.prompts, self.bank = target, tokenizer, prompts, bank
        self.max_new_tokens, self.repeats = max_new_tokens, repeats
        self.result: DecodingResult | None = None
        self.baseline: DecodingResult | None = None
        self.stats: dict[str, Any] = {}
        self.figure = None
        self.error: str | None = None
        wide = {"description_width": "initial"}
        self.threshold = widgets.FloatSlider(
            value=threshold,
            min=0.0,
            max=1.0,
            step=0.05,
            description="threshold η",
            readout_format=".2f",
            continuous_update=False,
            style=wide,
        )
        self.max_draft_tokens = widgets.IntSlider(
            value=max_draft_tokens,
            min=1,
            max=max(max_draft_limit, max_draft_tokens),
            description="max draft tokens γ",
            continuous_update=False,
            style=wide,
        )
        self.exit_layer = widgets.IntSlider(
            value=exit_layer,
            min=1,
            max=target.config.num_hidden_layers - 1,
            description="exit layer ℓ",
            continuous_update=False,
            style=wide,
        )
        self.prompt = widgets.Dropdown(
            options=list(prompts), value=prompt or next(iter(prompts)), description="prompt", style=wide
        )
        self.status = widgets.HTML(layout=widgets.Layout(min_height="1.5em"))
        self.stats_view = widgets.HTML()
        self.tokens = widgets.HTML()
        self.chart = widgets.Output()
        controls = widgets.HBox([self.threshold, self.max_draft_tokens])
        choices = widgets.HBox([self.exit_layer, self.prompt])
        super().__init__([controls, choices, self.status, self.stats_view, self.tokens, self.chart])
        for control in (self.threshold, self.max_draft_tokens, self.exit_layer, self.prompt):
            control.observe(self._on_change, names="value")
        warm = next(iter(prompts.values()))  # so that the first timed runs are not the first runs at all
        autoregressive(target, warm, 4)
        kangaroo(target, bank.get(exit_layer), warm, 4)
        self.update()

    def _on_change(self, change: dict) -> None:
        self.update()

    def _say(self, message: str, colour: str = "#495057") -> None:
        self.status.value = f'<div class="kl-status" style="color:{colour}">{message}</div>'

    def update(self) -> None:
        """Decode with the current settings and redraw the token view, the numbers and the chart."""
        layer = self.exit_layer.value
        try:
            if layer not in self.bank:
                self._say(f"training an adapter for exit layer {layer} (a short schedule, once per session)…")
            adapter = self.bank.get(layer)
            self._say("decoding…")
            name = self.prompt.value
            ids = self.prompts[name]
            settings = dict(threshold=float(self.threshold.value), max_draft_tokens=int(self.max_draft_tokens.value))
            # Both methods timed now, interleaved, so that a busy CPU slows them alike.
            runs = {
                "autoregressive": lambda p: autoregressive(self.target, p, self.max_new_tokens),
                "kangaroo": lambda p: kangaroo(self.target, adapter, p, self.max_new_tokens, **settings),
            }
            timings = interleaved(runs, [ids], repeats=self.repeats, warmup=0)
            baseline, timed = timings["autoregressive"].prompts[0], timings["kangaroo"].prompts[0]
            result = timed.result
        except Exception as error:  # shown to the user: an observer's exception would vanish into the log
            self.error = f"{type(error).__name__}: {error}"
            self._say(html.escape(self.error), colour="#c92a2a")
            return
        self.error = None
        self.result, self.baseline = result, baseline.result
        self.stats = dict(
            threshold=settings["threshold"],
            max_draft_tokens=settings["max_draft_tokens"],
            exit_layer=layer,
            prompt=name,
            **summarize(result, baseline.result, timed.median_time, baseline.median_time),
        )
        prompt_text = self.tokenizer.decode(ids[0]) if self.tokenizer is not None else None
        self.tokens.value = render_round_html(round_view(result), self.tokenizer, prompt=prompt_text)
        self.stats_view.value = stats_html(self.stats)
        self.figure = app_figure(result, self.stats, settings["max_draft_tokens"])
        with self.chart:
            self.chart.clear_output(wait=True)
            self.figure.show(renderer="plotly_mimetype")
        self._say(
            f"timed {self.repeats}× each, interleaved with autoregressive decoding (median); "
            "on a CPU, timings vary by about ±10% from one move to the next"
        )


def build_app(
    models: Any,
    prompts: dict[str, torch.Tensor],
    exit_layer: int | None = None,
    bank: AdapterBank | None = None,
    max_new_tokens: int = 64,
    threshold: float = 0.6,
    max_draft_tokens: int = 6,
    prompt: str | None = None,
    repeats: int = 2,
    train_steps: int = 60,
) -> KangarooApp:
    """The interactive app over `models` (anything with `tokenizer`, `target` and `adapter`, e.g. `load_default()`).

    `prompts` maps a label (e.g. a subtask) to token ids. The first render uses `exit_layer`, by
    default the given adapter's; other exit layers get an adapter trained with `quick_trainer`
    (`train_steps` steps) the first time the slider reaches them, unless `bank` supplies one.
    """
    tokenizer, target = models.tokenizer, models.target
    adapter = getattr(models, "adapter", None)
    if bank is None:
        bank = AdapterBank(
            target, [adapter] if adapter is not None else [], quick_trainer(target, tokenizer, train_steps)
        )
    if exit_layer is None:
        if adapter is not None:
            exit_layer = adapter.exit_layer
        elif bank.layers:
            exit_layer = bank.layers[0]
        else:
            raise ValueError("no adapter given: pass exit_layer (an adapter is then trained for it)")
    return KangarooApp(
        target,
        tokenizer,
        prompts,
        bank,
        exit_layer,
        max_new_tokens=max_new_tokens,
        threshold=threshold,
        max_draft_tokens=max_draft_tokens,
        prompt=prompt,
        repeats=repeats,
    )
