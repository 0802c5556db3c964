"""The forward port on a hand-written decoder: Qwen2/Llama-style layers over a preallocated cache.

Why not transformers' own forward on the CPU: a one-token step there paid ~1.6 ms per layer in
SDPA for a single query row, a `cat` of the whole KV cache per layer, and mask/position plumbing
per call; a step ran at 2.4x the time it takes to stream the weights once (DESIGN.md §8). Here a
step is the weight matrices (the `Linear`s of `linears.py`) plus a few small float32 operations:

- keys and values live in one float32 buffer per model, written in place, grown by doubling;
- attention is one function for prompt rows, one-token steps and draft trees, meant to give a
  row the same bits whichever rows it is computed with: the C kernel (`cpu_kernels.py`) where
  the CPU has AVX-512 VNNI or AVX2, which computes every row alone, else `exact_attention.py` (block
  sums in absolute order, invariant only as far as torch's batched kernels are). With
  row-invariant products (int8, or the bf16 kernel) a verified tree row is then exactly the
  one-token step's row. Beside int8 products, on CPUs with AMX bf16, the kernel's tile variant
  (bf16 operands, float32 sums: half a long prompt's time was attention at the float32 peak);
- prompts are prefilled in chunks, whose rows equal an unchunked prefill's for the same reason;
- the residual stream and the norms stay in float32 (norms in the C kernel where it runs).

The weights are the loaded transformers model's own tensors (fp32, or bf16 where there is no
bf16 kernel: shared memory), their packed bf16 copies (`linears.Bf16Linear`) or their int8
copies (`linears.Int8Linear`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from daemon.engine import cpu_kernels
from daemon.engine.exact_attention import (
    BLOCK,
    RowLayout,
    causal_layout,
    exact_attention,
    tree_layout,
)
from daemon.engine.linears import GatedInt8, Linear, make_linear
from daemon.engine.models import LoadedModel
from daemon.engine.torch_forward import greedy_among, greedy_rows

__all__ = ["KVBuffer", "NativeForward", "supports_native"]

_FIRST_CAPACITY = 512
# prompt rows per forward. The kernels hold a few rows' scores at a time: 512 rows prefilled
# 1,536 tokens 5% faster than 256 (the weights streamed fewer times); torch's attention holds
# a (rows x keys) score block per head, which bounds it at 256
_PREFILL_CHUNK = {True: 512, False: 256}
_SUPPORTED = ("qwen2", "llama")


@dataclass
class _Layer:
    qkv: Linear  # (Q, hidden) -> (Q, (heads + 2 * kv_heads) * head_dim)
    out: Linear
    gate_up: Linear  # (Q, hidden) -> (Q, 2 * intermediate); silu(gate) * up where `gated`
    down: Linear
    attn_norm: torch.Tensor  # (hidden,) float32
    mlp_norm: torch.Tensor
    gated: bool = False  # gate_up applies the activation itself (`linears.GatedInt8`)


class KVBuffer:
    """Keys (layers, kv_heads, capacity, head_dim) and values (..., head_dim + 1, the last
    column ones: exact_attention.py) of every layer, float32; rows [0, length) are valid.
    Cropping only moves `length`."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, capacity: int) -> None:
        # zeros, not garbage: attention reads whole blocks and gives unused slots zero weight,
        # which only stays zero for finite values
        self.keys = torch.zeros((layers, kv_heads, capacity, head_dim), dtype=torch.float32)
        self.values = _values_buffer(layers, kv_heads, capacity, head_dim)
        self.length = 0

    @property
    def capacity(self) -> int:
        return int(self.keys.shape[2])

    def reserve(self, rows: int) -> None:
        """Room for `rows` more rows; doubling keeps the copies rare."""
        needed = self.length + rows
        if needed <= self.capacity:
            return
        capacity = max(needed, 2 * self.capacity)
        layers, kv_heads, _, head_dim = self.keys.shape
        keys = torch.zeros((layers, kv_heads, capacity, head_dim), dtype=torch.float32)
        values = _values_buffer(layers, kv_heads, capacity, head_dim)
        keys[:, :, : self.length] = self.keys[:, :, : self.length]
        values[:, :, : self.length] = self.values[:, :, : self.length]
        self.keys, self.values = keys, values


def _values_buffer(layers: int, kv_heads: int, capacity: int, head_dim: int) -> torch.Tensor:
    values = torch.zeros((layers, kv_heads, capacity, head_dim + 1), dtype=torch.float32)
    values[..., head_dim] = 1.0
    return values


def supports_native(lm: LoadedModel) -> bool:
    """Whether `lm` is a decoder this module knows how to run (on the CPU)."""
    config = lm.model.config
    rope = getattr(config, "rope_parameters", None) or {}
    return (
        lm.device.type == "cpu"
        and getattr(config, "model_type", None) in _SUPPORTED
        and rope.get("rope_type", "default") == "default"
        and getattr(config, "hidden_act", "silu") == "silu"
        and not getattr(config, "use_sliding_window", False)
    )


