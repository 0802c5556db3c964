"""Scored draft trees: calibrated estimates, best-first growth, cuts on the cost curve."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from daemon.engine.budget import CostCurve
from daemon.engine.drafters import SuccessorTable
from daemon.engine.scoring import Calibration, ScoredTrees, cell_of
from daemon.engine.tree import Candidate, ancestor_matrix

FLAT = CostCurve((1, 64), (10.0, 10.5))  # rows nearly free: wide trees pay
STEEP = CostCurve((1, 2, 64), (10.0, 20.0, 640.0))  # every row doubles the step


def _teach(
    calibration: Calibration, policy: ScoredTrees, rates: dict[str, float], match: int = 3
) -> None:
    """Verify 200 one-candidate trees of each source in `rates`, taking turns as the sources
    of real steps do, each accepted with the source's frequency."""
    for n in range(200):
        for source, rate in rates.items():
            tree = policy.build([Candidate((n % 7, 1, 2), 1.0, source, match)], depth=3)
            accepted = n % 10 < rate * 10
            policy.record(tree, list(range(tree.size)) if accepted else [])


def test_estimates_follow_what_was_accepted() -> None:
    calibration = Calibration()
    policy = ScoredTrees(FLAT, calibration)
    _teach(calibration, policy, {"good": 0.9, "bad": 0.1})
    book = calibration.reliability.as_dict()["per_source"]
    assert book["good"]["observed"] > 0.8 and book["bad"]["observed"] < 0.3  # type: ignore[index]
    good = policy.build([Candidate((5, 6, 7), 1.0, "good", 3)], depth=3)
    bad = policy.build([Candidate((5, 6, 7), 1.0, "bad", 3)], depth=3)
    assert good.estimates[0] > 0.7 and bad.estimates[0] < 0.3
    # an unseen source starts from the prior of everything seen, not from zero
    new = policy.build([Candidate((5,), 1.0, "new", 3)], depth=3)
    assert 0.2 < new.estimates[0] < 0.8


def test_a_cell_never_seen_is_judged_by_what_its_parts_taught() -> None:
    """Only matches of 3 tokens were ever verified: a source's match of 10 starts from what
    its source taught, not from an uninformed 0.5."""
    calibration = Calibration()
    policy = ScoredTrees(FLAT, calibration)
    _teach(calibration, policy, {"good": 0.9, "bad": 0.1}, match=3)
    good = calibration.estimate(cell_of({"good": 1.0}, 1.0, 1.0, 10, 1))
    bad = calibration.estimate(cell_of({"bad": 1.0}, 1.0, 1.0, 10, 1))
    assert good > 0.7 and bad < 0.4  # 0.5 for both, were the cell judged on its own


def test_a_steep_curve_verifies_only_what_pays() -> None:
    calibration = Calibration()
    wide = ScoredTrees(FLAT, calibration)
    _teach(calibration, wide, {"bad": 0.1})
    candidates = [Candidate((t, t + 1, t + 2), 1.0, "bad", 2) for t in range(0, 60, 3)]
    assert wide.build(candidates, depth=3).size > 10  # nearly free rows: take many
    assert ScoredTrees(STEEP, calibration).build(candidates, depth=3).size == 0


def test_a_forward_that_carries_many_rows_anyway_takes_more_draft_rows() -> None:
    """A warm editor request prefills the few dozen tokens typed since the last one; a draft
    row beside them costs a fraction of what it adds to a one-row step."""
    calibration = Calibration()
    curve = CostCurve((1, 2, 8, 32, 64), (10.0, 13.0, 30.0, 80.0, 150.0))
    policy = ScoredTrees(curve, calibration)
    _teach(calibration, policy, {"fair": 0.5})
    candidates = [Candidate((t, t + 1, t + 2), 1.0, "fair", 2) for t in range(0, 30, 3)]
    alone = policy.build(candidates, depth=3).size
    beside = policy.build(candidates, depth=3, rows=32).size
    assert beside > alone


