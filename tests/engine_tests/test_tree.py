"""Draft trie construction, pruning, masks and greedy walks."""

from __future__ import annotations

import numpy as np
import torch

from daemon.engine.torch_forward import tree_attention_mask
from daemon.engine.tree import Candidate, ancestor_matrix, build_tree


def test_shared_prefixes_merge_and_weights_add() -> None:
    tree = build_tree([Candidate((1, 2, 3)), Candidate((1, 2, 4)), Candidate((5,))], 10, 10)
    assert tree.size == 5
    assert tree.tokens[0] == 1  # weight 2 beats token 5's weight 1 at depth 1
    paths = {tuple(tree.tokens[n] for n in _path_to(tree, node)) for node in range(tree.size)}
    assert paths == {(1,), (5,), (1, 2), (1, 2, 3), (1, 2, 4)}


def test_budget_keeps_heaviest_nodes_and_their_ancestors() -> None:
    candidates = [Candidate((1, 2, 3, 4)), Candidate((1, 2, 5)), Candidate((7, 8), weight=1.5)]
    tree = build_tree(candidates, budget=3, max_depth=10)
    assert tree.tokens == (1, 7, 2)
    for node, parent in enumerate(tree.parents):
        assert parent < node  # parents come first, so every kept node's ancestors are kept


def test_max_depth_and_empty_inputs() -> None:
    assert build_tree([Candidate((1, 2, 3))], 10, max_depth=2).tokens == (1, 2)
    assert build_tree([], 10, 10).size == 0
    assert build_tree([Candidate(())], 10, 10).size == 0
    assert build_tree([Candidate((1,))], 0, 10).size == 0


def test_walk_follows_the_models_argmax() -> None:
    tree = build_tree([Candidate((1, 2, 3)), Candidate((1, 9)), Candidate((4,))], 10, 10)
    predicted = [0] * (tree.size + 1)
    predicted[0] = 1  # after the root the model says 1
    one = tree.children[0][1]
    predicted[one + 1] = 9  # after 1 it says 9
    nine = tree.children[one + 1][9]
    predicted[nine + 1] = 5  # after 9 it says 5: not in the tree, so 5 is the bonus token
    assert tree.walk(predicted) == [one, nine]
    predicted[0] = 8
    assert tree.walk(predicted) == []


def test_mask_shows_ancestors_only() -> None:
    tree = build_tree([Candidate((1, 2)), Candidate((3,))], 10, 10)
    visible = ancestor_matrix(tree)
    assert visible[:, 0].all()  # every node sees the root
    for node in range(tree.size):
        seen = {j - 1 for j in np.flatnonzero(visible[node + 1]) if j > 0}
        assert seen == set(_path_to(tree, node))
    mask = tree_attention_mask(
        ancestor_matrix(tree), past_len=5, dtype=torch.float32, device=torch.device("cpu")
    )
    assert mask.shape == (1, 1, tree.size + 1, 5 + tree.size + 1)
    assert (mask[0, 0, :, :5] == 0).all()  # the past is fully visible
    assert ((mask[0, 0, :, 5:] == 0).numpy() == visible).all()


def _path_to(tree, node: int) -> list[int]:  # type: ignore[no-untyped-def]
    path = []
    while node >= 0:
        path.append(node)
        node = tree.parents[node]
    return path[::-1]
