"""The threshold-slider app of notebook 03: ipywidgets controls wired to the drawings of `slider_view`.

Kangaroo copies drafts from the context by default (`kl.kangaroo(copy_drafts=True)`); the token view
shows copied drafts in their own colours, and a checkbox turns copying off to compare.

`build_app(models, prompts)` builds it; `AdapterBank` keeps one adapter per exit layer, training
the missing ones on first use with `quick_trainer`.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import plotly.io as pio
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..adapter.model import KangarooAdapter
from ..adapter.training import train_adapter
from ..bench.measure import interleaved
from ..core.result import DecodingResult
from ..decoding.autoregressive import autoregressive
from ..decoding.kangaroo import kangaroo
from ..models.corpus import training_corpus

if TYPE_CHECKING:
    pass

from .slider_view import app_figure, render_round_html, round_view, stats_html, summarize

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
    """Sliders for threshold, max draft tokens and exit layer, a prompt chooser, a copy-drafts checkbox, and the
    views they redraw."""

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
        copy_drafts: bool = True,
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
        # Without a trainer, only the bank's exit layers can be shown: a single one fixes the slider.
        self.exit_layer.disabled = bank.trainer is None and len(bank.layers) <= 1
        self.prompt = widgets.Dropdown(
            options=list(prompts), value=prompt or next(iter(prompts)), description="prompt", style=wide
        )
        self.copy_drafts = widgets.Checkbox(
            value=copy_drafts, description="copy drafts from the context", indent=False, style=wide
        )
        self.status = widgets.HTML(layout=widgets.Layout(min_height="1.5em"))
        self.stats_view = widgets.HTML()
        self.tokens = widgets.HTML()
        self.chart = widgets.Output()
        controls = widgets.HBox([self.threshold, self.max_draft_tokens])
        choices = widgets.HBox([self.exit_layer, self.prompt, self.copy_drafts])
        super().__init__([controls, choices, self.status, self.stats_view, self.tokens, self.chart])
        for control in (self.threshold, self.max_draft_tokens, self.exit_layer, self.prompt, self.copy_drafts):
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
            settings = dict(threshold=float(self.threshold.value), max_draft_tokens=int(self.max_draft_tokens.value),
                            copy_drafts=bool(self.copy_drafts.value))
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
            copy_drafts=settings["copy_drafts"],
            exit_layer=layer,
            prompt=name,
            **summarize(result, baseline.result, timed.median_time, baseline.median_time),
        )
        prompt_text = self.tokenizer.decode(ids[0]) if self.tokenizer is not None else None
        self.tokens.value = render_round_html(round_view(result), self.tokenizer, prompt=prompt_text)
        self.stats_view.value = stats_html(self.stats)
        self.figure = app_figure(result, self.stats, settings["max_draft_tokens"])
        # The chart's outputs are set, not captured (`with self.chart:` + `clear_output`): capturing
        # makes headless runners (papermill's nbclient) emulate output widgets, and papermill runs of this
        # cell hung now and then.
        bundle = pio.renderers["plotly_mimetype"].to_mimebundle(self.figure.to_dict())
        self.chart.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)
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
    copy_drafts: bool = True,
) -> KangarooApp:
    """The interactive app over `models` (anything with `tokenizer`, `target` and `adapter`, e.g. `load_default()`).

    `prompts` maps a label (e.g. a subtask) to token ids. The first render uses `exit_layer`, by
    default the given adapter's; other exit layers get an adapter trained with `quick_trainer`
    (`train_steps` steps) the first time the slider reaches them, unless `bank` supplies one.
    `copy_drafts`: whether Kangaroo starts with copy drafts on (a checkbox toggles it).
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
        copy_drafts=copy_drafts,
    )
