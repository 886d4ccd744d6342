"""Token views coloured by fate and source: HTML for notebooks, rich text for the terminal.

A token's *fate* is what verification made of it (`core.result`: an accepted draft, the target's
correction, a bonus token, a plain target token); a draft's *source* is where it came from: copied
from the context (a `Step`'s leading `info["copied"]` drafts) or drafted by a model (the adapter
or a draft model). An accepted copy and an accepted model draft get different colours.
"""

from __future__ import annotations

import html

from transformers import PreTrainedTokenizerBase

from ..core.result import ACCEPTED, BONUS, CORRECTION, TARGET, DecodingResult, Step

COPY, DRAFTER = "copy", "drafter"  # a draft's source: copied from the context, or drafted by a model
FATE_COLOURS = {ACCEPTED: "#b7e4c7", CORRECTION: "#ffb3b3", BONUS: "#a0c4ff", TARGET: "#e9ecef"}
FATE_LABELS = {ACCEPTED: "drafted and accepted", CORRECTION: "target correction",
               BONUS: "bonus (all drafts accepted)", TARGET: "target token (no draft)"}
COPY_COLOURS = {ACCEPTED: "#d0bfff"}  # fates a copied draft can have in an emitted-token view
COPY_LABELS = {ACCEPTED: "copied from the context and accepted"}
_RICH_STYLES = {ACCEPTED: "black on green", CORRECTION: "black on red", BONUS: "black on blue",
                TARGET: "default"}
_RICH_COPY_STYLES = {ACCEPTED: "black on magenta"}


def draft_sources(step: Step) -> list[str]:
    """The source of each of a step's drafts: its leading `info["copied"]` drafts are copies."""
    copied = step.info.get("copied", 0)
    return [COPY if i < copied else DRAFTER for i in range(len(step.drafted))]


def emitted_sources(step: Step) -> list[str | None]:
    """The source of each emitted token: that of its draft for an accepted draft, None for the target's own."""
    sources = draft_sources(step)
    return [sources[i] if i < step.accepted else None for i in range(len(step.emitted))]


def token_colour(fate: str, source: str | None = None, copy_colours: dict[str, str] | None = None,
                 colours: dict[str, str] | None = None) -> str:
    """The background of a token of `fate` from `source` (a copy's own colour where it has one)."""
    copy_colours, colours = copy_colours or COPY_COLOURS, colours or FATE_COLOURS
    return copy_colours[fate] if source == COPY and fate in copy_colours else colours[fate]


def token_label(fate: str, source: str | None = None, copy_labels: dict[str, str] | None = None,
                labels: dict[str, str] | None = None) -> str:
    """What a token of `fate` from `source` is, in words."""
    copy_labels, labels = copy_labels or COPY_LABELS, labels or FATE_LABELS
    return copy_labels[fate] if source == COPY and fate in copy_labels else labels[fate]


def token_pieces(tokenizer: PreTrainedTokenizerBase, result: DecodingResult) -> list[tuple[str, str]]:
    """(text, fate) for every generated token, special tokens shown by name."""
    fates = result.fates()
    return [(tokenizer.decode([t]), fate) for t, fate in zip(result.tokens, fates, strict=True)]


def token_sources(result: DecodingResult) -> list[str | None]:
    """The source of every generated token (`emitted_sources` of each step), in order."""
    return [source for step in result.steps for source in emitted_sources(step)]


def has_copies(result: DecodingResult) -> bool:
    """Whether any step of `result` verified a copied draft."""
    return any(step.info.get("copied", 0) for step in result.steps)


def _legend_key(colour: str, label: str, fate: str, source: str | None) -> str:
    marks = f' data-legend="{fate}"' + ("" if source is None else f' data-source="{source}"')
    return f'<span{marks} style="background:{colour};padding:1px 6px;border-radius:3px">{label}</span>'


def _token_span(text: str, fate: str, source: str | None) -> str:
    marks = f'data-fate="{fate}"' + ("" if source is None else f' data-source="{source}"')
    return (f'<span class="kl-token" {marks} title="{token_label(fate, source)}" '
            f'style="background:{token_colour(fate, source)};border-radius:3px;padding:1px 0;white-space:pre-wrap">'
            f"{html.escape(text)}</span>")


def tokens_html(tokenizer: PreTrainedTokenizerBase, result: DecodingResult, legend: bool = True) -> str:
    """An HTML snippet with one coloured span per token; `data-fate` (and `data-source` on accepted drafts)
    marks each for tests. The legend lists the copies' colour only when an accepted copy is shown."""
    sources = token_sources(result)
    spans = "".join(_token_span(text, fate, source)
                    for (text, fate), source in zip(token_pieces(tokenizer, result), sources, strict=True))
    key = ""
    if legend:
        keys = [_legend_key(FATE_COLOURS[ACCEPTED], FATE_LABELS[ACCEPTED], ACCEPTED, None)]
        if COPY in sources:
            keys.append(_legend_key(COPY_COLOURS[ACCEPTED], COPY_LABELS[ACCEPTED], ACCEPTED, COPY))
        keys += [_legend_key(FATE_COLOURS[f], label, f, None) for f, label in FATE_LABELS.items() if f != ACCEPTED]
        key = f'<div style="font-size:85%;margin-bottom:4px">{" ".join(keys)}</div>'
    return f'<div class="kl-tokens" style="font-family:monospace;line-height:1.8">{key}{spans}</div>'


def tokens_rich(tokenizer: PreTrainedTokenizerBase, result: DecodingResult):
    """A `rich.text.Text` of the generation coloured by fate (copies in their own colour), for the terminal."""
    from rich.text import Text

    text = Text()
    for (piece, fate), source in zip(token_pieces(tokenizer, result), token_sources(result), strict=True):
        style = _RICH_COPY_STYLES[fate] if source == COPY and fate in _RICH_COPY_STYLES else _RICH_STYLES[fate]
        text.append(piece, style=style)
    return text


def rich_legend(copies: bool = True):
    """A one-line `rich.text.Text` legend of the fate colours (and the copies' own, unless `copies` is False)."""
    from rich.text import Text

    legend = Text()
    for fate, label in FATE_LABELS.items():
        legend.append(f" {label} ", style=_RICH_STYLES[fate])
        legend.append(" ")
        if fate == ACCEPTED and copies:
            legend.append(f" {COPY_LABELS[ACCEPTED]} ", style=_RICH_COPY_STYLES[ACCEPTED])
            legend.append(" ")
    return legend