def test_trees_are_ancestor_closed_and_best_first() -> None:
    calibration = Calibration()
    policy = ScoredTrees(CostCurve((1, 8, 64), (10.0, 12.0, 40.0)), calibration, cap=8)
    candidates = [
        Candidate((1, 2, 3, 4, 5, 6), 4.0, "context", 4),
        Candidate((1, 2, 9), 1.0, "general", 2),
        Candidate((7, 8), 1.0, "general", 2),
    ]
    tree = policy.build(candidates, depth=6)
    assert 0 < tree.size <= 8
    for node, parent in enumerate(tree.parents):
        assert parent < node  # parents first
        assert tree.depths[node] == (tree.depths[parent] + 1 if parent >= 0 else 1)
    assert ancestor_matrix(tree).shape == (tree.size + 1, tree.size + 1)
    assert tree.tokens[0] == 1  # the heaviest, agreed-on first token leads


@dataclass
class _Node:
    """A trie node as `_every_node_ranked` collects it."""

    rank: tuple[int, int]  # (first candidate through it, depth): the eager trie's order
    weight: float = 0.0
    shares: dict[str, float] = field(default_factory=dict)
    match: int = 0


def _every_node_ranked(
    policy: ScoredTrees, candidates: list[Candidate], depth: int, rows: int
) -> list[tuple[tuple[int, ...], float]]:
    """What `build` must keep, found the slow way: every trie node (as its token path) with
    its calibrated path probability, all sorted as best-first growth takes them (optimistic
    path probability, then the eager trie's order: first candidate through it, depth), cut
    after `cap` nodes and where expected tokens per unit of cost peak."""
    nodes: dict[tuple[int, ...], _Node] = {}
    for index, candidate in enumerate(candidates):
        for d in range(1, min(depth, len(candidate.tokens)) + 1):
            node = nodes.setdefault(candidate.tokens[:d], _Node(rank=(index, d)))
            node.weight += candidate.weight
            node.shares[candidate.source] = (
                node.shares.get(candidate.source, 0.0) + candidate.weight
            )
            node.match = max(node.match, candidate.match)
    root = sum(c.weight for c in candidates if c.tokens[:depth])
    paths: dict[tuple[int, ...], tuple[float, float]] = {(): (1.0, 1.0)}
    for path in sorted(nodes, key=len):
        node = nodes[path]
        above = nodes[path[:-1]].weight if len(path) > 1 else root
        cell = cell_of(node.shares, node.weight, above, node.match, len(path))
        estimate, hope = policy.calibration.estimates(cell)
        paths[path] = (paths[path[:-1]][0] * estimate, paths[path[:-1]][1] * hope)
    grown = sorted(nodes, key=lambda p: (-paths[p][1], nodes[p].rank))[: policy.cap]
    kept = max(
        policy._pays([paths[p][0] for p in grown], rows),
        min(2, policy._pays([paths[p][1] for p in grown], rows)),
    )
    return sorted(((p, paths[p][0]) for p in grown[:kept]), key=lambda x: len(x[0]))


def test_lazy_growth_that_stops_early_keeps_what_growing_everything_keeps() -> None:
    draw = random.Random(3)
    calibration = Calibration()
    curve = CostCurve((1, 2, 4, 8, 16, 32, 64), (20.0, 21.0, 22.0, 25.0, 31.0, 45.0, 80.0))
    policy = ScoredTrees(curve, calibration, cap=24)
    sources = ("context", "project", "general", "history")
    for trial in range(300):
        prefix = tuple(draw.randrange(4) for _ in range(draw.randrange(3)))
        alike = trial % 2  # equal evidence everywhere: ties, which the trie's order breaks
        candidates = [
            Candidate(
                prefix + tuple(draw.randrange(5) for _ in range(draw.randrange(1, 9))),
                1.0 if alike else draw.choice((1.0, 2.0, 3.0)),
                "context" if alike else draw.choice(sources),
                3 if alike else draw.randrange(1, 12),
            )
            for _ in range(draw.randrange(1, 12))
        ]
        depth, rows = draw.randrange(1, 10), draw.choice((1, 1, 5))
        policy.cap = draw.choice((3, 6, 24))
        tree = policy.build(candidates, depth, rows)
        paths: list[tuple[int, ...]] = []
        for node, parent in enumerate(tree.parents):
            paths.append((*(paths[parent] if parent >= 0 else ()), tree.tokens[node]))
        expected = _every_node_ranked(policy, candidates, depth, rows)
        assert sorted(paths) == sorted(p for p, _ in expected), trial
        # teach the calibration something, so that later trials see uneven estimates
        path, slot = [], 0
        while tree.children[slot] and draw.random() < 0.7:
            path.append(node := draw.choice(sorted(tree.children[slot].values())))
            slot = node + 1
        policy.record(tree, path)


