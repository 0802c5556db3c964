"""The forward port on a hand-written decoder: Qwen2/Llama-style layers over a preallocated cache.

Why not transformers' own forward on the CPU: a one-token step there paid ~1.6 ms per layer in
SDPA for a single query row, a `cat` of the whole KV cache per layer, and mask/position plumbing
per call; a step ran at 2.4x the time it takes to stream the weights once (DESIGN.md §8). Here a
step is the weight matrices (the `Linear`s of `linears.py`) plus a few small float32 operations:

- keys and values live in one float32 buffer per model, written in place, grown by doubling;
- attention folds the query heads of a key/value group into one matrix product (no repeated
  K/V), with float32 scores and softmax, and it is the same function for a one-token step and a
  draft tree, so `ar` and verification share every line of arithmetic;
- RoPE tables are computed once; the residual stream and the norms stay in float32.

The weights are the loaded transformers model's own tensors (bf16/fp32 share memory with it) or
their int8 copies (`linears.Int8Linear`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from daemon.engine.linears import Linear, make_linear
from daemon.engine.models import LoadedModel

__all__ = ["KVBuffer", "NativeForward", "supports_native"]

_FIRST_CAPACITY = 512
_SUPPORTED = ("qwen2", "llama")


@dataclass
class _Layer:
    qkv: Linear  # (Q, hidden) -> (Q, (heads + 2 * kv_heads) * head_dim)
    out: Linear
    gate_up: Linear  # (Q, hidden) -> (Q, 2 * intermediate)
    down: Linear
    attn_norm: torch.Tensor  # (hidden,) float32
    mlp_norm: torch.Tensor


class KVBuffer:
    """Keys and values of every layer, (layers, kv_heads, capacity, head_dim) float32; rows
    [0, length) are valid. Cropping only moves `length`."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, capacity: int) -> None:
        shape = (layers, kv_heads, capacity, head_dim)
        self.keys = torch.empty(shape, dtype=torch.float32)
        self.values = torch.empty(shape, dtype=torch.float32)
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
        for name in ("keys", "values"):
            old = getattr(self, name)
            new = torch.empty((*old.shape[:2], capacity, old.shape[3]), dtype=old.dtype)
            new[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, new)


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
        # what the matrix products take: int8 products quantize float32 rows themselves
        self.compute_dtype = lm.dtype if weights == "same" else torch.float32
        self.identity = f"{lm.name}-{self.backend}-{lm.dtype_name}-t{torch.get_num_threads()}"
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
    def prefill(self, cache: KVBuffer, tokens: Sequence[int]) -> int:
        positions = torch.arange(cache.length, cache.length + len(tokens))
        logits = self._forward(cache, tokens, positions, None, last_only=True)  # (1, V)
        return int(logits[-1].max(dim=-1).indices)

    @torch.inference_mode()
    def verify(
        self, cache: KVBuffer, tokens: Sequence[int], depths: Sequence[int], visible: np.ndarray
    ) -> list[int]:
        positions = torch.tensor(depths, dtype=torch.long) + cache.length
        blocked = None
        if len(tokens) > 1:
            blocked = torch.from_numpy(~visible)  # (N+1, N+1) True where a row may not look
        logits = self._forward(cache, tokens, positions, blocked)  # (N+1, V)
        return list(logits.max(dim=-1).indices.tolist())  # the step's one host sync

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
        blocked: torch.Tensor | None,  # (Q, Q) bool over the new rows, None: causal-free
        last_only: bool = False,
    ) -> torch.Tensor:
        """Logits (Q, V), or (1, V) for the last token only; appends Q rows to `cache`."""
        q_len = len(tokens)
        cache.reserve(q_len)
        start = cache.length
        hidden = self._embed[torch.tensor(list(tokens), dtype=torch.long)].float()  # (Q, H)
        cos, sin = self._rope(positions)  # (Q, 1, D/2)
        prefill = blocked is None and q_len > 1
        bias = None if prefill else _tree_bias(blocked, q_len, start, self.heads // self.kv_heads)
        for index, layer in enumerate(self._layers):
            keys, values = cache.keys[index], cache.values[index]  # (KV, cap, D)
            attended = self._attention(layer, hidden, keys, values, start, cos, sin, bias, prefill)
            hidden = hidden + attended
            hidden = hidden + self._mlp(layer, hidden)
        cache.length = start + q_len
        if last_only:
            hidden = hidden[-1:]
        normed = _rms_norm(hidden, self._final_norm, self.eps).to(self.compute_dtype)
        return self._head(normed)

    def _attention(
        self,
        layer: _Layer,
        hidden: torch.Tensor,  # (Q, H) float32
        keys: torch.Tensor,  # (KV, cap, D)
        values: torch.Tensor,
        start: int,
        cos: torch.Tensor,
        sin: torch.Tensor,
        bias: torch.Tensor | None,  # (G*Q, T) additive, or None
        prefill: bool,  # causal rows of a prompt: torch's fused attention
    ) -> torch.Tensor:
        q_len, heads, kv_heads, dim = hidden.shape[0], self.heads, self.kv_heads, self.head_dim
        normed = _rms_norm(hidden, layer.attn_norm, self.eps).to(self.compute_dtype)
        qkv = layer.qkv(normed).float()  # (Q, (heads + 2 kv) * D)
        query = qkv[:, : heads * dim].view(q_len, heads, dim)
        key = qkv[:, heads * dim : (heads + kv_heads) * dim].view(q_len, kv_heads, dim)
        value = qkv[:, (heads + kv_heads) * dim :].view(q_len, kv_heads, dim)
        end = start + q_len
        keys[:, start:end] = _rotate(key, cos, sin).transpose(0, 1)
        values[:, start:end] = value.transpose(0, 1)
        if prefill:
            return layer.out(
                self._causal(query, cos, sin, keys, values, start).to(self.compute_dtype)
            ).float()
        groups = heads // kv_heads
        # head h reads key/value head h // groups: fold each group's queries into one matrix
        folded = (
            _rotate(query, cos, sin)
            .view(q_len, kv_heads, groups, dim)
            .permute(1, 2, 0, 3)
            .reshape(kv_heads, groups * q_len, dim)
        )
        scores = torch.bmm(folded, keys[:, :end].transpose(1, 2))  # (KV, G*Q, T)
        scores.mul_(dim**-0.5)
        if bias is not None:
            scores.add_(bias)
        weights = torch.softmax(scores, dim=-1)
        mixed = torch.bmm(weights, values[:, :end])  # (KV, G*Q, D)
        merged = mixed.view(kv_heads, groups, q_len, dim).permute(2, 0, 1, 3)
        return layer.out(merged.reshape(q_len, heads * dim).to(self.compute_dtype)).float()

    def _causal(
        self,
        query: torch.Tensor,  # (Q, heads, D) before RoPE
        cos: torch.Tensor,
        sin: torch.Tensor,
        keys: torch.Tensor,  # (KV, cap, D), rows up to start + Q written
        values: torch.Tensor,
        start: int,
    ) -> torch.Tensor:
        """Prompt rows attend causally through torch's fused kernel (a prompt of 1,500 tokens
        would otherwise materialise a (heads, 1500, 1500) score matrix per layer); the rows it
        writes are the same keys and values, only its reduction order differs. -> (Q, heads*D)"""
        q_len = query.shape[0]
        end = start + q_len
        # in the matrix products' precision: bf16 here runs twice as fast as float32
        dtype = self.compute_dtype
        rotated = _rotate(query, cos, sin).transpose(0, 1)[None].to(dtype)  # (1, heads, Q, D)
        mask = None
        if start > 0:  # after reused rows: row i sees everything up to start + i
            mask = torch.ones((q_len, end), dtype=torch.bool).tril_(start)
        out = functional.scaled_dot_product_attention(
            rotated,
            keys[None, :, :end].to(dtype),
            values[None, :, :end].to(dtype),
            attn_mask=mask,
            is_causal=start == 0,
            enable_gqa=True,
        )  # (1, heads, Q, D)
        return out[0].transpose(0, 1).reshape(q_len, -1)

    def _mlp(self, layer: _Layer, hidden: torch.Tensor) -> torch.Tensor:
        normed = _rms_norm(hidden, layer.mlp_norm, self.eps).to(self.compute_dtype)
        # the activation in the products' precision, as transformers does: converting the
        # (Q, 2 * intermediate) block to float32 and back cost more than the products in a prefill
        gate, up = layer.gate_up(normed).chunk(2, dim=-1)
        return layer.down(functional.silu(gate) * up).float()

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = positions.float()[:, None] * self._inv_freq[None]  # (Q, D/2)
        return angles.cos()[:, None], angles.sin()[:, None]

    def _load_layer(self, layer: Any, weights: str) -> _Layer:
        attn, mlp = layer.self_attn, layer.mlp
        qkv_bias = None
        if attn.q_proj.bias is not None:
            qkv_bias = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])
        return _Layer(
            qkv=make_linear(
                weights,
                torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]),
                qkv_bias,
            ),
            out=make_linear(weights, attn.o_proj.weight, attn.o_proj.bias),
            gate_up=make_linear(
                weights, torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]), None
            ),
            down=make_linear(weights, mlp.down_proj.weight, None),
            attn_norm=layer.input_layernorm.weight.float(),
            mlp_norm=layer.post_attention_layernorm.weight.float(),
        )


def _rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    scale = torch.rsqrt(hidden.pow(2).mean(dim=-1, keepdim=True) + eps)
    return hidden * scale * weight


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE in the half-split layout Qwen2/Llama checkpoints use: x (Q, heads, D) float32."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)


def _tree_bias(
    blocked: torch.Tensor | None, q_len: int, start: int, groups: int
) -> torch.Tensor | None:
    """Additive (G*Q, start+Q) bias: the past fully visible, the new rows by `blocked`. None
    for one row."""
    if q_len == 1 or blocked is None:
        return None
    bias = torch.zeros((q_len, start + q_len), dtype=torch.float32)
    bias[:, start:].masked_fill_(blocked, float("-inf"))
    return bias.repeat(groups, 1)
