"""What precomputed features save: adapter training that reads them against training that recomputes the target.

Both train the same adapter on the same batches in the same order (`train_adapter_on_features`
with and without `recompute`), so their loss curves must agree (up to the float16 the features
are stored in) and only their cost differs. Runs alternate, after a warm-up, and the median of the
repeats is reported, per optimiser step and per epoch. Each run's few held-out evaluations are
timed with it: they cost the same both ways, so the ratio errs low.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence

from transformers import PreTrainedModel

from ..adapter.distill import train_adapter_on_features
from ..adapter.features import FeatureDataset, FeatureShards
from ..core.checks import check_positive


def time_feature_training(target: PreTrainedModel, features: FeatureShards, draft_vocab: Sequence[int],
                          steps: int = 20, batch_size: int = 8, held_out: int = 8, repeats: int = 3) -> dict:
    """Seconds per step and per epoch of training from stored features and from a recomputed target, their ratio,
    and the largest difference between the two runs' logged losses."""
    check_positive("steps", steps)
    check_positive("repeats", repeats)
    settings = dict(batch_size=batch_size, held_out=held_out, warmup=1, progress=False)
    seconds: dict[str, list[float]] = {"features": [], "recompute": []}
    histories: dict[str, list[dict]] = {}
    for mode in seconds:  # warm-up: first calls allocate and fill caches
        train_adapter_on_features(target, features, draft_vocab, steps=1, eval_every=1, recompute=mode == "recompute",
                                  **settings)
    for repeat in range(repeats):
        for mode in list(seconds)[:: 1 if repeat % 2 == 0 else -1]:  # alternate which goes first
            start = time.perf_counter()
            _, history = train_adapter_on_features(target, features, draft_vocab, steps=steps,
                                                   eval_every=max(1, steps // 4), recompute=mode == "recompute",
                                                   **settings)
            seconds[mode].append(time.perf_counter() - start)
            histories[mode] = history
    epoch_steps = math.ceil((len(FeatureDataset(features)) - held_out) / batch_size)
    per_step = {mode: statistics.median(values) / steps for mode, values in seconds.items()}
    gap = max(abs(a[key] - b[key]) for a, b in zip(histories["features"], histories["recompute"], strict=True)
              for key in ("train_loss", "held_out_loss") if a[key] is not None)
    return {"steps": steps, "batch_size": batch_size, "repeats": repeats, "epoch_steps": epoch_steps,
            "seconds_per_step": per_step, "seconds_per_epoch": {m: s * epoch_steps for m, s in per_step.items()},
            "speedup": per_step["recompute"] / per_step["features"], "max_loss_difference": gap,
            "seconds": seconds}
