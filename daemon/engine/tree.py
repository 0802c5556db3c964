"""Draft trees: candidate continuations merged into a trie, pruned to a node budget.

The verifier runs the current root token followed by every tree node in one forward pass. Each
node sees the whole past and its own ancestors only, and sits at position `past_len + depth`,
so every root-to-node path is scored exactly as if it had been decoded alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["EMPTY_TREE", "Candidate", "DraftTree", "ancestor_matrix", "build_tree"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One proposed continuation of the context; `weight` ranks it against the others."""

    tokens: tuple[int, ...]
    weight: float = 1.0


@dataclass(frozen=True)
class DraftTree:
    """Nodes in breadth-first order (parents before children); index -1 is the root token."""

    tokens: tuple[int, ...]  # (N,)
    parents: tuple[int, ...]  # (N,) parent node index, -1 for children of the root
    depths: tuple[int, ...]  # (N,) 1 for children of the root
    children: tuple[dict[int, int], ...] = field(repr=False)  # (N+1,) slot 0 = root, token -> node

    @property
    def size(self) -> int:
        return len(self.tokens)

    def walk(self, predicted: Sequence[int]) -> list[int]:
        """Longest path whose tokens equal the model's argmax at their parent.

        `predicted[0]` is the argmax after the root, `predicted[i + 1]` after node i.
        Returns the accepted node indices, root to leaf.
        """
        path: list[int] = []
        slot = 0
        while (node := self.children[slot].get(predicted[slot])) is not None:
            path.append(node)
            slot = node + 1
        return path


EMPTY_TREE = DraftTree(tokens=(), parents=(), depths=(), children=({},))


def build_tree(candidates: Iterable[Candidate], budget: int, max_depth: int) -> DraftTree:
    """Merge `candidates` into a trie and keep the `budget` heaviest nodes.

    A node's weight is the sum of the weights of the candidates through it, so a parent always
    weighs at least as much as its child; ties go to the shallower node. Kept nodes therefore
    always include their ancestors.
    """
    if budget <= 0 or max_depth <= 0:
        return EMPTY_TREE
    # trie nodes: key (parent, token) -> id; parallel lists hold each id's fields
    ids: dict[tuple[int, int], int] = {}
    token_of: list[int] = []
    parent_of: list[int] = []
    depth_of: list[int] = []
    weight_of: list[float] = []
    for candidate in candidates:
        parent = -1
        for depth, token in enumerate(candidate.tokens[:max_depth], start=1):
            key = (parent, token)
            node = ids.get(key)
            if node is None:
                node = ids[key] = len(token_of)
                token_of.append(token)
                parent_of.append(parent)
                depth_of.append(depth)
                weight_of.append(0.0)
            weight_of[node] += candidate.weight
            parent = node
    if not token_of:
        return EMPTY_TREE
    ranked = sorted(range(len(token_of)), key=lambda n: (-weight_of[n], depth_of[n], n))
    kept = sorted(ranked[:budget], key=lambda n: (depth_of[n], -weight_of[n], n))
    new_index = {old: new for new, old in enumerate(kept)}
    parents = tuple(new_index[parent_of[n]] if parent_of[n] >= 0 else -1 for n in kept)
    tokens = tuple(token_of[n] for n in kept)
    children: list[dict[int, int]] = [{} for _ in range(len(kept) + 1)]
    for node, (parent, token) in enumerate(zip(parents, tokens, strict=True)):
        children[parent + 1][token] = node
    return DraftTree(
        tokens=tokens,
        parents=parents,
        depths=tuple(depth_of[n] for n in kept),
        children=tuple(children),
    )


def ancestor_matrix(tree: DraftTree) -> np.ndarray:
    """(N+1, N+1) bool: row i may attend to column j (slot 0 is the root, slot i+1 node i)."""
    size = tree.size + 1
    visible = np.zeros((size, size), dtype=bool)
    visible[:, 0] = True
    for node, parent in enumerate(tree.parents):
        visible[node + 1] = visible[parent + 1]
        visible[node + 1, node + 1] = True
    return visible
