"""Draft trees ranked by expected acceptance, not stacked by weight.

Every trie node gets an estimate of P(the model accepts it | it accepts its parent). A node's
cell is its evidence: the source that put the most weight on it, the longest match behind it,
its share of its parent's weight, whether several sources agree, and its depth. The estimate
is a logistic model over the cell's parts and the pairs of them that interact, learnt online
from every node verified with its parent accepted: a cell seen rarely or never is judged by
what its parts taught elsewhere (a long match of a source, a depth in a chain). It replaced
a table of counts per cell backed off to coarser cells when sparse: replaying 20 functions
each of click, requests, urllib3 and rich, +2.9, +2.6, +3.0 and 0.0% modelled decode speed
and +4.5 to +8% tokens per forward (the table's cells were too sparse to tell a chain that
keeps going from one that stops; finer cells only made them sparser).

The tree then grows best first by path probability (the product of estimates from the root,
each raised by an exploration bonus that fades with the cell's evidence), and keeps the prefix
of that order that maximises expected tokens per second on the running backend's cost curve:
(1 + sum of kept calibrated path probabilities) / cost(kept + 1). Deeper, wider or
weaker drafts are verified only where they pay for their rows (the idea of SuffixDecoding's
expected-accepted-tokens score, arXiv 2411.04975, with our measured cost curve).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from daemon.engine.budget import CostCurve
from daemon.engine.tree import EMPTY_TREE, Candidate, DraftTree, tree_of

__all__ = ["Calibration", "Reliability", "ScoredTrees", "cell_of"]

_SHARE_BINS = (0.9, 0.6, 0.3, 0.0)
_MATCH_BINS = (16, 10, 6, 4, 3, 2, 1, 0)  # matched context tokens, lower edges, longest first
# a node's depth, lower edges, deepest first: given its parent, a deep node of a chain is
# accepted more often than a shallow one (the chain has proved itself); six bins instead of
# three gave 0.2-1.3% more modelled speed in the replay of click, requests, urllib3 and rich
# (tokens per forward -2% to +0.3%: where a deep row does not pay, it is no longer verified)
_DEPTH_BINS = (9, 6, 4, 3, 2, 1)
# per observation, on each of its cell's features: 0.04-0.07 gave the same replay within 1%;
# 0.2 learnt too jumpily (-1 to -3%)
_LEARNING_RATE = 0.05
_LOGIT_BOUND = 30.0
_RELIABILITY_BINS = 10
_EXPLORE = 0.15  # optimism for a cell with no evidence of its own; /sqrt(1 + its evidence)
_EXPLORE_NODES = 2  # at most this many nodes verified on optimism alone


def cell_of(
    shares: dict[str, float], weight: float, above: float, match: int, depth: int
) -> tuple[object, ...]:
    """(source, match, share bin, agreeing sources, depth bucket) of a trie node: `shares` is
    the weight each source put on it, `weight` their sum, `above` its parent's weight."""
    source = max(shares, key=shares.__getitem__)
    share = weight / above if above > 0 else 0.0
    high, middle, low = _SHARE_BINS[:3]  # the last edge, 0, takes every other share
    share_bin = 0 if share >= high else 1 if share >= middle else 2 if share >= low else 3
    return (
        source,
        _MATCH_BIN[min(match, _MATCH_BINS[0])] if match >= 0 else _bin(_MATCH_BINS, match),
        share_bin,
        min(len(shares), 2),
        _DEPTH_BIN[min(depth, _DEPTH_BINS[0])] if depth >= 1 else _bin(_DEPTH_BINS, depth),
    )


def _bin(edges: Sequence[int], value: int) -> int:
    """The first of `edges` (lower edges, largest first) that `value` reaches."""
    return next(i for i, edge in enumerate(edges) if value >= edge)


# a tree's growth bins every node it makes: looked up, not searched (the same bins)
_MATCH_BIN = tuple(_bin(_MATCH_BINS, m) for m in range(_MATCH_BINS[0] + 1))
_DEPTH_BIN = (-1, *(_bin(_DEPTH_BINS, d) for d in range(1, _DEPTH_BINS[0] + 1)))  # from 1


