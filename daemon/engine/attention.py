"""Attention for tree verification: grouped-query heads folded instead of repeated.

With an explicit mask (a draft tree's ancestor mask), transformers' SDPA path repeats every
key/value head once per query head of its group before attending: for Qwen2.5-0.5B that is 7
copies of the whole KV cache per layer per step. Folding the group's query heads into the query
axis instead attends each key/value head once, with the mask repeated along the folded axis:
the same arithmetic, far less memory traffic. Measured at 1,500 tokens of context, 33 query
tokens, 24 layers, bf16 on 2 cores: 19.5 ms -> 9.2 ms per step.

Everything else (prefill, 1-token steps, batches, models without grouped heads) goes to
transformers' own SDPA function unchanged, so plain greedy decoding is untouched.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

__all__ = ["FOLDED", "folded_sdpa_forward", "use_folded_attention"]

FOLDED = "codeswift_folded_sdpa"


def folded_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """query (B, H, Q, D), key/value (B, KV, K, D) -> attention output (B, Q, H, D)."""
    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, q_len, dim = query.shape
    if (
        attention_mask is None
        or q_len == 1
        or groups == 1
        or batch != 1
        or attention_mask.dim() != 4
        or attention_mask.shape[1] != 1
        or kwargs.get("position_bias") is not None
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    kv_heads, kv_len = key.shape[1], key.shape[2]
    # head h reads key/value head h // groups, so the heads of one group are adjacent
    folded_query = query.reshape(batch, kv_heads, groups * q_len, dim)
    mask = attention_mask[:, :, :, :kv_len]
    folded_mask = mask.expand(batch, groups, q_len, kv_len).reshape(1, 1, groups * q_len, kv_len)
    out = torch.nn.functional.scaled_dot_product_attention(
        folded_query, key, value, attn_mask=folded_mask, dropout_p=dropout, scale=scaling
    )
    return out.reshape(batch, heads, q_len, value.shape[-1]).transpose(1, 2).contiguous(), None


def use_folded_attention(model: Any) -> bool:
    """Switch a transformers model that runs SDPA to the folded variant; False if it can't."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    AttentionInterface.register(FOLDED, folded_sdpa_forward)
    AttentionMaskInterface.register(FOLDED, sdpa_mask)
    try:
        model.set_attn_implementation(FOLDED)
    except (ValueError, ImportError):
        return False
    return True
