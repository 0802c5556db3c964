"""Hardware-aware draft budgets: how many tree nodes to verify per step on this device.

Verification is not free on a CPU (DESIGN.md §4): the forward cost grows with the number of
query tokens, slowly up to ~8 and fast after 16 in bf16, and already at 4 in fp32. We measure
that cost curve once per (model, device, dtype, threads), cache it, and each step pick the tree
size that maximises expected tokens per second given the acceptance seen so far.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from daemon.engine.atomic import write_atomically
from daemon.engine.forward import ForwardPort
from daemon.engine.registry import cache_root
from daemon.engine.tree import EMPTY_TREE, Candidate, DraftTree, ancestor_matrix, build_tree

__all__ = ["AdaptiveBudget", "BudgetPolicy", "CostCurve", "FixedBudget", "cost_curve"]

logger = logging.getLogger(__name__)

# 17, 33 and 49 too: with AMX a product takes rows 16 at a time, and a 17th row costs a whole
# second block (~2 ms of a 40 ms step measured here), a step the interpolation from 16 to 24
# never showed: real 16-19-row steps ran 14% above the curve, and trees chose them too often
SIZES = (1, 2, 4, 8, 12, 16, 17, 24, 32, 33, 48, 49, 64, 65)
# Repository-level prompts are 1-2k tokens; at 512 tokens of context and without a tree mask the
# curve was ~20% too flat (32 nodes: 1.38x a 1-token step measured there, 1.67x in real steps at
# ~1,600 tokens), which made the adaptive budget pick trees too big.
_CONTEXT = 1024
# bump when the measurement (or the attention it times) changes, so cached curves are re-measured
_CURVE_VERSION = 6
_TABLE_ROWS = 4 * SIZES[-1]


class BudgetPolicy(Protocol):
    """How a step's candidates become the tree it verifies, and what it learns from the result
    (the stacked-weight budgets here; expected-acceptance trees in scoring.py)."""

    def build(self, candidates: Sequence[Candidate], depth: int, rows: int = 1) -> DraftTree:
        """The tree to verify this step, at most `depth` deep, in a forward that carries
        `rows` rows besides it (the root; for a drafted prefill, every prompt row it adds):
        the more rows a forward pays for anyway, the cheaper a draft row is beside them."""

    def record(self, tree: DraftTree, path: Sequence[int]) -> None:
        """The last step verified `tree` and accepted the nodes on `path`."""


@dataclass(frozen=True)
class CostCurve:
    """Forward milliseconds for q query tokens, at a mid-sized context."""

    sizes: tuple[int, ...]
    ms: tuple[float, ...]

    def cost(self, tokens: int) -> float:
        """Linear interpolation between measured sizes (clamped at the ends)."""
        table = self._costs
        return table[tokens] if 0 <= tokens < len(table) else self._interpolated(tokens)

    def least_row_cost(self, tokens: int) -> float:
        """The smallest cost of one more token anywhere past `tokens`: a lower bound on
        (cost(t + k) - cost(t)) / k for every t >= `tokens` (0 or less on a noisy curve)."""
        table = self._least_row_costs
        return table[tokens] if 0 <= tokens < len(table) else self._least_past(tokens)

    # a tree's growth asks for these a few hundred times a step: tables up to a few trees of
    # the largest size, filled by the formulas below (the same values; with the table bins of
    # scoring.cell_of, a tree took 0.61 ms a step instead of 1.0 on a KVM EPYC)
    @cached_property
    def _costs(self) -> tuple[float, ...]:
        return tuple(self._interpolated(t) for t in range(_TABLE_ROWS))

    @cached_property
    def _least_row_costs(self) -> tuple[float, ...]:
        return tuple(self._least_past(t) for t in range(_TABLE_ROWS))

    def _interpolated(self, tokens: int) -> float:
        sizes, ms = self.sizes, self.ms
        if tokens <= sizes[0]:
            return ms[0]
        for i in range(1, len(sizes)):
            if tokens <= sizes[i]:
                fraction = (tokens - sizes[i - 1]) / (sizes[i] - sizes[i - 1])
                return ms[i - 1] + (ms[i] - ms[i - 1]) * fraction
        return ms[-1] * tokens / sizes[-1]

    def _least_past(self, tokens: int) -> float:
        if tokens < self.sizes[0]:
            return 0.0  # the curve is flat below its first size
        return min(slope for end, slope in self._row_costs if end > tokens)

    @cached_property
    def _row_costs(self) -> tuple[tuple[float, float], ...]:
        """(segment end, cost per token) of each segment, then of the tail past the last size."""
        sizes, ms = self.sizes, self.ms
        segments = [
            (float(sizes[i]), (ms[i] - ms[i - 1]) / (sizes[i] - sizes[i - 1]))
            for i in range(1, len(sizes))
        ]
        return (*segments, (math.inf, ms[-1] / sizes[-1]))


class FixedBudget:
    """Always the same tree size (REST uses 64)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget

    def build(self, candidates: Sequence[Candidate], depth: int, rows: int = 1) -> DraftTree:
        return build_tree(candidates, self.budget, depth)

    def record(self, tree: DraftTree, path: Sequence[int]) -> None:
        pass


