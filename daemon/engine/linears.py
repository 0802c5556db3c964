"""Matrix products of the native forward: the model's own precision, or int8 W8A8.

`Int8Linear` stores each weight row as int8 with one float scale (per output channel) and
quantizes each activation row to int8 with its own scale just before the product; `_int_mm`
multiplies int8 by int8 into int32. Integer accumulation is exact, so a row's result does not
depend on which other rows share the product, and the weights stream at half bf16's bytes.
Where the CPU has AVX-512 VNNI or AVX2 the same arithmetic runs in our own kernels
(`cpu_kernels.py`), much faster than `_int_mm` for the 2-32 rows of a draft tree; elsewhere
exact float32 products of the integers do (`Int8Linear`); all give the same bits.
"""

from __future__ import annotations

import itertools
from typing import Protocol

import torch
from torch.nn import functional

from daemon.engine import cpu_kernels

__all__ = ["Bf16Linear", "DenseLinear", "GatedInt8", "Int8Linear", "Linear", "make_linear"]


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
    """W8A8: int8 weights per output channel, int8 activations per row, int32 accumulation.

    Three ways to the same integer products (`product`): our kernel (`"kernel"`, AVX-512
    VNNI or AVX2); torch's `_int_mm` (`"int_mm"`, the reference: oneDNN's int8 path, but
    without VNNI it falls back to code ~35x slower than a float32 product); or float32
    products of the integer values (`"float"`, the default without the kernel). A float32
    sum of int8 x int8 products is exact while every partial sum stays below 2**24, whatever
    the order of summation, so the input dimension is cut into blocks of at most
    `_EXACT_BLOCK` columns and the blocks' exact sums are added in float64: the same bits as
    `_int_mm`, at float32's speed, for a float32 copy of the weight (4 bytes a parameter, as
    the native float32 backend holds).
    """

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None, product: str | None = None
    ) -> None:
        full = weight.float()  # (out, in)
        scale = full.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        quantized = torch.round(full / scale[:, None]).clamp(-127, 127).to(torch.int8)
        if product is None:
            usable = cpu_kernels.kernel_available() and weight.shape[1] % 4 == 0
            product = "kernel" if usable else "float"
        if product not in _PRODUCTS:
            raise ValueError(f"unknown int8 product {product!r}")
        # only one copy of the weight is kept, in the layout its product streams fastest: the
        # kernel's tiles; (out, in) for _int_mm, handed to it transposed (1.6x a (in, out)
        # copy); float32 (in, out) blocks for the float path
        self.packed = cpu_kernels.pack(quantized, scale, bias) if product == "kernel" else None
        self.weight = quantized if product == "int_mm" else None
        self.blocks = _exact_blocks(quantized) if product == "float" else ()
        self.scale = scale  # (out,) float32
        self.bias = None if bias is None else bias.float()

    @property
    def uses_kernel(self) -> bool:
        return self.packed is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return cpu_kernels.w8a8_linear(x.float(), self.packed).to(x.dtype)
        rows = x.float()
        row_scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127.0  # (rows, 1)
        quantized = torch.round(rows / row_scale)  # integers in [-127, 127]
        if self.weight is not None:
            product = torch._int_mm(quantized.to(torch.int8), self.weight.t()).float()
        else:
            product = _exact_product(quantized, self.blocks)  # (rows, out)
        out = product.mul_(row_scale).mul_(self.scale)
        if self.bias is not None:
            out += self.bias
        return out.to(x.dtype)


class GatedInt8:
    """The MLP's silu(x . gate^T) * (x . up^T) over W8A8 weights in one kernel call
    (`cpu_kernels.w8a8_gated`, where `gated_available()`): the bits of the two `Int8Linear`
    products and `cpu_kernels.silu_mul`, without their float32 block in memory."""

    def __init__(self, gate: torch.Tensor, up: torch.Tensor) -> None:
        self.gate = Int8Linear(gate, None, product="kernel")
        self.up = Int8Linear(up, None, product="kernel")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        assert self.gate.packed is not None and self.up.packed is not None
        return cpu_kernels.w8a8_gated(x.float(), self.gate.packed, self.up.packed)


_PRODUCTS = ("kernel", "int_mm", "float")
# 127 * 127 * 1040 < 2**24: a float32 dot product of this many int8 pairs is exact
_EXACT_BLOCK = 1040


def _exact_blocks(quantized: torch.Tensor) -> tuple[tuple[int, int, torch.Tensor], ...]:
    """(start, end, float32 (end - start, out) weight block) over the input dimension, cut
    evenly into blocks short enough for exact float32 sums."""
    inputs = quantized.shape[1]
    count = -(-inputs // _EXACT_BLOCK)
    bounds = [round(inputs * i / count) for i in range(count + 1)]
    return tuple(
        (a, b, quantized[:, a:b].t().float().contiguous()) for a, b in itertools.pairwise(bounds)
    )


def _exact_product(
    quantized: torch.Tensor, blocks: tuple[tuple[int, int, torch.Tensor], ...]
) -> torch.Tensor:
    """(rows, in) integer-valued float32 @ the blocks -> (rows, out) float32: the int32 sums
    `_int_mm` gives, rounded to float32 as it is."""
    if len(blocks) == 1:  # one exact block: its float32 sums are the integers themselves
        return quantized @ blocks[0][2]
    total = torch.zeros(quantized.shape[0], blocks[0][2].shape[1], dtype=torch.float64)
    for a, b, block in blocks:
        total += quantized[:, a:b] @ block  # each block's sum exact, float64 adds them exactly
    return total.float()


def make_linear(kind: str, weight: torch.Tensor, bias: torch.Tensor | None) -> Linear:
    if kind == "same":
        if weight.dtype == torch.bfloat16 and cpu_kernels.bf16_available():
            return Bf16Linear(weight, bias)
        return DenseLinear(weight, bias)
    if kind == "int8":
        return Int8Linear(weight, bias)
    raise ValueError(f"unknown weight kind {kind!r}")
