"""The C kernels of the native decoder: the W8A8 product equals torch's integer path bit for
bit (VNNI or AMX tiles), attention equals torch's float64 code and the norm its float32 code to
rounding, and every row comes out the same whichever rows share the call."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.nn import functional

from daemon.engine import cpu_kernels
from daemon.engine.exact_attention import causal_layout, exact_attention, tree_layout
from daemon.engine.linears import Bf16Linear, GatedInt8, Int8Linear
from daemon.engine.native_forward import _rms_norm

pytestmark = pytest.mark.skipif(
    not cpu_kernels.kernel_available(),
    reason="no kernels for this CPU (neither AVX-512 VNNI nor AVX2) or no compiler",
)


@pytest.mark.parametrize(
    ("outputs", "inputs", "bias"), [(1152, 896, True), (896, 4864, False), (100, 12, True)]
)
def test_w8a8_kernel_equals_int_mm_bit_for_bit(outputs: int, inputs: int, bias: bool) -> None:
    torch.manual_seed(outputs)
    weight = torch.randn(outputs, inputs) * 0.05
    shift = torch.randn(outputs) if bias else None
    kernel, reference = (
        Int8Linear(weight, shift, product="kernel"),
        Int8Linear(weight, shift, product="int_mm"),
    )
    assert kernel.uses_kernel and not reference.uses_kernel
    # VNNI: groups of six rows and their remainders; AMX: of sixteen
    for rows in (1, 2, 5, 6, 7, 13, 16, 17, 33, 256):
        x = torch.randn(rows, inputs) * 3
        assert torch.equal(kernel(x), reference(x)), rows


def test_amx_tiles_run_where_the_cpu_has_them(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = cpu_kernels._cpu_flags()
    wanted = flags >= {"amx_tile", "amx_int8"} and cpu_kernels.kernel_isa() == "avx512-vnni"
    if os.environ.get("CODESWIFT_AMX", "1") == "0":
        wanted = False
    assert cpu_kernels.amx_enabled() == wanted


def test_w8a8_rows_do_not_depend_on_each_other() -> None:
    torch.manual_seed(1)
    linear = Int8Linear(torch.randn(300, 64), None, product="kernel")
    x = torch.randn(9, 64)
    together = linear(x)
    for i in range(9):
        assert torch.equal(together[i], linear(x[i : i + 1])[0])


@pytest.mark.skipif(not cpu_kernels.bf16_available(), reason="no avx512_bf16 on this CPU")
def test_bf16_kernel_rows_are_invariant_and_match_torch() -> None:
    torch.manual_seed(4)
    for outputs, inputs in ((1152, 896), (896, 4864), (70, 6)):
        weight, bias = torch.randn(outputs, inputs).bfloat16(), torch.randn(outputs).bfloat16()
        linear = Bf16Linear(weight, bias)
        x = torch.randn(17, inputs)
        together = linear(x)
        expected = functional.linear(x.bfloat16().float(), weight.float(), bias.float())
        torch.testing.assert_close(together, expected, rtol=1e-4, atol=1e-3 * inputs**0.5)
        for rows in (1, 2, 6, 7, 13):
            assert torch.equal(linear(x[:rows]), together[:rows]), (outputs, rows)


def _cache(kv_heads: int = 2, capacity: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    keys = torch.randn(kv_heads, capacity, 64)
    values = torch.randn(kv_heads, capacity, 65)
    values[..., 64] = 1.0  # the torch path's column of ones
    return keys, values


# the float32 kernel, and where this CPU runs it the AMX one (bf16 products, float32 sums)
KERNELS = [
    "float32",
    pytest.param(
        "tiles",
        marks=pytest.mark.skipif(
            not cpu_kernels.tile_attention_available(), reason="no AMX bf16 tiles here"
        ),
    ),
]


def _kernel_attention(query, keys, values, layout, kernel="float32") -> torch.Tensor:  # type: ignore[no-untyped-def]
    return cpu_kernels.attention(
        query,
        keys,
        values,
        layout.prefix,
        layout.extra,
        layout.extra_count,
        64**-0.5,
        tiles=kernel == "tiles",
    )


def test_tile_attention_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODESWIFT_TILE_ATTENTION", "0")
    assert not cpu_kernels.tile_attention_available()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("start", [0, 17, 64, 300])
def test_attention_matches_torch_for_prompt_and_tree_rows(start: int, kernel: str) -> None:
    torch.manual_seed(start)
    keys, values = _cache()
    query = torch.randn(6, 14, 64)
    visible = np.tril(np.ones((6, 6), dtype=bool))
    visible[4, 1:3] = False  # a branch
    for layout in (causal_layout(start, 6), tree_layout(start, visible)):
        # in float64: torch's float32 products on an Intel Xeon with AMX were once in ~40
        # processes 1e-4 off on their first call (the kernel was within 5e-7 of float64)
        expected = exact_attention(query.double(), keys.double(), values.double(), layout)
        expected = expected.float()
        # bf16 operands: 8 significant bits on scores of unit-variance vectors (|s| ~ 8)
        tolerance = 1e-5 if kernel == "float32" else 2e-2
        torch.testing.assert_close(
            _kernel_attention(query, keys, values, layout, kernel),
            expected,
            rtol=tolerance,
            atol=tolerance,
        )


@pytest.mark.parametrize("kernel", KERNELS)
def test_attention_tree_rows_equal_single_rows_bit_for_bit(kernel: str) -> None:
    """A tree row over (past + its ancestors, scattered) equals the same query alone over the
    same keys laid out contiguously, as after the path is kept."""
    torch.manual_seed(2)
    keys, values = _cache()
    start, query = 200, torch.randn(5, 14, 64)
    visible = np.array(
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 0, 1, 0, 0], [1, 0, 1, 1, 0], [1, 1, 0, 0, 1]],
        dtype=bool,
    )
    together = _kernel_attention(query, keys, values, tree_layout(start, visible), kernel)
    for row in range(5):
        path = np.flatnonzero(visible[row])
        compact_keys, compact_values = keys.clone(), values.clone()
        compact_keys[:, start : start + len(path)] = keys[:, start + path]
        compact_values[:, start : start + len(path)] = values[:, start + path]
        alone_layout = tree_layout(start + len(path) - 1, np.ones((1, 1), dtype=bool))
        alone = _kernel_attention(
            query[row : row + 1], compact_keys, compact_values, alone_layout, kernel
        )
        assert torch.equal(together[row], alone[0]), row


@pytest.mark.parametrize("kernel", KERNELS)
def test_attention_prompt_rows_equal_rows_alone_bit_for_bit(kernel: str) -> None:
    """A chunk of prompt rows (tasks of 8 rows whose shared keys end at different places)
    gives each row what it gets alone at its position."""
    torch.manual_seed(3)
    keys, values = _cache()
    query = torch.randn(40, 14, 64)
    together = _kernel_attention(query, keys, values, causal_layout(101, 40), kernel)
    for row in range(40):
        alone_layout = causal_layout(101 + row, 1)
        alone = _kernel_attention(query[row : row + 1], keys, values, alone_layout, kernel)
        assert torch.equal(together[row], alone[0]), row


def test_rms_norm_matches_torch_and_is_row_invariant() -> None:
    torch.manual_seed(3)
    x, weight = torch.randn(7, 896) * 4, torch.randn(896)
    together = cpu_kernels.rms_norm(x, weight, 1e-6)
    torch.testing.assert_close(together, _rms_norm(x, weight, 1e-6), rtol=1e-6, atol=1e-6)
    for i in range(7):
        assert torch.equal(together[i], cpu_kernels.rms_norm(x[i : i + 1], weight, 1e-6)[0])


def test_silu_mul_matches_torch_and_is_row_invariant() -> None:
    torch.manual_seed(4)
    gate_up = torch.randn(9, 2 * 4864) * 6
    gate_up[0, :6] = torch.tensor([0.0, -0.0, 30.0, -30.0, 1e-20, -1e-20])
    together = cpu_kernels.silu_mul(gate_up)
    gate, up = gate_up.double().chunk(2, dim=-1)
    exact = (functional.silu(gate) * up).float()
    torch.testing.assert_close(together, exact, rtol=1e-6, atol=1e-30)
    for i in range(9):
        assert torch.equal(together[i], cpu_kernels.silu_mul(gate_up[i : i + 1])[0])


@pytest.mark.skipif(not cpu_kernels.gated_available(), reason="the AVX-512 source only")
@pytest.mark.parametrize(("intermediate", "inputs"), [(4864, 896), (80, 64)])
def test_gated_product_equals_two_products_and_silu_mul_bit_for_bit(
    intermediate: int, inputs: int
) -> None:
    torch.manual_seed(intermediate)
    gate, up = torch.randn(intermediate, inputs) * 0.05, torch.randn(intermediate, inputs) * 0.05
    gated, both = GatedInt8(gate, up), Int8Linear(torch.cat([gate, up]), None, product="kernel")
    # VNNI: one row and groups of six; AMX: of sixteen, with a prompt chunk's 256
    for rows in (1, 2, 6, 7, 16, 17, 40, 256):
        x = torch.randn(rows, inputs) * 3
        expected = cpu_kernels.silu_mul(both(x).contiguous())
        assert torch.equal(gated(x), expected), rows
    narrower = Int8Linear(up[: intermediate // 2], None, product="kernel")
    assert gated.gate.packed is not None and narrower.packed is not None
    with pytest.raises(ValueError, match="one shape"):
        cpu_kernels.w8a8_gated(torch.randn(2, inputs), gated.gate.packed, narrower.packed)


def test_rope_gives_torchs_bits_from_and_into_strided_views() -> None:
    from daemon.engine.native_forward import _rotate

    torch.manual_seed(5)
    fused = torch.randn(6, 18, 64)  # as the qkv product: 14 query heads, 2 key, 2 value
    query, key = fused[:, :14], fused[:, 14:16]
    angles = torch.arange(40, 46).float()[:, None] * torch.rand(32)[None]
    cos, sin = angles.cos(), angles.sin()
    rotated = torch.empty(6, 14, 64)
    cpu_kernels.rope(query, cos, sin, rotated)
    assert torch.equal(rotated, _rotate(query, cos, sin))
    keys = torch.zeros(2, 20, 64)  # (kv heads, capacity, dim), rows 10..15 written
    cpu_kernels.rope(key, cos, sin, keys[:, 10:16].transpose(0, 1))
    assert torch.equal(keys[:, 10:16].transpose(0, 1), _rotate(key, cos, sin))
    assert not keys[:, :10].any() and not keys[:, 16:].any()
