"""Matrix products of the native forward: the model's own precision, or int8 W8A8.

`Int8Linear` stores each weight row as int8 with one float scale (per output channel) and
quantizes each activation row to int8 with its own scale just before the product; `_int_mm`
multiplies int8 by int8 into int32. Integer accumulation is exact, so a row's result does not
depend on which other rows share the product, and the weights stream at half bf16's bytes.
Where the CPU has AVX-512 VNNI the same arithmetic runs in our own kernel (`cpu_kernels.py`),
which is much faster than `_int_mm` for the 2-32 rows of a draft tree; both give the same bits.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch.nn import functional

from daemon.engine import cpu_kernels

__all__ = ["Bf16Linear", "DenseLinear", "Int8Linear", "Linear", "make_linear"]


class Linear(Protocol):
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, in) -> (rows, out) in x's dtype."""


class DenseLinear:
    """`linear` over the weight as loaded (shares its memory)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.weight, self.bias = weight, bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return functional.linear(x, self.weight, self.bias)


class Bf16Linear:
    """bf16 weights through our kernel (`cpu_kernels.bf16_linear`): float32 results whose rows
    do not depend on how many rows share the product. Holds its own packed copy."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.packed = cpu_kernels.PackedBf16(weight, bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return cpu_kernels.bf16_linear(x, self.packed)


class Int8Linear:
    """W8A8: int8 weights per output channel, int8 activations per row, int32 accumulation."""

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None, kernel: bool | None = None
    ) -> None:
        full = weight.float()  # (out, in)
        scale = full.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        quantized = torch.round(full / scale[:, None]).clamp(-127, 127).to(torch.int8)
        if kernel is None:
            kernel = cpu_kernels.kernel_available() and weight.shape[1] % 4 == 0
        # only one copy of the int8 weight is kept: the kernel's tile layout, or (out, in) for
        # _int_mm, handed to it transposed, the layout it streams fastest (1.6x a (in, out) copy)
        self.packed = cpu_kernels.pack(quantized, scale, bias) if kernel else None
        self.weight = None if kernel else quantized
        self.scale = scale  # (out,) float32
        self.bias = None if bias is None else bias.float()

    @property
    def uses_kernel(self) -> bool:
        return self.packed is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return cpu_kernels.w8a8_linear(x.float(), self.packed).to(x.dtype)
        assert self.weight is not None
        rows = x.float()
        row_scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127.0  # (rows, 1)
        quantized = torch.round(rows / row_scale).to(torch.int8)
        product = torch._int_mm(quantized, self.weight.t())  # (rows, out) int32, exact
        out = product.float().mul_(row_scale).mul_(self.scale)
        if self.bias is not None:
            out += self.bias
        return out.to(x.dtype)


def make_linear(kind: str, weight: torch.Tensor, bias: torch.Tensor | None) -> Linear:
    if kind == "same":
        if weight.dtype == torch.bfloat16 and cpu_kernels.bf16_available():
            return Bf16Linear(weight, bias)
        return DenseLinear(weight, bias)
    if kind == "int8":
        return Int8Linear(weight, bias)
    raise ValueError(f"unknown weight kind {kind!r}")
