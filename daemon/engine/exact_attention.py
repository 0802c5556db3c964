"""Attention whose result for a row does not depend on the other rows computed with it.

A one-token step, a row of a draft tree and a row of a prompt must come out bit for bit the
same when they sit at the same position over the same keys, or a verified tree can pick another
token than plain greedy decoding would (and int8 activations turn a last-bit difference into a
whole quantization step). Matrix products here are row-invariant (measured); what is not is a
reduction whose grouping follows the physical layout: a tree row's keys are the past plus its
ancestors scattered among other nodes, a one-token row's are contiguous, and a long reduction
is split where the kernel pleases. So every row is reduced the same way over *absolute* key
positions:

- keys are cut into blocks of 64 absolute positions; a row's scores are shifted by the row's
  maximum over all its keys (exact: a maximum does not round);
- within a block, one matrix product of 64 terms gives the weighted values and the weights'
  total at once (the value rows carry a last column of ones); a block is the same 64 slots in
  the same order for every layout (missing keys are zero weights, which add nothing);
- blocks are added one by one in absolute order (plain float32 additions), so trailing empty
  blocks change nothing either.

Rows see the blocks wholly before the step's first new position in place (`shared`), and the
rest through a small per-row gather (`tail_index`) that puts the row's own keys back in
absolute order. Prompt rows are causal, so for them everything is in place, with a mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["BLOCK", "RowLayout", "causal_layout", "exact_attention", "tree_layout"]

BLOCK = 64


@dataclass(frozen=True)
class RowLayout:
    """Where the keys of a step's Q new rows are.

    Keys [0, shared) are read in place by every row, through `shared_mask` (Q, shared) where
    given (True: not this row's key). A tree step adds, per row, `tail_index` (Q, L): the
    physical slots of the row's keys from `shared` on, in absolute order, `tail_mask` marking
    the padding. `shared` and L are multiples of BLOCK.

    The same keys as the C kernel (`cpu_kernels.attention`) takes them: row i reads the slots
    [0, prefix[i]) and then extra[i, :extra_count[i]].
    """

    shared: int
    prefix: torch.Tensor  # (Q,) int64
    extra: torch.Tensor  # (Q, E) int64
    extra_count: torch.Tensor  # (Q,) int64
    most_keys: int  # the longest row's key count (the kernel's scratch size)
    shared_mask: torch.Tensor | None = None
    tail_index: torch.Tensor | None = None
    tail_mask: torch.Tensor | None = None


def causal_layout(start: int, q_len: int) -> RowLayout:
    """Prompt rows at positions start..start+q_len-1, each seeing every key up to its own."""
    shared = _round_up(start + q_len)
    columns = torch.arange(shared)
    rows = torch.arange(start, start + q_len)
    return RowLayout(
        shared,
        prefix=rows + 1,
        extra=torch.zeros((q_len, 1), dtype=torch.long),
        extra_count=torch.zeros(q_len, dtype=torch.long),
        most_keys=start + q_len,
        shared_mask=columns[None, :] > rows[:, None],
    )


def tree_layout(start: int, visible: np.ndarray) -> RowLayout:
    """Rows of a draft tree (or the single root of a one-token step) after `start` cached
    keys; row i sees the past and the nodes j with visible[i, j] (its ancestors and itself,
    which come in increasing order of position)."""
    shared = start - start % BLOCK
    past = np.arange(shared, start)
    rows = [np.concatenate([past, start + np.flatnonzero(row)]) for row in visible]
    width = _round_up(max(len(r) for r in rows))
    index = np.zeros((len(rows), width), dtype=np.int64)  # padding reads slot 0 (finite)
    padding = np.ones((len(rows), width), dtype=bool)
    for i, slots in enumerate(rows):
        index[i, : len(slots)] = slots
        padding[i, : len(slots)] = False
    own = [start + np.flatnonzero(row) for row in visible]
    extra = np.zeros((len(own), max(len(o) for o in own)), dtype=np.int64)
    for i, slots in enumerate(own):
        extra[i, : len(slots)] = slots
    return RowLayout(
        shared,
        prefix=torch.full((len(own),), start, dtype=torch.long),
        extra=torch.from_numpy(extra),
        extra_count=torch.tensor([len(o) for o in own], dtype=torch.long),
        most_keys=start + max(len(o) for o in own),
        tail_index=torch.from_numpy(index),
        tail_mask=torch.from_numpy(padding),
    )


def exact_attention(
    query: torch.Tensor,  # (Q, heads, D) float32, rotated
    keys: torch.Tensor,  # (KV, capacity, D) float32, finite everywhere
    values: torch.Tensor,  # (KV, capacity, D + 1): the values, then a column of ones
    layout: RowLayout,
) -> torch.Tensor:
    """-> (Q, heads * D); head h reads key/value head h // (heads // KV)."""
    q_len, heads, dim = query.shape
    kv_heads = keys.shape[0]
    groups = heads // kv_heads
    grouped = query.view(q_len, kv_heads, groups, dim).permute(1, 0, 2, 3)  # (KV, Q, G, D)
    scale = dim**-0.5
    width = values.shape[-1]  # D + 1
    parts = []  # (scores (KV, Q, G, n), values laid out as (KV, [Q,] n // BLOCK, BLOCK, D + 1))
    if layout.shared:
        n = layout.shared
        flat = grouped.reshape(kv_heads, q_len * groups, dim)
        scores = torch.bmm(flat, keys[:, :n].transpose(1, 2)).view(kv_heads, q_len, groups, n)
        if layout.shared_mask is not None:
            scores.masked_fill_(layout.shared_mask[None, :, None, :], float("-inf"))
        parts.append((scores, values[:, :n].reshape(kv_heads, n // BLOCK, BLOCK, width)))
    if layout.tail_index is not None and layout.tail_mask is not None:
        length = layout.tail_index.shape[1]
        tail_keys = keys[:, layout.tail_index]  # (KV, Q, L, D)
        scores = torch.matmul(grouped, tail_keys.transpose(-1, -2))  # (KV, Q, G, L)
        scores.masked_fill_(layout.tail_mask[None, :, None, :], float("-inf"))
        tail_values = values[:, layout.tail_index].view(
            kv_heads, q_len, length // BLOCK, BLOCK, width
        )
        parts.append((scores, tail_values))
    # one maximum per row over all its keys: every block is scaled alike, nothing to rescale
    top = torch.stack([s.amax(dim=-1) for s, _ in parts]).amax(dim=0)  # (KV, Q, G)
    mixes = []  # per block: the weighted values and, last, the weights' total
    for scores, block_values in parts:
        blocks = scores.shape[-1] // BLOCK
        weights = scores.sub_(top[..., None]).mul_(scale).exp_()  # masked: exp(-inf) = 0
        weights = weights.view(kv_heads, q_len, groups, blocks, BLOCK)
        if block_values.dim() == 4:  # in place: shared by the rows
            mixed = torch.matmul(
                weights.permute(0, 3, 1, 2, 4).reshape(kv_heads, blocks, q_len * groups, BLOCK),
                block_values,
            )  # (KV, blocks, Q*G, D+1)
            mixed = mixed.view(kv_heads, blocks, q_len, groups, width).permute(0, 2, 3, 1, 4)
        else:  # gathered per row
            mixed = torch.matmul(weights.transpose(2, 3), block_values).transpose(2, 3)
        mixes.append(mixed)  # (KV, Q, G, blocks, D+1)
    # a loop, not `cumsum` or `sum`: their grouping (and precision) is the kernel's choice;
    # here every row's blocks are added in the same order whatever the rows around it
    blocks_in_order = [mixed[:, :, :, b] for mixed in mixes for b in range(mixed.shape[3])]
    total = blocks_in_order[0].clone()  # (KV, Q, G, D+1)
    for block in blocks_in_order[1:]:
        total += block
    out = total[..., :dim] / total[..., dim:]
    return out.permute(1, 0, 2, 3).reshape(q_len, heads * dim)


def _round_up(n: int) -> int:
    return -(-n // BLOCK) * BLOCK
