"""Draft trees: candidate continuations merged into a trie, pruned to a node budget.

The verifier runs the current root token followed by every tree node in one forward pass. Each
node sees the whole past and its own ancestors only, and sits at position `past_len + depth`,
so every root-to-node path is scored exactly as if it had been decoded alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["EMPTY_TREE", "Candidate", "DraftTree", "Trie", "ancestor_matrix", "build_tree"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One proposed continuation of the context; `weight` ranks it against the others.

    `source` names where it came from and `match` how many context tokens matched to find it:
    the evidence a scored tree (scoring.py) turns into an acceptance estimate."""

    tokens: tuple[int, ...]
    weight: float = 1.0
    source: str = ""
    match: int = 0


@dataclass(frozen=True)
class DraftTree:
    """Nodes in breadth-first order (parents before children); index -1 is the root token."""

    tokens: tuple[int, ...]  # (N,)
    parents: tuple[int, ...]  # (N,) parent node index, -1 for children of the root
    depths: tuple[int, ...]  # (N,) 1 for children of the root
    children: tuple[dict[int, int], ...] = field(repr=False)  # (N+1,) slot 0 = root, token -> node
    # scored trees only: each node's calibration cell and its estimated acceptance given its parent
    cells: tuple[tuple[object, ...], ...] = field(default=(), repr=False)
    estimates: tuple[float, ...] = field(default=(), repr=False)

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


class Trie:
    """Candidates merged token by token: node ids in insertion order, parents before children.

    Per node: token, parent (-1 under the root), depth and summed weight. (Scored trees build
    theirs lazily, with more evidence per node: scoring.py.)"""

    def __init__(self, candidates: Iterable[Candidate], max_depth: int) -> None:
        ids: dict[tuple[int, int], int] = {}
        self.tokens: list[int] = []
        self.parents: list[int] = []
        self.depths: list[int] = []
        self.weights: list[float] = []
        for candidate in candidates:
            parent = -1
            for depth, token in enumerate(candidate.tokens[:max_depth], start=1):
                node = ids.get((parent, token))
                if node is None:
                    node = ids[(parent, token)] = self._add(token, parent, depth)
                self.weights[node] += candidate.weight
                parent = node

    def __len__(self) -> int:
        return len(self.tokens)

    def _add(self, token: int, parent: int, depth: int) -> int:
        node = len(self.tokens)
        self.tokens.append(token)
        self.parents.append(parent)
        self.depths.append(depth)
        self.weights.append(0.0)
        return node

    def tree(self, kept: Sequence[int]) -> DraftTree:
        """The draft tree of the nodes `kept` (ancestor-closed), breadth first."""
        return tree_of(self.tokens, self.parents, self.depths, kept)


def tree_of(
    tokens: Sequence[int],
    parents: Sequence[int],
    depths: Sequence[int],
    kept: Sequence[int],
    cells: Sequence[tuple[object, ...]] = (),
    estimates: Sequence[float] = (),
) -> DraftTree:
    """The draft tree of the trie nodes `kept` (ancestor-closed; a trie's nodes as arrays:
    token, parent (-1 under the root) and depth of each), breadth first."""
    order = sorted(range(len(kept)), key=lambda i: (depths[kept[i]], i))
    nodes = [kept[i] for i in order]
    new_index = {old: new for new, old in enumerate(nodes)}
    new_parents = tuple(new_index[parents[n]] if parents[n] >= 0 else -1 for n in nodes)
    new_tokens = tuple(tokens[n] for n in nodes)
    children: list[dict[int, int]] = [{} for _ in range(len(nodes) + 1)]
    for node, (parent, token) in enumerate(zip(new_parents, new_tokens, strict=True)):
        children[parent + 1][token] = node
    return DraftTree(
        tokens=new_tokens,
        parents=new_parents,
        depths=tuple(depths[n] for n in nodes),
        children=tuple(children),
        cells=tuple(cells[i] for i in order) if cells else (),
        estimates=tuple(estimates[i] for i in order) if estimates else (),
    )


def build_tree(candidates: Iterable[Candidate], budget: int, max_depth: int) -> DraftTree:
    """Merge `candidates` into a trie and keep the `budget` heaviest nodes.

    A node's weight is the sum of the weights of the candidates through it, so a parent always
    weighs at least as much as its child; ties go to the shallower node. Kept nodes therefore
    always include their ancestors.
    """
    if budget <= 0 or max_depth <= 0:
        return EMPTY_TREE
    trie = Trie(candidates, max_depth)
    if not len(trie):
        return EMPTY_TREE
    weights, depths = trie.weights, trie.depths
    ranked = sorted(range(len(trie)), key=lambda n: (-weights[n], depths[n], n))
    kept = sorted(ranked[:budget], key=lambda n: (depths[n], -weights[n], n))
    return trie.tree(kept)


def ancestor_matrix(tree: DraftTree) -> np.ndarray:
    """(N+1, N+1) bool: row i may attend to column j (slot 0 is the root, slot i+1 node i)."""
    size = tree.size + 1
    visible = np.zeros((size, size), dtype=bool)
    visible[:, 0] = True
    for node, parent in enumerate(tree.parents):
        visible[node + 1] = visible[parent + 1]
        visible[node + 1, node + 1] = True
    return visible
