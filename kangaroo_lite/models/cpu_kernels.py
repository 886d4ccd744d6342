"""Linear layers that are fast for a few rows on a CPU: each layer shape's kernel chosen by measuring it.

Speculative decoding verifies a handful of tokens per target pass, and that is where the stock float32
kernel behind `nn.Linear` on a CPU is slowest: on SmolLM2-135M (one thread, an AMD EPYC core) a pass over
2 or 3 tokens costs 1.5–1.9× a pass over one, although both read the same weights once. oneDNN's linear
with its weights reordered once into its own blocked layout (as `torch.compile`'s CPU freezing does) is
faster at every row count measured, and a pair of rows through a plain matrix product is faster still for
one or two rows. Which wins depends on the machine and the layer's shape, so `tune_linears` measures each
of a model's layer shapes at a few row counts and replaces every `nn.Linear` by a `TunedLinear` that pads
its rows to the best measured count and calls the kernel that won there, where that saves enough:
on the tiny models the whole passes it is confirmed by were not faster, and they keep PyTorch's layers.

The numbers stay float32 matrix products: a kernel sums in its own order, so results can differ from the
stock kernel's in the last bits, as the stock kernel's own results do between one row and several.
Gradients, other dtypes and other devices take the stock path.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

ROW_COUNTS = (1, 2, 3, 4, 6, 8, 12, 16)  # row counts measured; others are padded to the next one
KERNELS = ("stock", "packed", "pair")  # F.linear; oneDNN with reordered weights; two rows as W @ X^T
PAIR_ROWS = 2
BARE = "bare"  # a plain nn.Linear (the stock kernel without the dispatch), timed to decide whether to tune at all
CHECK_ROWS = (1, 4)  # the new tokens of the whole-model passes that confirm a tuning (`_faster_in_model`)
MIN_GAIN = 0.1  # a shape is tuned where its plan saves at least this share of its time, summed over row counts
MODEL_GAIN = 0.05  # ... and where whole passes of the model with them are at least this much faster
REPEATS = 4  # timed rounds over every (kernel, rows) option of a shape, after an untimed one: the fastest counts
K = TypeVar("K")
Plan = dict[int, tuple[str, int]]  # rows -> (kernel, rows padded to); the largest key covers every count above it
_PLANS: dict[tuple, Plan | None] = {}  # per (layer shape, layers of that shape, threads); None: not worth it


def packed_kernels_available() -> bool:
    """Whether this PyTorch build has oneDNN's linear with reordered weights."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class TunedLinear(nn.Linear):
    """An `nn.Linear` (same parameters, same state dict) that picks its kernel by the number of input rows."""

    def __init__(self, linear: nn.Linear, plan: Plan):
        super().__init__(linear.in_features, linear.out_features, linear.bias is not None, device="meta")
        self.weight, self.bias = linear.weight, linear.bias
        self.plan = plan
        self._packed: tuple[int, torch.Tensor] | None = None  # (weight version, reordered weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if (weight.device.type != "cpu" or weight.dtype != torch.float32 or x.dtype != torch.float32
                or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))):
            return F.linear(x, weight, self.bias)
        rows = x.numel() // self.in_features
        kernel, padded = self.plan.get(rows) or self._beyond(rows)
        flat = x.reshape(rows, self.in_features)
        if padded > rows:
            flat = torch.cat([flat, flat.new_zeros(padded - rows, self.in_features)])
        out = self._run(kernel, flat)[:rows]
        return out.reshape(*x.shape[:-1], self.out_features)

    def _beyond(self, rows: int) -> tuple[str, int]:
        """Above the largest measured count, the kernel that won there, unpadded; below, the next measured count's."""
        largest = max(self.plan)
        if rows > largest:
            return self.plan[largest][0], rows
        return self.plan[min(count for count in self.plan if count >= rows)]

    def _run(self, kernel: str, rows: torch.Tensor) -> torch.Tensor:
        if kernel == "packed":
            return torch.ops.mkldnn._linear_pointwise(rows, self.packed_weight(), self.bias, "none", [], "")
        if kernel == "pair":
            out = (self.weight @ rows.T).T
            return out if self.bias is None else out + self.bias
        return F.linear(rows, self.weight, self.bias)

    def packed_weight(self) -> torch.Tensor:
        """The weight in oneDNN's layout, reordered again whenever the weight has changed in place."""
        version = -1 if self.weight.is_inference() else self.weight._version  # inference tensors keep no count
        if self._packed is None or self._packed[0] != version:
            self._packed = (version, torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), ROW_COUNTS[-1]))
        return self._packed[1]

    def __getstate__(self) -> dict:
        state = super().__getstate__()  # the reordered weight is opaque to copy and pickle: it is rebuilt on use
        return {**state, "_packed": None}


