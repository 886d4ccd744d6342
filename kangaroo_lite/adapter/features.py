"""The target's features for adapter training, computed once and written in shards.

Kangaroo trains its adapter on the frozen target's layer-ℓ hidden states against the target's
next-token distribution. Both depend on the target alone, so they are computed once, here, and
every training step then reads them instead of running the 30-layer target again.

A feature folder holds `manifest.json` and shards `features-NNNNN.safetensors`. A shard stores,
for a run of examples: their token ids (`ids`, concatenated) and `lengths`, a mask of the
positions whose next token is a reply token (`predicts_reply`), the exited hidden states after
each requested layer (`exited.L`, float16; L = the number of layers: the final, normed state that Medusa
heads read) and, at the masked positions only, the target's
top-k next-token ids and logits (`topk_ids`, `topk_logits`). The manifest names the target
(shape summary and weight fingerprint), the exit layers, k, each shard's examples and a digest of
their ids (so a run resumes safely), and the disk cost per token. Every shard also carries, in its own
header, the target's fingerprint and the exit layers, so a shard copied in from another feature
folder is refused, not trained on.

Training reads them through `FeatureDataset`: an index of offsets in memory, and each example's
tensors sliced from its memory-mapped shard when a batch asks for it. Under several processes
each reads only the examples of its own share of every batch; nothing is loaded whole.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from ..core.checks import check_positive
from .model import check_target, fingerprints_match, target_fingerprint, target_summary_of

MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 2: each shard's header names its target and exit layers


@dataclass
class FeatureExample:
    """One example's features: token ids (n,), reply mask (n,), exited states (n, h), target top-k (m, k)."""

    ids: torch.Tensor
    predicts_reply: torch.Tensor
    exited: torch.Tensor
    topk_ids: torch.Tensor
    topk_logits: torch.Tensor


def check_feature_layer(target: PreTrainedModel, layer: int) -> None:
    """Raise `ValueError` unless features can be taken after `layer`: 1 … L (L: the final, normed hidden state)."""
    layers = target.config.num_hidden_layers
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= layers:
        raise ValueError(f"feature layers must be integers in [1, {layers}] for a target with {layers} layers "
                         f"({layers}: the final, normed hidden state), got {layer!r}")


def _shard_name(index: int) -> str:
    return f"features-{index:05d}.safetensors"


@torch.no_grad()
def target_features(
    target: PreTrainedModel, batch: list[tuple[torch.Tensor, torch.Tensor]], exit_layers: Sequence[int], top_k: int
) -> dict[str, list[torch.Tensor]]:
    """Per example: exited states per layer, and top-k ids/logits at its reply positions (right padding, causal)."""
    length = max(len(ids) for ids, _ in batch)
    ids = torch.zeros((len(batch), length), dtype=torch.long)
    for row, (tokens, _) in enumerate(batch):
        ids[row, : len(tokens)] = tokens
    out = target.model(input_ids=ids.to(target.device), output_hidden_states=True)
    parts: dict[str, list[torch.Tensor]] = {"topk_ids": [], "topk_logits": []}
    for layer in exit_layers:
        parts[f"exited.{layer}"] = [
            out.hidden_states[layer][row, : len(tokens)].half().cpu() for row, (tokens, _) in enumerate(batch)
        ]
    for row, (tokens, mask) in enumerate(batch):
        states = out.last_hidden_state[row, : len(tokens)][mask.to(target.device)]
        values, indices = target.lm_head(states).float().topk(top_k, dim=-1)
        parts["topk_ids"].append(indices.int().cpu())
        parts["topk_logits"].append(values.half().cpu())
    return parts


def _shard_metadata(header: dict) -> dict[str, str]:
    """What a shard's own header records: the format, the target's fingerprint, the exit layers."""
    return {"format_version": str(header["format_version"]), "target_fingerprint": json.dumps(
        header["target_fingerprint"]), "exit_layers": json.dumps(header["exit_layers"])}


