"""Folded grouped-query attention computes what transformers' SDPA path computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from daemon.engine.attention import folded_sdpa_forward
from daemon.engine.torch_forward import tree_attention_mask
from daemon.engine.tree import Candidate, ancestor_matrix, build_tree


class Heads(nn.Module):
    """What the attention functions read from a decoder layer's attention module."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.num_key_value_groups = groups
        self.is_causal = True


def _inputs(kv_heads: int, groups: int, past: int, nodes: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(past + nodes)
    tree = build_tree(
        [Candidate((1, 2, 3, 4)), Candidate((1, 5, 6)), Candidate((7, 8)), Candidate((9,))],
        nodes,
        4,
    )
    q_len = tree.size + 1
    query = torch.randn(1, kv_heads * groups, q_len, 16, generator=generator)
    key = torch.randn(1, kv_heads, past + q_len, 16, generator=generator)
    value = torch.randn(1, kv_heads, past + q_len, 16, generator=generator)
    mask = tree_attention_mask(ancestor_matrix(tree), past, torch.float32, torch.device("cpu"))
    return query, key, value, mask


@pytest.mark.parametrize(("kv_heads", "groups"), [(2, 7), (2, 3), (4, 2)])
@pytest.mark.parametrize("nodes", [1, 5, 9])
def test_tree_attention_matches_sdpa(kv_heads: int, groups: int, nodes: int) -> None:
    query, key, value, mask = _inputs(kv_heads, groups, past=37, nodes=nodes)
    module = Heads(groups)
    expected, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.25)
    folded, _ = folded_sdpa_forward(module, query, key, value, mask, scaling=0.25)
    assert folded.shape == expected.shape == (1, query.shape[2], kv_heads * groups, 16)
    torch.testing.assert_close(folded, expected, rtol=1e-5, atol=1e-6)


def test_single_token_and_unmasked_steps_are_transformers_own() -> None:
    """Plain greedy steps and the prefill never take the folded path: bit-for-bit equal."""
    query, key, value, _ = _inputs(2, 7, past=20, nodes=0)
    module = Heads(7)
    one_token = query[:, :, :1]
    assert torch.equal(
        folded_sdpa_forward(module, one_token, key, value, None)[0],
        sdpa_attention_forward(module, one_token, key, value, None)[0],
    )
    prefill_q, prefill_k, prefill_v = (torch.randn(1, h, 12, 16) for h in (14, 2, 2))
    assert torch.equal(
        folded_sdpa_forward(module, prefill_q, prefill_k, prefill_v, None)[0],
        sdpa_attention_forward(module, prefill_q, prefill_k, prefill_v, None)[0],
    )