class _LazyTrie:
    """The candidates' trie, built only where the best-first growth goes: a node's children
    are made when the node is taken. Of a step's few hundred candidate tokens a tree keeps a
    dozen or two, and making every node cost ~0.6 ms a step (the eager `Trie`).

    Node ids follow creation here; `rank` gives each node the position the eager trie would
    have given it ((first candidate through it, depth): candidates in order, each root to
    leaf), which breaks ties between equal path probabilities as before."""

    def __init__(self, candidates: Sequence[Candidate], max_depth: int) -> None:
        self.candidates = [c for c in candidates if c.tokens[:max_depth]]
        self.max_depth = max_depth
        self.root_weight = 0.0
        for candidate in self.candidates:
            self.root_weight += candidate.weight
        self.tokens: list[int] = []
        self.parents: list[int] = []
        self.depths: list[int] = []
        self.weights: list[float] = []
        self.rank: list[tuple[int, int]] = []
        self._members: list[list[int]] = []  # candidates through each node, in order

    def expand(self, node: int) -> list[tuple[int, tuple[object, ...]]]:
        """Make the children of `node` (-1: the root): [(child, its cell)]."""
        if node < 0:
            members: Sequence[int] = range(len(self.candidates))
            depth, above = 0, self.root_weight
        else:
            members, depth, above = self._members[node], self.depths[node], self.weights[node]
        if depth >= self.max_depth:
            return []
        groups: dict[int, list[int]] = {}
        for index in members:
            tokens = self.candidates[index].tokens
            if depth < len(tokens):
                groups.setdefault(tokens[depth], []).append(index)
        made = []
        for token, through in groups.items():
            child = len(self.tokens)
            weight, match = 0.0, 0
            shares: dict[str, float] = {}
            for index in through:
                candidate = self.candidates[index]
                weight += candidate.weight
                shares[candidate.source] = shares.get(candidate.source, 0.0) + candidate.weight
                match = max(match, candidate.match)
            self.tokens.append(token)
            self.parents.append(node)
            self.depths.append(depth + 1)
            self.weights.append(weight)
            self.rank.append((through[0], depth + 1))
            self._members.append(through)
            made.append((child, cell_of(shares, weight, above, match, depth + 1)))
        return made


@dataclass
class Reliability:
    """Predicted against observed acceptance: per source, and per bin of the estimate."""

    drafted: dict[str, int] = field(default_factory=dict)  # nodes verified, per source
    reached: dict[str, int] = field(default_factory=dict)  # ... whose parent was accepted
    accepted: dict[str, int] = field(default_factory=dict)
    predicted: dict[str, float] = field(default_factory=dict)  # summed estimates of reached
    bins: list[list[float]] = field(  # per estimate bin: [reached, accepted, summed estimate]
        default_factory=lambda: [[0.0, 0.0, 0.0] for _ in range(_RELIABILITY_BINS)]
    )

    def as_dict(self) -> dict[str, object]:
        sources = sorted(self.drafted)
        return {
            "per_source": {
                s: {
                    "drafted": self.drafted.get(s, 0),
                    "reached": self.reached.get(s, 0),
                    "accepted": self.accepted.get(s, 0),
                    "predicted": round(
                        self.predicted.get(s, 0.0) / max(self.reached.get(s, 0), 1), 3
                    ),
                    "observed": round(self.accepted.get(s, 0) / max(self.reached.get(s, 0), 1), 3),
                }
                for s in sources
            },
            "bins": [
                {
                    "range": [i / _RELIABILITY_BINS, (i + 1) / _RELIABILITY_BINS],
                    "reached": int(n),
                    "predicted": round(p / n, 3) if n else None,
                    "observed": round(a / n, 3) if n else None,
                }
                for i, (n, a, p) in enumerate(self.bins)
            ],
        }


class Calibration:
    """Acceptance estimates per cell, learnt online across requests (module docstring). With
    nothing learnt every weight is zero and every estimate 0.5: optimistic, so that a new
    source gets tried."""

    def __init__(self) -> None:
        self._weights: dict[tuple[object, ...], float] = {}  # feature -> its logit term
        self._reached: dict[tuple[object, ...], int] = {}  # cell -> its own evidence
        self.reliability = Reliability()

    def estimate(self, cell: tuple[object, ...]) -> float:
        """The calibrated probability that a node of `cell` is accepted given its parent."""
        weights = self._weights
        logit = sum(weights.get(feature, 0.0) for feature in _features(cell))
        # the steps shrink as an estimate nears 0 or 1, so logits stay small; the bound only
        # keeps exp() finite in a server that learns for weeks
        return 1.0 / (1.0 + math.exp(-max(-_LOGIT_BOUND, min(_LOGIT_BOUND, logit))))

    def optimistic(self, cell: tuple[object, ...]) -> float:
        """The estimate plus a bonus that shrinks as the cell's own evidence grows: a cell
        judged on a few early rejections would otherwise never be verified, and so never
        corrected."""
        return self.estimates(cell)[1]

    def estimates(self, cell: tuple[object, ...]) -> tuple[float, float]:
        """(`estimate`, `optimistic`) of `cell`."""
        p = self.estimate(cell)
        return p, min(1.0, p + _EXPLORE / math.sqrt(1.0 + self._reached.get(cell, 0)))

    def observe(self, cell: tuple[object, ...], estimate: float, accepted: bool) -> None:
        """A node of `cell`, estimated at `estimate` when its tree was built, was verified
        with its parent accepted, and was `accepted` or not: one gradient step of the
        log-likelihood on the estimate as it stands now."""
        step = _LEARNING_RATE * (float(accepted) - self.estimate(cell))
        weights = self._weights
        for feature in _features(cell):
            weights[feature] = weights.get(feature, 0.0) + step
        self._reached[cell] = self._reached.get(cell, 0) + 1
        source = str(cell[0])
        book = self.reliability
        book.reached[source] = book.reached.get(source, 0) + 1
        book.accepted[source] = book.accepted.get(source, 0) + accepted
        book.predicted[source] = book.predicted.get(source, 0.0) + estimate
        row = book.bins[min(int(estimate * _RELIABILITY_BINS), _RELIABILITY_BINS - 1)]
        row[0] += 1
        row[1] += accepted
        row[2] += estimate

    def drafted(self, cell: tuple[object, ...]) -> None:
        source = str(cell[0])
        self.reliability.drafted[source] = self.reliability.drafted.get(source, 0) + 1