def _ids_digest(chunk: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> str:
    """A short fingerprint of a chunk's token ids and masks: a resumed run checks it met the same examples."""
    digest = hashlib.sha256()
    for ids, mask in chunk:
        digest.update(ids.to(torch.int64).numpy().tobytes())
        digest.update(mask.to(torch.bool).numpy().tobytes())
    return digest.hexdigest()[:16]


def _kept_shards(out: Path, header: dict, examples: Sequence, examples_per_shard: int) -> list[dict]:
    """The finished shards of an earlier run over the same target, settings and first examples."""
    path = out / MANIFEST
    if not path.exists():
        return []
    earlier = json.loads(path.read_text())
    if {k: earlier.get(k) for k in header} != header or earlier.get("examples_per_shard") != examples_per_shard:
        raise ValueError(f"{out} holds features of another target or other settings; choose another folder")
    kept = []
    for index, shard in enumerate(earlier["shards"]):
        chunk = examples[index * examples_per_shard : (index + 1) * examples_per_shard]
        if shard["examples"] != examples_per_shard or shard["digest"] != _ids_digest(chunk):
            break  # a partial last shard, or other examples: computed again
        kept.append(shard)
    return kept


def _write_manifest(out: Path, header: dict, examples_per_shard: int, shards: list[dict]) -> None:
    size = sum((out / s["file"]).stat().st_size for s in shards)
    tokens = sum(s["tokens"] for s in shards)
    manifest = {**header, "examples_per_shard": examples_per_shard, "examples": sum(s["examples"] for s in shards),
                "tokens": tokens, "bytes": size, "bytes_per_token": size / max(tokens, 1), "shards": shards}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def precompute_features(
    target: PreTrainedModel,
    examples: Sequence[tuple[torch.Tensor, torch.Tensor]],
    out_dir: str | Path,
    exit_layers: Sequence[int],
    top_k: int = 32,
    examples_per_shard: int = 128,
    batch_size: int = 8,
    progress: bool = True,
) -> Path:
    """Run the target once over `examples` ((ids, predicts-reply mask) pairs) and write feature shards.

    Resumable: the manifest is rewritten after every shard, and a later call over the same target,
    settings and (leading) examples keeps the finished shards and computes the rest — so a grown
    example list only costs its new part. A folder of other features is refused. Returns the folder.
    """
    check_target(target)
    for layer in exit_layers:
        check_feature_layer(target, layer)
    check_positive("top_k", top_k)
    check_positive("examples_per_shard", examples_per_shard)
    check_positive("batch_size", batch_size)
    if not examples:
        raise ValueError("no examples to compute features for")
    out = Path(out_dir)
    header = {"format_version": FORMAT_VERSION, "exit_layers": list(exit_layers), "top_k": top_k,
              "target": target_summary_of(target), "target_fingerprint": target_fingerprint(target)}
    shards = _kept_shards(out, header, examples, examples_per_shard)
    out.mkdir(parents=True, exist_ok=True)
    done = len(shards) * examples_per_shard
    bar = tqdm(total=len(examples), initial=done, desc="features", unit="example", disable=not progress)
    for index, start in enumerate(range(done, len(examples), examples_per_shard), start=len(shards)):
        chunk = list(examples[start : start + examples_per_shard])
        parts: dict[str, list[torch.Tensor]] = {}
        for b in range(0, len(chunk), batch_size):
            for key, values in target_features(target, chunk[b : b + batch_size], exit_layers, top_k).items():
                parts.setdefault(key, []).extend(values)
            bar.update(min(batch_size, len(chunk) - b))
        tensors = {key: torch.cat(values) for key, values in parts.items()}
        tensors["ids"] = torch.cat([ids for ids, _ in chunk]).int()
        tensors["lengths"] = torch.tensor([len(ids) for ids, _ in chunk], dtype=torch.int32)
        tensors["predicts_reply"] = torch.cat([mask for _, mask in chunk]).bool()
        save_file(tensors, out / _shard_name(index), metadata=_shard_metadata(header))
        shards.append({"file": _shard_name(index), "examples": len(chunk), "tokens": int(tensors["lengths"].sum()),
                       "digest": _ids_digest(chunk)})
        _write_manifest(out, header, examples_per_shard, shards)
    bar.close()
    _write_manifest(out, header, examples_per_shard, shards)
    return out


class FeatureShards:
    """A feature folder, checked against a target and an exit layer, read shard by shard."""

    def __init__(self, directory: str | Path, target: PreTrainedModel, exit_layer: int):
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{self.directory} has no {MANIFEST}: not a feature folder")
        self.manifest = json.loads(path.read_text())
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{self.directory}: feature format {self.manifest.get('format_version')}, "
                             f"expected {FORMAT_VERSION}")
        summary = target_summary_of(target)
        if self.manifest["target"] != summary or not fingerprints_match(
            self.manifest["target_fingerprint"], target_fingerprint(target)
        ):
            raise ValueError(f"the features in {self.directory} were computed from another target")
        if exit_layer not in self.manifest["exit_layers"]:
            raise ValueError(f"the features in {self.directory} hold exit layers {self.manifest['exit_layers']}, "
                             f"not {exit_layer}")
        missing = [s["file"] for s in self.manifest["shards"] if not (self.directory / s["file"]).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.directory} lacks feature shards {missing}")
        for name in self.files:
            self._check_shard(name)
        self.exit_layer = exit_layer

    def _check_shard(self, name: str) -> None:
        """A shard's own header must name this folder's format, target and exit layers (it may be a stray copy)."""
        with safe_open(self.directory / name, framework="pt") as shard:
            meta = shard.metadata() or {}
        if meta.get("format_version") != str(FORMAT_VERSION):
            raise ValueError(f"{self.directory / name}: feature format {meta.get('format_version')}, "
                             f"expected {FORMAT_VERSION}; compute the features again")
        if not fingerprints_match(json.loads(meta["target_fingerprint"]), self.manifest["target_fingerprint"]):
            raise ValueError(f"{self.directory / name} was computed from another target than its folder's manifest")
        if json.loads(meta["exit_layers"]) != self.manifest["exit_layers"]:
            raise ValueError(f"{self.directory / name} holds exit layers {json.loads(meta['exit_layers'])}, its "
                             f"folder's manifest {self.manifest['exit_layers']}: a shard of another feature folder")

    @property
    def top_k(self) -> int:
        """How many of the target's top next tokens each reply position keeps."""
        return self.manifest["top_k"]

    def digest(self) -> str:
        """A short fingerprint of the folder's target, settings and every shard's examples: a run's data identity."""
        keys = ("format_version", "exit_layers", "top_k", "target", "examples_per_shard")
        record = {**{k: self.manifest[k] for k in keys}, "shards": [s["digest"] for s in self.manifest["shards"]]}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def files(self) -> list[str]:
        """The shard file names, in order."""
        return [s["file"] for s in self.manifest["shards"]]

    def examples(self, files: Sequence[str] | None = None) -> Iterator[FeatureExample]:
        """The examples of the given shards (all by default), one shard in memory at a time."""
        for name in files if files is not None else self.files:
            with safe_open(self.directory / name, framework="pt") as shard:
                lengths = shard.get_tensor("lengths").tolist()
                ids, reply = shard.get_tensor("ids").long(), shard.get_tensor("predicts_reply")
                exited = shard.get_tensor(f"exited.{self.exit_layer}")
                topk_ids, topk_logits = shard.get_tensor("topk_ids").long(), shard.get_tensor("topk_logits")
            start = position = 0
            for length in lengths:
                mask = reply[start : start + length]
                count = int(mask.sum())
                yield FeatureExample(
                    ids[start : start + length], mask, exited[start : start + length],
                    topk_ids[position : position + count], topk_logits[position : position + count],
                )
                start, position = start + length, position + count


