"""What the threshold-slider app of notebook 03 draws: Kangaroo's rounds, token by token.

- `round_view(result)` turns a Kangaroo trace into rounds of token records, one per drafted or
  emitted token, with its fate — including the drafts the target *rejected*, which the result
  itself does not emit —, each draft's source (copied from the context, or drafted by the adapter)
  and a marker where the draft loop stopped;
- `render_round_html(rounds, tokenizer)` draws them as HTML whose spans carry machine-readable
  attributes (`data-fate`, `data-source`, `data-draft-length`, …) for tests and for a browser;
  copies have their own colours (accepted and rejected);
- `summarize(...)` and `stats_html(...)` give #MAT, acceptance, draft length, the accepted copies and the speedup over
  autoregressive decoding; `app_figure(...)` the acceptance-by-position chart.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from transformers import PreTrainedTokenizerBase

from ..core.result import ACCEPTED, BONUS, CORRECTION, TARGET, DecodingResult, Step
from ..decoding.copy_drafts import COPY as COPY_STOP
from ..decoding.kangaroo import BUDGET, MAX_DRAFT_TOKENS, THRESHOLD
from .tokens import COPY, COPY_COLOURS, COPY_LABELS, FATE_COLOURS, FATE_LABELS, draft_sources, token_colour, token_label

if TYPE_CHECKING:
    import plotly.graph_objects as go

REJECTED = "rejected"
FATES = (ACCEPTED, REJECTED, CORRECTION, BONUS, TARGET)
COLOURS = {**FATE_COLOURS, REJECTED: "#f1f3f5"}
LABELS = {**FATE_LABELS, REJECTED: "drafted and rejected"}
COPIED_COLOURS = {**COPY_COLOURS, REJECTED: "#f3f0ff"}  # a copied draft's colours, by fate
COPIED_LABELS = {**COPY_LABELS, REJECTED: "copied and rejected"}
_STRUCK = {None: ";text-decoration:line-through;color:#868e96", COPY: ";text-decoration:line-through;color:#9775fa"}
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
    confidence: float | None = None  # the draft's top-1 probability when it was proposed (a copy's: its estimate)
    source: str | None = None  # a draft's: COPY (copied from the context) or DRAFTER; None for the target's own


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
    fates, sources = step.fates(), draft_sources(step)

    def confidence(i: int) -> float | None:
        return confidences[i] if i < len(confidences) else None

    for i in range(accepted):
        view.items.append(TokenRecord(emitted[i], fates[i], index, i + 1, confidence(i), sources[i]))
    # The target's own token follows the accepted drafts; when it was cut (at EOS inside the accepted
    # drafts) the later drafts were never judged, so they are neither shown as rejected nor marked.
    own = len(emitted) > accepted
    if own:
        for i in range(accepted, len(drafted)):
            view.items.append(TokenRecord(drafted[i], REJECTED, index, i + 1, confidence(i), sources[i]))
        if stop in EXIT_MARKS:
            view.items.append(ExitMarker(stop, index, confidence(len(drafted) - 1)))
        view.items.append(TokenRecord(emitted[accepted], fates[accepted], index))
    return view


def round_view(result: DecodingResult) -> list[RoundView]:
    """Every round of a Kangaroo (or speculative) trace with each token's fate, rejected drafts included.

    Within a round the order is: accepted drafts, rejected drafts (the round's drafted tokens after
    `accepted`; a round's leading `info["copied"]` drafts are copies, source COPY), the exit marker
    (when the loop stopped by threshold or at max draft tokens), then the target's own token (a
    correction after a rejection, a bonus after a full accept, or a plain target token when nothing
    was drafted).
    """
    return [_round(i, step) for i, step in enumerate(result.steps)]


def token_records(result: DecodingResult) -> list[TokenRecord]:
    """All token records of `round_view(result)` in reading order (exit markers left out)."""
    return [token for view in round_view(result) for token in view.tokens]


# ---------------------------------------------------------------- HTML


def _decode(tokenizer: PreTrainedTokenizerBase | None, token: int) -> str:
    return tokenizer.decode([token]) if tokenizer is not None else f"[{token}]"


def record_colour(fate: str, source: str | None = None) -> str:
    """The background of a token record of `fate` from `source` in the round view (copies have their own)."""
    return token_colour(fate, source, COPIED_COLOURS, COLOURS)


def record_label(fate: str, source: str | None = None) -> str:
    """A token record of `fate` from `source`, in words."""
    return token_label(fate, source, COPIED_LABELS, LABELS)


def _token_html(record: TokenRecord, text: str) -> str:
    title = record_label(record.fate, record.source)
    if record.draft_position is not None:
        title = f"draft {record.draft_position}, {title}"
        if record.confidence is not None:
            estimate = "acceptance estimate" if record.source == COPY else "confidence"
            title += f", {estimate} {record.confidence:.2f}"
    colour = record_colour(record.fate, record.source)
    style = f"background:{colour};border-radius:3px;padding:1px 0;white-space:pre-wrap"
    if record.fate == REJECTED:
        style += _STRUCK[COPY if record.source == COPY else None]
    position = "" if record.draft_position is None else f' data-draft-position="{record.draft_position}"'
    confidence = "" if record.confidence is None else f' data-confidence="{record.confidence:.4f}"'
    source = "" if record.source is None else f' data-source="{record.source}"'
    return (
        f'<span class="kl-token" data-fate="{record.fate}"{source}{position}{confidence} '
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


def _legend_key(fate: str, source: str | None) -> str:
    style = f"background:{record_colour(fate, source)};padding:1px 6px;border-radius:3px"
    if fate == REJECTED:
        style += _STRUCK[source]
    marks = f'data-legend="{fate}"' + ("" if source is None else f' data-source="{source}"')
    return f'<span {marks} style="{style}">{record_label(fate, source)}</span>'


def legend_html(copies: bool = False) -> str:
    """The key to the token view's colours and markers (no `data-fate`, so it is never counted); with
    `copies`, the copied drafts' colours too (`data-source="copy"`), after the model's drafts'."""
    keys = []
    for fate in FATES:
        keys.append(_legend_key(fate, None))
        if copies and fate in COPIED_COLOURS:
            keys.append(_legend_key(fate, COPY))
    keys.append('<span style="color:#e8590c;font-weight:bold">|η</span> loop stopped by the threshold')
    keys.append('<span style="color:#868e96;font-weight:bold">|γ</span> at max draft tokens')
    return f'<div class="kl-legend" style="font-size:85%;margin-bottom:6px">{" ".join(keys)}</div>'