class NativeForward:
    """`ForwardPort` over the weights of a loaded Qwen2/Llama model, on the CPU."""

    def __init__(self, lm: LoadedModel, weights: str = "same") -> None:
        if not supports_native(lm):
            raise ValueError(f"{lm.name} on {lm.device} has no native forward")
        config = lm.model.config
        self.lm = lm
        self.weights = weights  # "same" (the model's dtype) or "int8"
        self.backend = "native" if weights == "same" else "native-w8a8"
        self.vocab_size = int(config.vocab_size)
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // self.heads)
        self.eps = float(config.rms_norm_eps)
        # the C kernels where this CPU has them (faster, and row-invariant by construction);
        # torch's own operations otherwise
        self.kernels = (
            cpu_kernels.kernel_available()
            and self.head_dim == 64
            and int(config.hidden_size) % 16 == 0
            and int(config.intermediate_size) % 16 == 0  # silu_mul's vectors
            and self.heads // self.kv_heads <= 16  # the attention kernel's bound
        )
        # what the matrix products take: int8 products quantize float32 rows themselves
        self.compute_dtype = lm.dtype if weights == "same" else torch.float32
        # attention on AMX tiles in bf16 beside int8 products, whose activations are coarser
        # already; "same" weights keep float32 attention (their logits match transformers')
        self.tile_attention = (
            self.kernels and weights == "int8" and cpu_kernels.tile_attention_available()
        )
        # the cost curve is cached under this name: another kernel build or AMX tiles make
        # another curve
        kernels = f"-c{cpu_kernels.kernel_build()}" if self.kernels else ""
        kernels += "-amx" if self.kernels and cpu_kernels.amx_enabled() else ""
        kernels += "-bf16att" if self.tile_attention else ""
        self.identity = (
            f"{lm.key}-{self.backend}{kernels}-{lm.dtype_name}-t{torch.get_num_threads()}"
        )
        with torch.inference_mode():
            self._layers = [self._load_layer(layer, weights) for layer in lm.model.model.layers]
            self._embed = lm.model.model.embed_tokens.weight  # (V, hidden)
            self._final_norm = lm.model.model.norm.weight.float()
            self._head = make_linear(weights, lm.model.lm_head.weight, None)
            theta = float((config.rope_parameters or {}).get("rope_theta", 10000.0))
            self._inv_freq = 1.0 / theta ** (
                torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim
            )

    def new_cache(self) -> KVBuffer:
        return KVBuffer(len(self._layers), self.kv_heads, self.head_dim, _FIRST_CAPACITY)

    @torch.inference_mode()
    def prefill(
        self, cache: KVBuffer, tokens: Sequence[int], allowed: Sequence[int] | None = None
    ) -> int:
        tokens = list(tokens)
        if not tokens:
            raise ValueError("nothing to prefill")
        rows = _PREFILL_CHUNK[self.kernels]
        last = (len(tokens) - 1) // rows * rows
        for begin in range(0, len(tokens), rows):
            chunk = tokens[begin : begin + rows]
            start = cache.length
            positions = torch.arange(start, start + len(chunk))
            layout = causal_layout(start, len(chunk))
            # only the prompt's last row needs logits: the head over 152k outputs cost ~5 ms a chunk
            judged = 1 if begin == last else 0
            logits = self._forward(cache, chunk, positions, layout, judged)  # (judged, V)
        return greedy_among(logits[-1], allowed)

    @torch.inference_mode()
    def verify(
        self,
        cache: KVBuffer,
        tokens: Sequence[int],
        depths: Sequence[int],
        visible: np.ndarray,
        judged: int | None = None,
        allowed: Sequence[Sequence[int] | None] | None = None,
    ) -> list[int]:
        positions = torch.tensor(depths, dtype=torch.long) + cache.length
        layout = tree_layout(cache.length, visible)
        logits = self._forward(cache, tokens, positions, layout, judged)  # (judged, V)
        return greedy_rows(logits, allowed)

    @torch.inference_mode()
    def keep(self, cache: KVBuffer, past_len: int, rows: Sequence[int]) -> None:
        if list(rows) != list(range(len(rows))):
            index = torch.tensor(rows, dtype=torch.long) + past_len
            end = past_len + len(rows)
            # index_select copies before the write, so overlapping rows are safe
            cache.keys[:, :, past_len:end] = cache.keys.index_select(2, index)
            cache.values[:, :, past_len:end] = cache.values.index_select(2, index)
        cache.length = past_len + len(rows)

    def crop(self, cache: KVBuffer, length: int) -> None:
        cache.length = min(cache.length, length)

    def _forward(
        self,
        cache: KVBuffer,
        tokens: Sequence[int],
        positions: torch.Tensor,  # (Q,)
        layout: RowLayout,
        judged: int | None = None,
    ) -> torch.Tensor:
        """Logits (Q, V), or (judged, V) for the last `judged` rows (none: (0, V) empty);
        appends Q rows to `cache`."""
        q_len = len(tokens)
        cache.reserve(q_len + BLOCK)  # attention reads whole blocks past the last row
        start = cache.length
        hidden = self._embed[torch.tensor(list(tokens), dtype=torch.long)].float()  # (Q, H)
        cos, sin = self._rope(positions)  # (Q, D/2)
        for index, layer in enumerate(self._layers):
            keys, values = cache.keys[index], cache.values[index]  # (KV, cap, D)
            attended = self._attention(layer, hidden, keys, values, start, cos, sin, layout)
            hidden = hidden + attended
            hidden = hidden + self._mlp(layer, hidden)
        cache.length = start + q_len
        if judged == 0:
            return torch.empty((0, self.vocab_size), dtype=self.compute_dtype)
        if judged is not None:
            hidden = hidden[-judged:]
        normed = self._norm(hidden, self._final_norm).to(self.compute_dtype)
        return self._head(normed)

    def _norm(self, hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.kernels:
            return cpu_kernels.rms_norm(hidden, weight, self.eps)
        return _rms_norm(hidden, weight, self.eps)

    def _attention(
        self,
        layer: _Layer,
        hidden: torch.Tensor,  # (Q, H) float32
        keys: torch.Tensor,  # (KV, cap, D)
        values: torch.Tensor,
        start: int,
        cos: torch.Tensor,
        sin: torch.Tensor,
        layout: RowLayout,
    ) -> torch.Tensor:
        q_len, heads, kv_heads, dim = hidden.shape[0], self.heads, self.kv_heads, self.head_dim
        normed = self._norm(hidden, layer.attn_norm).to(self.compute_dtype)
        qkv = layer.qkv(normed).float()  # (Q, (heads + 2 kv) * D)
        query = qkv[:, : heads * dim].view(q_len, heads, dim)
        key = qkv[:, heads * dim : (heads + kv_heads) * dim].view(q_len, kv_heads, dim)
        value = qkv[:, (heads + kv_heads) * dim :].view(q_len, kv_heads, dim)
        end = start + q_len
        values[:, start:end, :dim] = value.transpose(0, 1)
        if self.kernels:  # keys rotated straight into the cache, no intermediate tensors
            cpu_kernels.rope(key, cos, sin, keys[:, start:end].transpose(0, 1))
            rotated = torch.empty((q_len, heads, dim), dtype=torch.float32)
            cpu_kernels.rope(query, cos, sin, rotated)
        else:
            keys[:, start:end] = _rotate(key, cos, sin).transpose(0, 1)
            rotated = _rotate(query, cos, sin)
        if self.kernels:
            # the layout's key count, not a reduction per layer: no host sync in the step
            mixed = cpu_kernels.attention(
                rotated,
                keys,
                values,
                layout.prefix,
                layout.extra,
                layout.extra_count,
                dim**-0.5,
                layout.most_keys,
                tiles=self.tile_attention,
            )
        else:
            mixed = exact_attention(rotated, keys, values, layout)  # (Q, heads * D)
        return layer.out(mixed.to(self.compute_dtype)).float()

    def _mlp(self, layer: _Layer, hidden: torch.Tensor) -> torch.Tensor:
        normed = self._norm(hidden, layer.mlp_norm).to(self.compute_dtype)
        if layer.gated:
            return layer.down(layer.gate_up(normed)).float()
        gate_up = layer.gate_up(normed)
        if self.kernels and gate_up.dtype == torch.float32:
            return layer.down(cpu_kernels.silu_mul(gate_up)).float()
        # the activation in the products' precision, as transformers does: converting the
        # (Q, 2 * intermediate) block to float32 and back cost more than the products in a prefill
        gate, up = gate_up.chunk(2, dim=-1)
        return layer.down(functional.silu(gate) * up).float()

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = positions.float()[:, None] * self._inv_freq[None]  # (Q, D/2)
        return angles.cos(), angles.sin()

    def _load_layer(self, layer: Any, weights: str) -> _Layer:
        attn, mlp = layer.self_attn, layer.mlp
        qkv_bias = None
        if attn.q_proj.bias is not None:
            qkv_bias = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])
        # int8 gate and up in one pass with the activation, where the kernel has it
        gated = weights == "int8" and self.kernels and cpu_kernels.gated_available()
        gate_up: Linear = (
            GatedInt8(mlp.gate_proj.weight, mlp.up_proj.weight)
            if gated
            else make_linear(weights, torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]), None)
        )
        return _Layer(
            qkv=make_linear(
                weights,
                torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]),
                qkv_bias,
            ),
            out=make_linear(weights, attn.o_proj.weight, attn.o_proj.bias),
            gate_up=gate_up,
            down=make_linear(weights, mlp.down_proj.weight, None),
            attn_norm=layer.input_layernorm.weight.float(),
            mlp_norm=layer.post_attention_layernorm.weight.float(),
            gated=gated,
        )


def _rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    scale = torch.rsqrt(hidden.pow(2).mean(dim=-1, keepdim=True) + eps)
    return hidden * scale * weight


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE in the half-split layout Qwen2/Llama checkpoints use: x (Q, heads, D) float32,
    cos and sin (Q, D/2)."""
    cos, sin = cos[:, None], sin[:, None]
    first, second = x.chunk(2, dim=-1)
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)