@dataclass(frozen=True)
class _Span:
    """Where one example lies in its shard: its tokens and its rows of top-k targets."""

    file: str
    start: int
    length: int
    reply_start: int
    replies: int


class FeatureDataset(torch.utils.data.Dataset):
    """The examples of a feature folder that predict reply tokens, each read from its shard when asked for.

    Only an index of offsets is held; an example's tensors are sliced from its memory-mapped shard
    on access. `tokens(i)` reads just its ids and reply mask (what recomputing the features needs).
    """

    def __init__(self, shards: FeatureShards):
        self.shards = shards
        self.spans: list[_Span] = []
        for name in shards.files:
            with safe_open(shards.directory / name, framework="pt") as shard:
                lengths = shard.get_tensor("lengths").tolist()
                replies = shard.get_tensor("predicts_reply")
            start = reply_start = 0
            for length in lengths:
                count = int(replies[start : start + length].sum())
                if count:
                    self.spans.append(_Span(name, start, length, reply_start, count))
                start, reply_start = start + length, reply_start + count
        self._open: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self.spans)

    def _shard(self, name: str):
        if name not in self._open:  # kept open: later reads of the same shard reuse its memory map
            self._open[name] = safe_open(self.shards.directory / name, framework="pt")
        return self._open[name]

    def tokens(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Example `index`'s token ids (n,) and reply mask (n,)."""
        span, shard = self.spans[index], self._shard(self.spans[index].file)
        rows = slice(span.start, span.start + span.length)
        return shard.get_slice("ids")[rows].long(), shard.get_slice("predicts_reply")[rows]

    def __getitem__(self, index: int) -> FeatureExample:
        span, shard = self.spans[index], self._shard(self.spans[index].file)
        ids, mask = self.tokens(index)
        replies = slice(span.reply_start, span.reply_start + span.replies)
        return FeatureExample(ids, mask, shard.get_slice(f"exited.{self.shards.exit_layer}")[
            span.start : span.start + span.length], shard.get_slice("topk_ids")[replies].long(),
            shard.get_slice("topk_logits")[replies])
