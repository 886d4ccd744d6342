"""Token views coloured by fate: HTML for notebooks, rich text for the terminal."""

from __future__ import annotations

import html

from transformers import PreTrainedTokenizerBase

from ..core.result import ACCEPTED, BONUS, CORRECTION, TARGET, DecodingResult

FATE_COLOURS = {ACCEPTED: "#b7e4c7", CORRECTION: "#ffb3b3", BONUS: "#a0c4ff", TARGET: "#e9ecef"}
FATE_LABELS = {ACCEPTED: "drafted and accepted", CORRECTION: "target correction",
               BONUS: "bonus (all drafts accepted)", TARGET: "target token (no draft)"}
_RICH_STYLES = {ACCEPTED: "black on green", CORRECTION: "black on red", BONUS: "black on blue",
                TARGET: "default"}


def token_pieces(tokenizer: PreTrainedTokenizerBase, result: DecodingResult) -> list[tuple[str, str]]:
    """(text, fate) for every generated token, special tokens shown by name."""
    fates = result.fates()
    return [(tokenizer.decode([t]), fate) for t, fate in zip(result.tokens, fates, strict=True)]


def tokens_html(tokenizer: PreTrainedTokenizerBase, result: DecodingResult, legend: bool = True) -> str:
    """An HTML snippet with one coloured span per token; `data-fate` marks each for tests."""
    spans = "".join(
        f'<span class="kl-token" data-fate="{fate}" title="{FATE_LABELS[fate]}" '
        f'style="background:{FATE_COLOURS[fate]};border-radius:3px;padding:1px 0;white-space:pre-wrap">'
        f"{html.escape(text)}</span>"
        for text, fate in token_pieces(tokenizer, result)
    )
    key = ""
    if legend:
        key = " ".join(
            f'<span style="background:{FATE_COLOURS[f]};padding:1px 6px;border-radius:3px">{label}</span>'
            for f, label in FATE_LABELS.items()
        )
        key = f'<div style="font-size:85%;margin-bottom:4px">{key}</div>'
    return f'<div class="kl-tokens" style="font-family:monospace;line-height:1.8">{key}{spans}</div>'


def tokens_rich(tokenizer: PreTrainedTokenizerBase, result: DecodingResult):
    """A `rich.text.Text` of the generation coloured by fate, for the terminal."""
    from rich.text import Text

    text = Text()
    for piece, fate in token_pieces(tokenizer, result):
        text.append(piece, style=_RICH_STYLES[fate])
    return text


def rich_legend():
    """A one-line `rich.text.Text` legend of the fate colours."""
    from rich.text import Text

    legend = Text()
    for fate, label in FATE_LABELS.items():
        legend.append(f" {label} ", style=_RICH_STYLES[fate])
        legend.append(" ")
    return legend