class AdaptiveBudget:
    """Pick B maximising (1 + E[accepted | B]) / cost(B + rows), rows = 1 in a decode step.

    Acceptance grows roughly with the log of the tree size (wider trees catch more near
    misses), so we model E[accepted | B] = rate * log2(1 + B) and learn `rate` as a running
    average of accepted / log2(1 + drafted) over recent steps.
    """

    CHOICES = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64)

    def __init__(self, curve: CostCurve, rate: float = 0.5, smoothing: float = 0.1) -> None:
        self.curve = curve
        self.rate = rate
        self.smoothing = smoothing

    def choose(self, rows: int = 1) -> int:
        def speed(budget: int) -> float:
            return (1 + self.rate * math.log2(1 + budget)) / self.curve.cost(budget + rows)

        return max(self.CHOICES, key=speed)

    def build(self, candidates: Sequence[Candidate], depth: int, rows: int = 1) -> DraftTree:
        return build_tree(candidates, self.choose(rows), depth)

    def record(self, tree: DraftTree, path: Sequence[int]) -> None:
        self.learn(tree.size, len(path))

    def learn(self, drafted: int, accepted: int) -> None:
        """A tree of `drafted` nodes gave `accepted` tokens."""
        if drafted <= 0:
            return
        observed = accepted / math.log2(1 + drafted)
        self.rate += self.smoothing * (observed - self.rate)


def cost_curve(model: ForwardPort) -> CostCurve:
    """The cached curve for this model, device, precision and thread count; measured if absent."""
    key = f"{model.identity}-v{_CURVE_VERSION}".replace("/", "_")
    path = cache_root() / "costs" / f"{key}.json"
    try:
        data = json.loads(path.read_text())
        return CostCurve(tuple(data["sizes"]), tuple(data["ms"]))
    except (OSError, ValueError, KeyError):
        pass
    curve = measure_cost_curve(model)
    write_atomically(path, json.dumps({"sizes": curve.sizes, "ms": curve.ms}).encode())
    logger.info("cost curve %s: %s", key, dict(zip(curve.sizes, curve.ms, strict=True)))
    return curve


def measure_cost_curve(model: ForwardPort, repeats: int = 3) -> CostCurve:
    """Fastest time of a verification step of q query tokens (a draft tree under its ancestor
    mask, then the greedy pick) after a 1,024-token cache, for each q in SIZES. It runs through
    the forward port, so it times exactly what a decode step runs.

    The sizes take turns round by round and each keeps its fastest round: the curve is cached
    for good, and a process busy beside the first measurement once left a curve whose 2-node
    step cost less than the 1-node one (each size measured in a run of its own, medians)."""
    draw = random.Random(0)
    vocab = model.vocab_size
    cache = model.new_cache()
    model.prefill(cache, [draw.randrange(vocab) for _ in range(_CONTEXT)])
    probes = []
    for size in SIZES:
        tree = _probe_tree(size - 1, vocab, draw)
        probes.append(
            ([draw.randrange(vocab), *tree.tokens], (0, *tree.depths), ancestor_matrix(tree))
        )
    fastest = [math.inf] * len(SIZES)
    for round_ in range(repeats + 1):  # the first round warms every shape up
        for index, (tokens, depths, visible) in enumerate(probes):
            started = time.perf_counter()
            model.verify(cache, tokens, depths, visible)
            elapsed = (time.perf_counter() - started) * 1000
            model.crop(cache, _CONTEXT)  # drop what this probe appended
            if round_:
                fastest[index] = min(fastest[index], elapsed)
    return CostCurve(SIZES, tuple(round(t, 2) for t in fastest))


def _probe_tree(nodes: int, vocab: int, draw: random.Random) -> DraftTree:
    """A tree of `nodes` nodes shaped like real drafts: a few branches, 8 deep."""
    if nodes <= 0:
        return EMPTY_TREE
    branches = max(1, math.ceil(nodes / 8))
    rows = [tuple(draw.randrange(vocab) for _ in range(8)) for _ in range(branches)]
    return build_tree([Candidate(row) for row in rows], nodes, 8)
