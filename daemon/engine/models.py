"""Loading language models: packaged names, local folders, hub ids; device and dtype policy.

A packaged model is converted once from its GGUF (slow: transformers dequantizes it) into a
safetensors folder in the user cache, so later loads take seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from daemon.engine.atomic import staged_folder
from daemon.engine.attention import use_folded_attention
from daemon.engine.registry import (
    MODELS,
    PackagedModel,
    converted_dir,
    is_hub_id,
    known_names,
)
from daemon.errors import UsageError

__all__ = [
    "LoadedModel",
    "convert_gguf",
    "load_model",
    "load_tokenizer",
    "resolve_device",
    "resolve_dtype",
]

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_MANIFEST = "codeswift-manifest.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class LoadedModel:
    """A causal LM ready for decoding, with what it is and where it runs."""

    model: Any  # a transformers PreTrainedModel in eval mode
    tokenizer: PreTrainedTokenizerBase
    name: str
    device: torch.device
    dtype: torch.dtype
    eos_ids: frozenset[int]
    load_seconds: float
    # which weights, beyond the name (`weights_fingerprint`): what is cached per model (cost
    # curves, replayed outputs) must not mix two checkpoints that share a name
    fingerprint: str = ""

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def key(self) -> str:
        """The name and the weights' fingerprint: what caches per model are keyed by."""
        return f"{self.name}@{self.fingerprint}" if self.fingerprint else self.name


def resolve_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA device is available")
    if requested not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {requested!r}; use auto, cpu or cuda")
    return torch.device(requested)


def _cpu_has_fast_bf16() -> bool:
    """bf16 matmuls beat fp32 only with native support (measured 2x here with avx512_bf16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested == "auto":
        if device.type == "cuda" or _cpu_has_fast_bf16():
            return torch.bfloat16
        return torch.float32
    if requested not in _DTYPES:
        raise UsageError(f"unknown dtype {requested!r}; use auto, {', '.join(_DTYPES)}")
    return _DTYPES[requested]


def convert_gguf(model: PackagedModel, gguf_path: Path) -> Path:
    """Dequantize `gguf_path` and save it as safetensors in the cache, atomically."""
    target = converted_dir(model)
    with staged_folder(target) as staging:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
        # A GGUF-loaded model refuses save_pretrained; a plain copy of its weights does not.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(loaded.state_dict())
        plain.generation_config = loaded.generation_config
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        manifest = {"name": model.name, "gguf_sha256": model.sha256, "schema": 1}
        (staging / _MANIFEST).write_text(json.dumps(manifest))
    return target


def is_converted(model: PackagedModel) -> bool:
    manifest = converted_dir(model) / _MANIFEST
    try:
        return json.loads(manifest.read_text()).get("gguf_sha256") == model.sha256
    except (OSError, ValueError):
        return False


def _source_for(spec: str) -> tuple[str, str]:
    """(name for reports, what from_pretrained loads) for a packaged name, folder or hub id."""
    if spec in MODELS:
        packaged = MODELS[spec]
        if not is_converted(packaged):
            raise UsageError(
                f"model {spec} is not set up yet; run `codeswift setup --model {spec}`"
            )
        return spec, str(converted_dir(packaged))
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise UsageError(f"{spec} is not a model folder (no config.json)")
        if not any(p.name.endswith(_WEIGHT_SUFFIXES) for p in path.iterdir()):
            raise UsageError(f"model folder {spec} has no weights (*.safetensors or *.bin)")
        return path.name, str(path)
    if is_hub_id(spec):
        return spec, spec
    raise UsageError(
        f"unknown model {spec!r}; known models: {known_names()} (or a local folder or hub id)"
    )


def load_tokenizer(spec: str) -> PreTrainedTokenizerBase:
    """Just the tokenizer of `spec` (indexing needs no weights)."""
    _, source = _source_for(spec)
    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise UsageError(f"could not load the tokenizer of {spec}: {exc}") from None


def load_model(spec: str, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load `spec` (packaged name, local folder or hub id) for greedy decoding."""
    name, source = _source_for(spec)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    started = time.perf_counter()
    hf_logging.disable_progress_bar()  # a load bar per run is noise; setup keeps its bars
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
    except OSError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"could not load model {spec}: {first_line}") from None
    model.to(torch_device).eval()
    use_folded_attention(model)  # tree steps attend per key/value head (attention.py)
    eos = set(_as_list(model.generation_config.eos_token_id))
    if tokenizer.eos_token_id is not None:
        eos.add(int(tokenizer.eos_token_id))
    for special in ("<|endoftext|>", "<|im_end|>", "<|file_sep|>"):
        token_id = tokenizer.convert_tokens_to_ids(special)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id >= 0:
            eos.add(token_id)
    logger.info("loaded %s on %s in %s", name, torch_device, torch_dtype)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        device=torch_device,
        dtype=torch_dtype,
        eos_ids=frozenset(eos),
        load_seconds=time.perf_counter() - started,
        fingerprint=weights_fingerprint(spec, source, model),
    )


def weights_fingerprint(spec: str, source: str, model: Any) -> str:
    """12 hex digits that change with the weights: a packaged model's GGUF hash; for a folder,
    its path and each weight file's size and modification time; for a hub id, the commit
    transformers resolved ("hub" when it reports none)."""
    if spec in MODELS:
        return MODELS[spec].sha256[:12]
    folder = Path(source)
    if folder.is_dir():
        parts = [str(folder.resolve())]
        for path in sorted(folder.iterdir()):
            if path.name.endswith(_WEIGHT_SUFFIXES) or path.name == "config.json":
                stat = path.stat()
                parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]
    commit = getattr(model.config, "_commit_hash", None)
    return str(commit)[:12] if commit else "hub"


def _as_list(value: int | list[int] | None) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)