def linear_like(like: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A frozen `nn.Linear` over `weight` and `bias` (not copied), with `like`'s kernels where `like` is tuned."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    linear.weight = nn.Parameter(weight, requires_grad=False)
    linear.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
    return TunedLinear(linear, like.plan) if isinstance(like, TunedLinear) else linear


def _fastest_in_turn(runs: Mapping[K, Callable[[], object]]) -> dict[K, float]:
    """Seconds of each run: the fastest of `REPEATS` rounds, each timing every run in turn (so that a slow spell
    of the machine does not fall on one run only), after an untimed round that warms the caches up."""
    best = dict.fromkeys(runs, float("inf"))
    for round_ in range(REPEATS + 1):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            if round_:
                best[key] = min(best[key], time.perf_counter() - start)
    return best


def _sweep_times(layers: list[TunedLinear], options: list[tuple[str, int]]) -> dict[tuple[str, int], float]:
    """Seconds for one pass of random rows through every layer of one shape, per (kernel, rows) option
    (`_fastest_in_turn`). Every kernel is timed through `TunedLinear`'s dispatch, whose own cost is part of
    theirs; `BARE` is the stock kernel as a plain `nn.Linear` calls it."""
    inputs = {rows: torch.randn(rows, layers[0].in_features) for _, rows in options}

    def sweep(kernel: str, rows: int) -> None:
        for layer in layers:
            if kernel == BARE:
                F.linear(inputs[rows], layer.weight, layer.bias)
            else:
                layer.plan = {rows: (kernel, rows)}
                layer(inputs[rows])

    return _fastest_in_turn({option: functools.partial(sweep, *option) for option in options})


def plan_options(kernels: tuple[str, ...] = KERNELS, row_counts: tuple[int, ...] = ROW_COUNTS) -> list[tuple[str, int]]:
    """The (kernel, rows) options a plan chooses from: the pair kernel exists for at most two rows."""
    return [(kernel, rows) for kernel in kernels for rows in row_counts if kernel != "pair" or rows <= PAIR_ROWS]


def timed_options(row_counts: tuple[int, ...] = ROW_COUNTS) -> list[tuple[str, int]]:
    """What `tune_linears` times: every plan option, and a plain `nn.Linear` at each row count."""
    return plan_options(KERNELS, row_counts) + [(BARE, rows) for rows in row_counts]


def best_plan(seconds: Mapping[tuple[str, int], float]) -> Plan:
    """For each timed row count, the fastest (kernel, timed row count at or above it) by `seconds[kernel, rows]`;
    on a tie the fewer rows. Plain `nn.Linear` timings (`BARE`) are not options."""
    options = [option for option in seconds if option[0] != BARE]

    def fastest(rows: int) -> tuple[str, int]:
        return min((option for option in options if option[1] >= rows), key=lambda option: (seconds[option], option[1]))
    return {rows: fastest(rows) for rows in sorted({rows for _, rows in options})}


def worth_tuning(plan: Plan, seconds: Mapping[tuple[str, int], float], min_gain: float = MIN_GAIN) -> bool:
    """Whether `plan` beats a plain `nn.Linear` by at least `min_gain` of its time, summed over the row counts."""
    bare = sum(seconds[BARE, rows] for rows in plan)
    return sum(seconds[choice] for choice in plan.values()) <= (1 - min_gain) * bare


@torch.inference_mode()
def tune_linears(model: nn.Module) -> dict[tuple[int, int, bool], Plan]:
    """Replace each float32 CPU `nn.Linear` of `model` by a `TunedLinear` with its shape's measured plan.

    A shape whose plan is not `worth_tuning` keeps its `nn.Linear`s (the dispatch has a cost), and a Hugging Face
    model keeps all of them unless whole passes confirm the gain (`_faster_in_model`). Returns the plan per
    layer shape (out features, in features, has bias); empty where nothing was tuned (no oneDNN, another device
    or dtype, a model tuned already). A process measures each layer shape once per number of such layers.
    """
    if not packed_kernels_available():
        return {}
    groups: dict[tuple[int, int, bool], list[tuple[str, nn.Linear]]] = defaultdict(list)
    for name, module in model.named_modules():
        if type(module) is nn.Linear and module.weight.device.type == "cpu" and module.weight.dtype == torch.float32:
            groups[(module.out_features, module.in_features, module.bias is not None)].append((name, module))
    tuned = {shape: [TunedLinear(module, {}) for _, module in found] for shape, found in groups.items()}
    for shape, layers in tuned.items():
        key = (shape, len(layers), torch.get_num_threads())
        if key not in _PLANS:
            seconds = _sweep_times(layers, timed_options())
            plan = best_plan(seconds)
            _PLANS[key] = plan if worth_tuning(plan, seconds) else None
    plans = {shape: _PLANS[(shape, len(layers), torch.get_num_threads())] for shape, layers in tuned.items()}
    plans = {shape: plan for shape, plan in plans.items() if plan is not None}
    swaps = [(name, module, layer) for shape, plan in plans.items()
             for (name, module), layer in zip(groups[shape], tuned[shape], strict=True)]
    for _, _, layer in swaps:
        layer.plan = plans[(layer.out_features, layer.in_features, layer.bias is not None)]
    if isinstance(model, PreTrainedModel) and swaps:
        return plans if _faster_in_model(model, swaps) else {}
    for name, _, layer in swaps:
        model.set_submodule(name, layer)
    return plans


def _faster_in_model(model: PreTrainedModel, swaps: list[tuple[str, nn.Linear, TunedLinear]]) -> bool:
    """Install the tuned layers if whole passes of `model` over `CHECK_ROWS` new tokens (no cache) are `MODEL_GAIN`
    faster with them than with the plain ones (`_fastest_in_turn`); whether they were. Layers timed apart can miss
    what a whole model does to the caches, as a reordered copy of a small model's head can."""
    ids = {rows: torch.randint(0, model.config.vocab_size, (1, rows)) for rows in CHECK_ROWS}

    def use(tuned: bool) -> None:
        for name, module, layer in swaps:
            model.set_submodule(name, layer if tuned else module)

    def passes(tuned: bool) -> None:
        use(tuned)
        for rows in CHECK_ROWS:
            model(input_ids=ids[rows], use_cache=False)

    best = _fastest_in_turn({tuned: functools.partial(passes, tuned) for tuned in (True, False)})
    keep = best[True] <= (1 - MODEL_GAIN) * best[False]
    use(keep)
    return keep


def kernel_plans(model: nn.Module) -> dict[tuple[int, int, bool], Plan]:
    """The plans of `model`'s tuned linear layers, per layer shape (empty if none is tuned)."""
    return {(m.out_features, m.in_features, m.bias is not None): m.plan
            for m in model.modules() if isinstance(m, TunedLinear)}


def describe_plans(plans: dict[tuple[int, int, bool], Plan]) -> dict[str, dict[int, str]]:
    """The plans in words: per layer shape ("out×in"), per row count the kernel and the rows it pads to."""
    def word(kernel: str, rows: int, padded: int) -> str:
        return kernel if padded == rows else f"{kernel} (padded to {padded})"
    return {f"{out}×{inp}{' with bias' if bias else ''}": {rows: word(kernel, rows, padded)
                                                          for rows, (kernel, padded) in plan.items()}
            for (out, inp, bias), plan in plans.items()}
