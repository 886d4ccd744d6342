"""Checkpoints of an adapter training run: Accelerate's state plus the run's configuration and progress.

A checkpoint folder holds what `Accelerator.save_state` writes (weights, optimiser, schedule,
every process's RNG states) and `run.json`: the run's configuration, its step, its history and
the train losses not yet logged. A run resumes only with the same configuration.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import torch
from accelerate import Accelerator

PROGRESS = "run.json"  # in a checkpoint folder, beside Accelerate's state: the run's configuration and progress


def digest(tensors: Iterable[torch.Tensor]) -> str:
    """A short SHA-256 of tensors' values: the identity of a run's data or initial weights."""
    sha = hashlib.sha256()
    for tensor in tensors:
        sha.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()[:16]


def read_checkpoint(folder: Path, run: dict) -> dict:
    """The progress saved in `folder`; `ValueError` naming every setting where `run` differs from the saved run."""
    path = folder / PROGRESS
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no checkpoint to resume from (no {PROGRESS})")
    progress = json.loads(path.read_text())
    saved = progress["config"]
    differs = [f"{key} (checkpoint {saved.get(key)!r}, this run {run.get(key)!r})"
               for key in sorted(saved.keys() | run.keys()) if saved.get(key) != run.get(key)]
    if differs:
        raise ValueError(f"cannot resume from {folder}: this run differs from the checkpoint's in "
                         + "; ".join(differs))
    return progress


def save_checkpoint(accelerator: Accelerator, folder: Path, progress: dict) -> None:
    """Accelerate's state (weights, optimiser, schedule, every process's RNGs) and `progress`, written beside
    the folder and swapped in whole, so that a run killed while saving keeps its previous checkpoint."""
    partial, old = folder.with_name(folder.name + ".partial"), folder.with_name(folder.name + ".old")
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))  # every process: each writes its own RNG states
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (partial / PROGRESS).write_text(json.dumps(progress, indent=1))
        if folder.exists():
            folder.rename(old)
        partial.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
