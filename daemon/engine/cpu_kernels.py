"""The native decoder's CPU kernels, built once per machine, loaded with ctypes.

Two sources with the same functions: `cpu_kernels.c` for AVX-512 VNNI (Intel Ice Lake and
later, AMD Zen 4) and `cpu_kernels_avx2.c` for AVX2 + FMA (AMD Zen 2 and 3, older Intel).

- `w8a8_linear`: the W8A8 product of `linears.Int8Linear`, bit for bit (integer products),
  much faster than torch's `_int_mm` for the 2-32 rows of a draft tree;
- `bf16_linear` (AVX-512 source, CPUs with avx512_bf16): bf16 x bf16 into float32, every row
  summed in the same order whatever the number of rows (torch's bf16 `linear` was not
  row-invariant for every shape);
- on CPUs with AMX (Intel Sapphire Rapids and later) `w8a8_linear` runs rows of two and more
  through the tile unit: the same integer sums, so the same bits, with a 16-row draft tree about
  as cheap as one row; `CODESWIFT_AMX=0` keeps the VNNI tiles, to compare;
- `attention` and `rms_norm`: float32, each row computed alone in a fixed order, so a row's bits
  never depend on the rows computed with it (`native_forward.py` relies on that for lossless
  verification; torch's batched kernels kept it on one CPU here and not on another);
- `attention(..., tiles=True)` on CPUs with AMX bf16: the same attention with bf16 operands on
  the tile unit (float32 softmax and sums), row-invariant the same way, 2.2-2.6x the float32
  kernel, which ran at the FMA peak; `native-w8a8` uses it (`CODESWIFT_TILE_ATTENTION=0` not);
- `w8a8_gated` (AVX-512 source): the MLP's silu(x . gate) * (x . up) in one pass, bit for bit
  `silu_mul` of the two `w8a8_linear` products, without their (rows x 2 x intermediate) float32
  block leaving the caches;
- `silu_mul` and `rope`: the MLP's activation and the rotary embedding in one pass each, where
  torch ran 3 and 7 operations (and their allocations): a 1,500-token prefill spent a fifth of
  its time there, a one-token step some 2 ms in dispatching them. `rope` gives torch's bits.

The C sources ship with the package; the first native forward compiles the one this CPU can run
with the system C compiler (about a second) into the user cache, keyed by the source, the
compiler and the flags, and later runs load the library from there. Without such a CPU or a
compiler the native backends keep their torch code. `CODESWIFT_CPU_KERNELS=0` turns the kernels
off, to compare the two.

The library is linked against `libgomp.so.1`, the OpenMP runtime torch's CPU wheel already
loaded under that name, so the kernel's threads are torch's threads and the two never compete
for the cores.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from daemon.engine.registry import cache_root

__all__ = [
    "TILE",
    "PackedBf16",
    "PackedInt8",
    "amx_enabled",
    "attention",
    "bf16_available",
    "bf16_linear",
    "gated_available",
    "kernel_available",
    "kernel_isa",
    "pack",
    "rms_norm",
    "rope",
    "silu_mul",
    "tile_attention_available",
    "w8a8_gated",
    "w8a8_linear",
]

TILE = 64  # output channels per tile, as in the C sources


@dataclass(frozen=True)
class _Isa:
    """One kernel source and what it needs: the CPU's flags and the compiler's."""

    name: str
    source: Path
    cpu_flags: frozenset[str]
    compiler_flags: tuple[str, ...]


_COMMON_FLAGS = ("-O3", "-fopenmp", "-ffp-contract=off")
_ISAS = (
    _Isa(
        "avx512-vnni",
        Path(__file__).with_name("cpu_kernels.c"),
        frozenset({"avx512f", "avx512bw", "avx512_vnni"}),
        # -mavx512bf16: only `bf16_linear` uses it, called only where the CPU has it
        ("-mavx512f", "-mavx512bw", "-mavx512vnni", "-mavx512bf16", *_COMMON_FLAGS),
    ),
    _Isa(
        "avx2",
        Path(__file__).with_name("cpu_kernels_avx2.c"),
        frozenset({"avx2", "fma"}),
        ("-mavx2", "-mfma", *_COMMON_FLAGS),
    ),
)
_POINTER, _SIZE = ctypes.c_void_p, ctypes.c_int64
_amx_state = {"on": False}  # set where the library is loaded
_build_state = {"key": ""}  # the loaded library's build key (its source, compiler and flags)


class PackedInt8:
    """An int8 weight (out, in) in the kernel's tile layout, with what the kernel adds back."""

    def __init__(self, quantized: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        out_features, in_features = quantized.shape
        padded = -(-out_features // TILE) * TILE
        weight = torch.zeros((padded, in_features), dtype=torch.int8)
        weight[:out_features] = quantized
        self.out_features, self.in_features, self.padded = out_features, in_features, padded
        if kernel_isa() == "avx2":
            # blocks of 16 outputs, pairs of inputs: [block][in / 2][16][2], signed
            blocks = weight.view(padded // 16, 16, in_features // 2, 2)
            self.weight = blocks.permute(0, 2, 1, 3).contiguous()
        else:
            tiles = weight.view(padded // TILE, TILE // 16, 16, in_features // 4, 4)
            # stored as unsigned bytes (w + 128): vpdpbusd's unsigned operand, which lets the
            # signed activations be its broadcast memory operand
            unsigned = (tiles.permute(0, 3, 1, 2, 4).to(torch.int16) + 128).to(torch.uint8)
            self.weight = unsigned.contiguous()
        self.scale = _padded(scale.float(), padded)
        self.bias = None if bias is None else _padded(bias.float(), padded)


class PackedBf16:
    """A bf16 weight (out, in) in the kernel's tile layout: pairs of inputs per 32-bit lane."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        out_features, in_features = weight.shape
        if in_features % 2:
            raise ValueError("the bf16 kernel needs an even input width")
        padded = -(-out_features // TILE) * TILE
        full = torch.zeros((padded, in_features), dtype=torch.bfloat16)
        full[:out_features] = weight
        self.out_features, self.in_features, self.padded = out_features, in_features, padded
        tiles = full.view(padded // TILE, TILE // 16, 16, in_features // 2, 2)
        self.weight = tiles.permute(0, 3, 1, 2, 4).contiguous()
        self.bias = None if bias is None else _padded(bias.float(), padded)


def _padded(values: torch.Tensor, length: int) -> torch.Tensor:
    out = torch.zeros(length, dtype=torch.float32)
    out[: values.numel()] = values
    return out


def pack(quantized: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> PackedInt8:
    if quantized.shape[1] % 4:
        raise ValueError("the W8A8 kernel needs an input width divisible by 4")
    return PackedInt8(quantized, scale, bias)


def w8a8_linear(x: torch.Tensor, weight: PackedInt8) -> torch.Tensor:
    """(rows, in) float32 -> (rows, out) float32, bit for bit `Int8Linear`'s torch arithmetic."""
    library = _library()
    assert library is not None, "w8a8_linear called without the kernel"
    rows = x.contiguous()
    out = torch.empty((rows.shape[0], weight.padded), dtype=torch.float32)
    scratch = _activation_scratch(rows.shape[0], weight.in_features)  # alive through the call
    library.w8a8_linear(
        rows.data_ptr(),
        rows.shape[0],
        weight.in_features,
        weight.weight.data_ptr(),
        weight.scale.data_ptr(),
        None if weight.bias is None else weight.bias.data_ptr(),
        weight.padded,
        out.data_ptr(),
        *(tensor.data_ptr() for tensor in scratch),
    )
    return out if weight.padded == weight.out_features else out[:, : weight.out_features]


def w8a8_gated(x: torch.Tensor, gate: PackedInt8, up: PackedInt8) -> torch.Tensor:
    """(rows, in) float32 -> silu(x . gate^T) * (x . up^T), (rows, out) float32: bit for bit
    `silu_mul` of the two `w8a8_linear` products (where `gated_available()`)."""
    library = _library()
    assert library is not None and gated_available(), "w8a8_gated called without the kernel"
    same_shape = (gate.in_features, gate.padded) == (up.in_features, up.padded)
    if not same_shape or gate.bias is not None or up.bias is not None:
        raise ValueError("the gated product takes gate and up of one shape, without bias")
    rows = x.contiguous()
    out = torch.empty((rows.shape[0], gate.padded), dtype=torch.float32)
    scratch = _activation_scratch(rows.shape[0], gate.in_features)  # alive through the call
    library.w8a8_gated(
        rows.data_ptr(),
        rows.shape[0],
        gate.in_features,
        gate.weight.data_ptr(),
        gate.scale.data_ptr(),
        up.weight.data_ptr(),
        up.scale.data_ptr(),
        gate.padded,
        out.data_ptr(),
        *(tensor.data_ptr() for tensor in scratch),
    )
    return out if gate.padded == gate.out_features else out[:, : gate.out_features]


def _activation_scratch(rows: int, width: int) -> tuple[torch.Tensor, ...]:
    """Room for the activations' int8 values (VNNI) or int16 ones (AVX2), their row scales
    and offsets: the kernel writes them before it reads them."""
    return (
        torch.empty(rows * width * 2, dtype=torch.int8),
        torch.empty(rows, dtype=torch.float32),
        torch.empty(rows, dtype=torch.int32),
    )


def bf16_linear(x: torch.Tensor, weight: PackedBf16) -> torch.Tensor:
    """(rows, in) -> (rows, out) float32: the rows in bf16 times the bf16 weight (+ bias)."""
    library = _library()
    assert library is not None and bf16_available(), "bf16_linear called without the kernel"
    rows = x.to(torch.bfloat16).contiguous()
    out = torch.empty((rows.shape[0], weight.padded), dtype=torch.float32)
    library.bf16_linear(
        rows.data_ptr(),
        rows.shape[0],
        weight.in_features,
        weight.weight.data_ptr(),
        None if weight.bias is None else weight.bias.data_ptr(),
        weight.padded,
        out.data_ptr(),
    )
    return out if weight.padded == weight.out_features else out[:, : weight.out_features]


def attention(
    query: torch.Tensor,  # (Q, heads, 64) float32
    keys: torch.Tensor,  # (KV, capacity, 64) float32, one layer's
    values: torch.Tensor,  # (KV, capacity, stride >= 64)
    prefix: torch.Tensor,  # (Q,) int64: row i reads slots [0, prefix[i]) ...
    extra: torch.Tensor,  # (Q, E) int64: ... then extra[i, :extra_count[i]]
    extra_count: torch.Tensor,  # (Q,) int64
    scale: float,
    most_keys: int | None = None,  # max(prefix + extra_count), if the caller knows it
    tiles: bool = False,  # AMX tiles, bf16 products (where `tile_attention_available()`)
) -> torch.Tensor:
    """-> (Q, heads * 64); head h reads key/value head h // (heads // KV)."""
    library = _library()
    assert library is not None, "attention called without the kernels"
    rows, heads, dim = query.shape
    kv_heads, capacity, stride = values.shape
    if dim != 64 or keys.stride() != (capacity * dim, dim, 1) or values.stride()[1:] != (stride, 1):
        raise ValueError("the attention kernel takes contiguous 64-wide heads")
    most = int((prefix + extra_count).max()) if most_keys is None else most_keys
    out = torch.empty((rows, heads * dim), dtype=torch.float32)
    query = query.contiguous()
    kernel = library.attention_amx if tiles else library.attention
    kernel(
        query.data_ptr(),
        rows,
        heads,
        kv_heads,
        keys.data_ptr(),
        values.data_ptr(),
        capacity,
        stride,
        prefix.data_ptr(),
        extra.data_ptr(),
        extra_count.data_ptr(),
        extra.shape[1],
        ctypes.c_float(scale),
        out.data_ptr(),
        most,
    )
    return out


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """(rows, width) float32 -> x / sqrt(mean(x^2) + eps) * weight, each row alone."""
    library = _library()
    assert library is not None, "rms_norm called without the kernels"
    rows = x.contiguous()
    out = torch.empty_like(rows)
    library.rms_norm(
        rows.data_ptr(),
        rows.shape[0],
        rows.shape[1],
        weight.data_ptr(),
        ctypes.c_float(eps),
        out.data_ptr(),
    )
    return out


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """(rows, 2 * width) float32 [gate | up] -> (rows, width): silu(gate) * up, each row alone."""
    library = _library()
    assert library is not None, "silu_mul called without the kernels"
    rows = gate_up.contiguous()
    count, width = rows.shape[0], rows.shape[1] // 2
    out = torch.empty((count, width), dtype=torch.float32)
    library.silu_mul(rows.data_ptr(), count, width, out.data_ptr())
    return out


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor) -> None:
    """x (rows, heads, dim) float32 rotated (half-split layout) into `out` of the same shape;
    cos and sin (rows, dim / 2) contiguous. Neither needs contiguous rows or heads, only
    contiguous dims: a slice of the fused qkv product in, a slice of the KV buffer out."""
    library = _library()
    assert library is not None, "rope called without the kernels"
    rows, heads, dim = x.shape
    if x.stride(2) != 1 or out.stride(2) != 1 or tuple(out.shape) != (rows, heads, dim):
        raise ValueError("rope takes (rows, heads, dim) views with contiguous dims")
    if cos.shape != (rows, dim // 2) or not (cos.is_contiguous() and sin.is_contiguous()):
        raise ValueError("rope takes contiguous (rows, dim / 2) cos and sin")
    library.rope(
        x.data_ptr(),
        rows,
        heads,
        dim,
        x.stride(0),
        x.stride(1),
        cos.data_ptr(),
        sin.data_ptr(),
        out.data_ptr(),
        out.stride(0),
        out.stride(1),
    )


def kernel_available() -> bool:
    return _library() is not None


def kernel_isa() -> str | None:
    """Which kernel source this CPU runs ("avx512-vnni", "avx2"), None without kernels."""
    isa = _isa()
    return isa.name if isa is not None and kernel_available() else None


def kernel_build() -> str:
    """A short name of the loaded build: costs measured with other kernels do not apply."""
    return _build_state["key"] if _library() is not None else ""


def amx_enabled() -> bool:
    """Whether `w8a8_linear` uses AMX tiles for its multi-row products."""
    return _library() is not None and _amx_state["on"]


def bf16_available() -> bool:
    return kernel_isa() == "avx512-vnni" and "avx512_bf16" in _cpu_flags()


def gated_available() -> bool:
    """Whether `w8a8_gated` runs here (the AVX-512 source)."""
    library = _library()
    return library is not None and hasattr(library, "w8a8_gated")


def tile_attention_available() -> bool:
    """Whether `attention(..., tiles=True)` runs here: AMX tiles with bf16 products, allowed
    for this process (`amx_enabled`); `CODESWIFT_TILE_ATTENTION=0` keeps the float32 kernel,
    to compare."""
    library = _library()
    return (
        library is not None
        and hasattr(library, "attention_amx")
        and amx_enabled()
        and "amx_bf16" in _cpu_flags()
        and os.environ.get("CODESWIFT_TILE_ATTENTION", "1") != "0"
    )


def _isa() -> _Isa | None:
    """The first source (the widest vectors) whose instructions this CPU has."""
    if os.environ.get("CODESWIFT_CPU_KERNELS", "1") == "0":
        return None
    return next((isa for isa in _ISAS if _cpu_flags() >= isa.cpu_flags), None)


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    isa = _isa()
    path = None if isa is None else _built_library(isa)
    if path is None:
        return None
    library = ctypes.CDLL(str(path))
    _build_state["key"] = path.stem.rsplit("-", 1)[-1][:8]
    library.w8a8_linear.restype = None
    library.w8a8_linear.argtypes = [_POINTER, _SIZE, _SIZE, _POINTER, _POINTER, _POINTER]
    library.w8a8_linear.argtypes += [_SIZE, _POINTER, _POINTER, _POINTER, _POINTER]
    library.attention.restype = None
    library.attention.argtypes = [_POINTER, _SIZE, _SIZE, _SIZE, _POINTER, _POINTER, _SIZE]
    library.attention.argtypes += [_SIZE, _POINTER, _POINTER, _POINTER, _SIZE, ctypes.c_float]
    library.attention.argtypes += [_POINTER, _SIZE]
    if hasattr(library, "attention_amx"):  # the AVX-512 source, built by a compiler with AMX
        library.attention_amx.restype = None
        library.attention_amx.argtypes = library.attention.argtypes
    if hasattr(library, "w8a8_gated"):  # the AVX-512 source only
        library.w8a8_gated.restype = None
        library.w8a8_gated.argtypes = [_POINTER, _SIZE, _SIZE, _POINTER, _POINTER, _POINTER]
        library.w8a8_gated.argtypes += [_POINTER, _SIZE, _POINTER, _POINTER, _POINTER, _POINTER]
    if hasattr(library, "bf16_linear"):  # the AVX-512 source only
        library.bf16_linear.restype = None
        library.bf16_linear.argtypes = [_POINTER, _SIZE, _SIZE, _POINTER, _POINTER, _SIZE, _POINTER]
    library.rms_norm.restype = None
    library.rms_norm.argtypes = [_POINTER, _SIZE, _SIZE, _POINTER, ctypes.c_float, _POINTER]
    library.silu_mul.restype = None
    library.silu_mul.argtypes = [_POINTER, _SIZE, _SIZE, _POINTER]
    library.rope.restype = None
    library.rope.argtypes = [_POINTER, _SIZE, _SIZE, _SIZE, _SIZE, _SIZE, _POINTER, _POINTER]
    library.rope.argtypes += [_POINTER, _SIZE, _SIZE]
    if hasattr(library, "amx_enable"):  # the AVX-512 source only
        library.amx_enable.restype = ctypes.c_int
        library.amx_enable.argtypes = [ctypes.c_int]
        wanted = _cpu_flags() >= {"amx_tile", "amx_int8"}
        wanted = wanted and os.environ.get("CODESWIFT_AMX", "1") != "0"
        _amx_state["on"] = bool(library.amx_enable(int(wanted)))
    return library


@lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in info.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def _built_library(isa: _Isa) -> Path | None:
    """The compiled library in the user cache, compiled now if missing (None: no compiler)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(
        isa.source.read_bytes() + version.encode() + " ".join(isa.compiler_flags).encode()
    ).hexdigest()[:16]
    target = cache_root() / "kernels" / f"cpu-kernels-{isa.name}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # build beside the target, then rename: a concurrent or killed build never leaves half a file
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as scratch:
        built = Path(scratch) / target.name
        command = [compiler, *isa.compiler_flags, "-fPIC", "-shared", str(isa.source)]
        command += ["-o", str(built)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            warnings.warn(
                f"the CPU kernels did not compile ({compiler}); the native backends run "
                f"torch's operations instead: {result.stderr[-400:]}",
                stacklevel=2,
            )
            return None
        os.replace(built, target)
    return target
