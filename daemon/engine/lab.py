"""What the lab (daemon/bench) needs from the inference libraries, kept apart from the product.

Hugging Face's own `generate` runs the peers (plain greedy, prompt lookup, assisted generation);
peak accelerator memory and library versions go into reports. torch and transformers are
imported only under daemon/engine/, so this lives here; nothing in the product imports it.
"""

from __future__ import annotations

import importlib.metadata as metadata
import time
from collections.abc import Sequence
from typing import Any

import torch

from daemon.engine import cpu_kernels
from daemon.engine.decode import DecodeResult
from daemon.engine.models import LoadedModel

__all__ = [
    "backend_facts",
    "device_peak_mb",
    "hf_generate",
    "reset_device_peak",
    "thread_count",
    "weight_stream_ms",
]


def hf_generate(
    lm: LoadedModel,
    prompt: Sequence[int],
    max_new_tokens: int,
    stop_strings: Sequence[str] = (),
    prompt_lookup: int | None = None,
    assistant: LoadedModel | None = None,
) -> DecodeResult:
    """transformers' greedy `generate` (with prompt lookup or an assistant model when given);
    its forwards are counted with a hook, so accepted lengths compare with ours."""
    forwards = 0

    def count(*_: object) -> None:
        nonlocal forwards
        forwards += 1

    extra: dict[str, Any] = {}
    if prompt_lookup is not None:
        extra["prompt_lookup_num_tokens"] = prompt_lookup
    if assistant is not None:
        extra["assistant_model"] = assistant.model
    if stop_strings:
        extra |= {"stop_strings": list(stop_strings), "tokenizer": lm.tokenizer}
    handle = lm.model.register_forward_pre_hook(count)
    try:
        ids = torch.tensor([list(prompt)], device=lm.device)
        started = time.perf_counter()
        with torch.inference_mode():
            output = lm.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=sorted(lm.eos_ids),
                pad_token_id=min(lm.eos_ids),
                **extra,
            )
        seconds = time.perf_counter() - started
    finally:
        handle.remove()
    tokens = output[0, len(prompt) :].tolist()
    reason = "eos" if tokens and tokens[-1] in lm.eos_ids else "max_new_tokens"
    return DecodeResult(tokens, reason, prefill_s=0.0, seconds=seconds, forwards=forwards)


def backend_facts(lm: LoadedModel) -> dict[str, Any]:
    """Where and how the model runs: device, precision, threads, library versions."""
    return {
        "device": str(lm.device),
        "dtype": lm.dtype_name,
        "model": lm.name,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": metadata.version("transformers"),
        # which C kernels the native backends run here (None: torch's operations)
        "cpu_kernels": cpu_kernels.kernel_isa(),
        "amx": cpu_kernels.amx_enabled(),
    }


def reset_device_peak(lm: LoadedModel) -> None:
    """Start the accelerator's peak-memory count afresh (nothing to do on CPU)."""
    if lm.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(lm.device)


def device_peak_mb(lm: LoadedModel) -> float | None:
    """Peak accelerator memory allocated since the last reset; None on CPU."""
    if lm.device.type != "cuda":
        return None
    return float(torch.cuda.max_memory_allocated(lm.device)) / 2**20


def thread_count() -> int:
    """The threads torch computes with (peers get as many)."""
    return torch.get_num_threads()


def weight_stream_ms(lm: LoadedModel, repeats: int = 9) -> float:
    """The floor of a one-token step: every weight matrix of the model multiplied once by one
    row, in its own precision (median of `repeats`); the rest of a step is overhead."""
    matrices = [
        module.weight
        for module in lm.model.modules()
        if isinstance(module, torch.nn.Linear) and module.weight.dim() == 2
    ]
    rows = {w.shape[1]: torch.randn(1, w.shape[1], dtype=w.dtype) for w in matrices}
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            started = time.perf_counter()
            for weight in matrices:
                torch.nn.functional.linear(rows[weight.shape[1]], weight)
            times.append(time.perf_counter() - started)
    return 1000 * sorted(times)[len(times) // 2]
