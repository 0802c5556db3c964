"""Which forward runs a loaded model: the backends behind the forward port, by name.

- `transformers`: the model's own transformers forward (the reference; the CUDA path);
- `native`: our decoder (`native_forward.py`) on the model's weights in its dtype;
- `native-w8a8`: the same decoder with int8 weights and activations (`linears.Int8Linear`).

`auto` picks what measured fastest (README, "CPU backends"): on a CPU `native-w8a8` for the
model families the native decoder knows, otherwise `transformers`. `native-w8a8` is also the
one whose speculative output is bit for bit its greedy output in the precision it runs in:
its matrix products are integer, hence row-invariant, and its attention is built to be
(`exact_attention.py`); the float backends are exact in float32 only.
"""

from __future__ import annotations

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
        return "native-w8a8" if native else "transformers"
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