def test_recording_counts_only_nodes_whose_parent_was_accepted() -> None:
    calibration = Calibration()
    policy = ScoredTrees(FLAT, calibration)
    tree = policy.build([Candidate((1, 2, 3), 1.0, "context", 3)], depth=3)
    assert tree.size == 3
    policy.record(tree, [])  # the first token was rejected: its children were never tried
    book = calibration.reliability
    assert book.drafted["context"] == 3 and book.reached["context"] == 1
    assert book.accepted.get("context", 0) == 0


def test_successor_table_drafts_what_the_model_predicted_on_a_rejected_branch() -> None:
    table = SuccessorTable(order=2)
    # root 10 after 5; nodes 11 (under the root), 12 (under 11), 30 (under the root, rejected)
    table.learn([5, 10], [10, 11, 12, 30], [-1, 0, -1], [11, 12, 13, 31])
    # a context that later ends like the rejected branch gets the model's answer there
    proposed = table.propose([7, 10, 30], depth=3)
    assert [(c.tokens, c.match) for c in proposed] == [((31,), 2)]
    assert {c.source for c in proposed} == {"recycled"}
    # the accepted path chains along the longest keys known
    assert [c.tokens for c in table.propose([1, 10], depth=3)] == [(11, 12, 13)]
    assert table.propose([99], depth=3) == []


def test_successor_table_keeps_the_newest_answer_and_forgets_the_oldest_keys() -> None:
    table = SuccessorTable(order=1, max_keys=4)
    table.learn([1], [1], [], [2])
    table.learn([1], [1], [], [3])  # a newer answer after the same key replaces the older
    assert table.propose([1], depth=1)[0].tokens == (3,)
    table.learn([2], [2, 5, 6, 7], [-1, 0, 1], [5, 6, 7, -1])  # -1: not known, not kept
    assert table.propose([7], depth=1) == []
    assert table.propose([1], depth=1)[0].tokens == (3,)
    table.learn([8], [8], [], [9])  # a fifth key: the oldest half goes
    assert table.propose([1], depth=1) == [] and table.propose([8], depth=1)[0].tokens == (9,)


def test_cell_bins_follow_their_edges() -> None:
    """Match and depth bins are looked up in tables: the first edge a value reaches, as a
    search over the edges gives, for values inside and past the tables."""
    from daemon.engine.scoring import _DEPTH_BINS, _MATCH_BINS

    def first(edges: tuple[int, ...], value: int) -> int:
        return next(i for i, edge in enumerate(edges) if value >= edge)

    for match in (0, 1, 2, 3, 5, 9, 10, 15, 16, 17, 40):
        for depth in (1, 2, 3, 5, 6, 8, 9, 10, 30):
            cell = cell_of({"context": 2.0, "project": 1.0}, 3.0, 4.0, match, depth)
            assert cell == ("context", first(_MATCH_BINS, match), 1, 2, first(_DEPTH_BINS, depth))
    shares = [cell_of({"s": w}, w, 1.0, 1, 1)[2] for w in (1.0, 0.9, 0.89, 0.6, 0.3, 0.29, 0.0)]
    assert shares == [0, 0, 1, 1, 2, 3, 3]
    assert cell_of({"a": 1.0, "b": 1.0}, 2.0, 0.0, 1, 1)[0] == "a"  # ties: the first source