def render_round_html(
    rounds: Sequence[RoundView],
    tokenizer: PreTrainedTokenizerBase | None = None,
    prompt: str | None = None,
    legend: bool = True,
) -> str:
    """The token view: one `data-draft-length` span per round holding one `data-fate` span per token (copied
    drafts also `data-source="copy"`); the legend keys the copies' colours when any round copied."""
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
    copies = any(record.source == COPY for view in rounds for record in view.tokens)
    head = legend_html(copies) if legend else ""
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


def copied_accepted(steps: Sequence[Step]) -> int:
    """Accepted drafts that were copies (a step's leading `info["copied"]` drafts)."""
    return sum(min(step.accepted, step.info.get("copied", 0)) for step in steps)


def summarize(
    result: DecodingResult,
    baseline: DecodingResult,
    seconds: float | None = None,
    baseline_seconds: float | None = None,
) -> dict[str, Any]:
    """#MAT, acceptance rate, mean draft length, threshold exits, accepted copies and the speedup over `baseline`.

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
        accepted_drafts=sum(s.accepted for s in result.steps),
        copied=copied_accepted(result.steps),
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
        f"threshold exits {stats['threshold_exits']} of {stats['rounds']} rounds · "
        f"{stats.get('copied', 0)} of {stats.get('accepted_drafts', 0)} accepted drafts copied from the context · "
        f"{same}"
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
    named = (THRESHOLD, MAX_DRAFT_TOKENS, BUDGET, COPY_STOP)
    for reason, colour, label in (
        (THRESHOLD, "#e8590c", "stopped by threshold"),
        (MAX_DRAFT_TOKENS, "#868e96", "max draft tokens"),
        (BUDGET, "#ced4da", "token budget"),
        (COPY_STOP, COPIED_COLOURS[ACCEPTED], "copied only"),
        (None, "#495057", "other (end of text, cost)"),
    ):
        counts = [
            sum(len(s.drafted) == k and (s.info.get("draft_stop") == reason if reason else
                                         s.info.get("draft_stop") not in named) for s in result.steps)
            for k in positions
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
    fig.update_yaxes(title_text="share accepted", range=[0, 1.15], row=1, col=1)
    fig.update_yaxes(title_text="rounds", row=1, col=2)
    fig.update_yaxes(title_text="tokens per second", row=1, col=3)
    fig.update_xaxes(title_text="draft position", dtick=1, row=1, col=1)
    fig.update_xaxes(title_text="drafts in the round", dtick=1, row=1, col=2)
    fig.update_xaxes(title_text="decoding", row=1, col=3)
    fig.update_layout(
        title="Kangaroo at these settings: acceptance, draft lengths and speed",
        barmode="stack",
        height=340,
        margin=dict(l=50, r=20, t=70, b=40),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig
