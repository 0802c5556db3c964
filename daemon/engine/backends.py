"""Which forward runs a loaded model: the backends behind the forward port, by name.

- `transformers`: the model's own transformers forward (the reference; the CUDA path);
- `native`: our decoder (`native_forward.py`) on the model's weights in its dtype;
- `native-w8a8`: the same decoder with int8 weights and activations (`linears.Int8Linear`).

`auto` picks (README, "CPU backends"): on a CPU with our C kernels (AVX-512 VNNI or AVX2 +
FMA, and a compiler) `native-w8a8` for the model families the native decoder knows; on other
CPUs `native`, in float32 there (`auto` dtype): without the row-invariant kernels int8
activations turn a last-bit difference between a tree row and a one-token row into a whole
quantization step, so near-ties flip more often than in float32; otherwise `transformers`.
With the kernels `native-w8a8` is the backend whose speculative output is bit for bit its
greedy output in the precision it runs in: its matrix products are integer, its attention and
norm row-invariant kernels (`exact_attention.py`, `cpu_kernels.py`); without them every
backend is exact in float32 only (tested token for token on real prompts).
"""

from __future__ import annotations

from daemon.engine import cpu_kernels
from daemon.engine.forward import ForwardPort
from daemon.engine.models import LoadedModel
from daemon.engine.native_forward import NativeForward, supports_native
from daemon.engine.torch_forward import TorchForward
from daemon.errors import UsageError

__all__ = ["BACKENDS", "open_forward", "resolve_backend"]

BACKENDS = ("auto", "transformers", "native", "native-w8a8")


def resolve_backend(requested: str, lm: LoadedModel) -> str:
    """The backend `requested` means for `lm` (UsageError when it cannot run it)."""
    if requested not in BACKENDS:
        raise UsageError(f"unknown backend {requested!r}; use {', '.join(BACKENDS)}")
    native = supports_native(lm)
    if requested == "auto":
        if not native:
            return "transformers"
        return "native-w8a8" if cpu_kernels.kernel_available() else "native"
    if requested.startswith("native") and not native:
        raise UsageError(
            f"the native backend runs Qwen2/Llama-style models on the CPU; {lm.name} on "
            f"{lm.device.type} needs --backend transformers"
        )
    return requested


def open_forward(lm: LoadedModel, backend: str = "auto") -> ForwardPort:
    chosen = resolve_backend(backend, lm)
    if chosen == "transformers":
        return TorchForward(lm)
    return NativeForward(lm, "int8" if chosen == "native-w8a8" else "same")