def _features(cell: tuple[object, ...]) -> tuple[tuple[object, ...], ...]:
    """The terms a cell's logit sums: each part of its evidence, and the combinations whose
    effect is not the sum of their parts (a source's long matches, a source's deep nodes, a
    long match deep in a chain)."""
    source, match, share, agree, depth = cell
    return (
        ("bias",),
        ("source", source),
        ("share", share),
        ("agree", agree),
        ("depth", depth),
        ("source-match", source, match),
        ("source-share", source, share),
        ("source-depth", source, depth),
        ("match-depth", match, depth),
        ("source-match-depth", source, match, depth),
    )


class ScoredTrees:
    """The tree policy of scored plans: best first by path probability, cut where a node's
    expected tokens stop paying for its row. `cap` bounds the nodes of one tree."""

    def __init__(self, curve: CostCurve, calibration: Calibration, cap: int = 64) -> None:
        self.curve = curve
        self.calibration = calibration
        self.cap = cap

    def build(self, candidates: Sequence[Candidate], depth: int, rows: int = 1) -> DraftTree:
        if depth <= 0 or not candidates:
            return EMPTY_TREE
        trie = _LazyTrie(candidates, depth)
        calibration, curve = self.calibration, self.curve
        cells: dict[int, tuple[object, ...]] = {}
        conditional: dict[int, float] = {}
        expected: dict[int, float] = {-1: 1.0}  # calibrated path probability, root = 1
        # (estimate, optimistic estimate) per cell: a tree's nodes share a few dozen cells
        known: dict[tuple[object, ...], tuple[float, float]] = {}
        heap: list[tuple[float, tuple[int, int], int]] = []

        def grow(node: int, path_hope: float) -> None:
            for child, cell in trie.expand(node):
                cells[child] = cell
                if cell not in known:
                    known[cell] = calibration.estimates(cell)
                conditional[child], hope = known[cell]
                expected[child] = expected[node] * conditional[child]
                heapq.heappush(heap, (-path_hope * hope, trie.rank[child], child))

        grow(-1, 1.0)
        order: list[int] = []
        hopes: list[float] = []  # optimistic path probabilities, in the order grown
        total, best_speed = 1.0, 1.0 / curve.cost(rows)
        while heap and len(order) < self.cap:
            hope = -heap[0][0]
            # every node still to come has a path probability of at most `hope` and costs at
            # least the curve's cheapest row from here on: once that cannot beat the best
            # speed so far, growing on changes neither cut below (see `_pays`)
            if hope <= best_speed * curve.least_row_cost(rows + len(order)):
                break
            _, _, node = heapq.heappop(heap)
            order.append(node)
            hopes.append(hope)
            total += expected[node]
            best_speed = max(best_speed, total / curve.cost(rows + len(order)))
            grow(node, hope)
        # the size is chosen on the calibrated estimates; the optimism only orders the growth
        # and, where it alone would pay, keeps a node or two so sparse cells keep learning
        kept = max(
            self._pays([expected[n] for n in order], rows),
            min(_EXPLORE_NODES, self._pays(hopes, rows)),
        )
        chosen = order[:kept]
        return tree_of(
            trie.tokens,
            trie.parents,
            trie.depths,
            chosen,
            [cells[n] for n in chosen],
            [conditional[n] for n in chosen],
        )

    def _pays(self, paths: Sequence[float], rows: int) -> int:
        """How many of the best-first nodes maximise expected tokens per unit of cost, in a
        forward of `rows` rows besides them."""
        best, best_speed, expected = 0, 1.0 / self.curve.cost(rows), 1.0
        for n, p in enumerate(paths, start=1):
            expected += p
            speed = expected / self.curve.cost(rows + n)
            if speed > best_speed:
                best, best_speed = n, speed
        return best

    def record(self, tree: DraftTree, path: Sequence[int]) -> None:
        """Teach the calibration what the last verified tree's nodes gave."""
        if not tree.cells:
            return
        on_path = set(path)
        for node, parent in enumerate(tree.parents):
            cell = tree.cells[node]
            self.calibration.drafted(cell)
            if parent == -1 or parent in on_path:
                self.calibration.observe(cell, tree.estimates[node], node in on_path)
