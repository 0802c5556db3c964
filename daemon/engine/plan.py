"""How one completion is drafted: a frozen plan, and the plans the product offers by name.

A plan says which draft sources feed the tree, how their candidates are weighed against each
other, whether retrieval timing and the retrieval cache run, and how many nodes a step may
verify. The editor's `method` setting picks one of `PLANS`; the benchmark builds its ablations
as variations of them (daemon/bench/methods.py). The engine keys whatever it learns across
requests (model history, retrieval cache, timing counts, budget estimate) by plan.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AR",
    "CODESWIFT",
    "DEFAULT_PLAN",
    "LOOKUP",
    "MAX_DEPTH",
    "PLANS",
    "REST",
    "DecodePlan",
    "Weights",
]

# The deepest draft token of a step: every source's candidates are cut here, and the tree too.
# 16, not 10, since the analogies and the keyed recycled drafts: replaying 20 functions each of
# click, requests, urllib3 and rich, codeswift's trees gained 1-4% tokens per forward and
# 0-2% modelled decode speed (24 and 32 added no more); lookup's fixed trees held their speed.
MAX_DEPTH = 16


@dataclass(frozen=True, slots=True)
class Weights:
    """How much one candidate of each source counts when the tree keeps its heaviest nodes.

    Replaying ar's outputs on 20 click/requests functions through the drafters (no noise from
    timing): project weight 6 -> 2.69x, 3 -> 2.73x, 1.5 -> 2.76x modelled decode speedup at 16
    nodes; on 8 real click functions 0.5, 2 and 6 were within run-to-run noise of each other.
    """

    general: float = 1.0
    project: float = 3.0
    context: float = 3.0
    history: float = 2.0
    expressions: float = 2.0
    recycled: float = 1.0
    analogy: float = 1.0


@dataclass(frozen=True, slots=True)
class DecodePlan:
    """Sources, weights, timing, cache and budget policy of one way to decode."""

    name: str
    context: bool = False  # the prompt and the output so far (like prompt lookup)
    history: bool = False  # the model's own earlier outputs, across requests
    general: bool = False  # the general datastore (common code)
    project: bool = False  # the workspace's datastore
    expressions: bool = False  # the workspace's recurring expressions, as their own store
    recycled: bool = False  # the model's argmax after earlier verified rows, by their last tokens
    # the context's earlier code of the same shape with one name changed (drafters.py)
    analogy: bool = False
    # trees grown by calibrated acceptance and cut on the cost curve (scoring.py); off: the
    # heaviest nodes by stacked weight, as many as `budget` or the adaptive budget says
    scored: bool = False
    weights: Weights = Weights()
    timing: bool = False  # skip datastore searches where they rarely pay (paper idea 2)
    cache: bool = False  # reuse a datastore answer for a context suffix seen before
    budget: int | None = None  # tree nodes per step (at most, when scored); None: the cost curve
    max_depth: int = MAX_DEPTH  # the deepest draft token, the one cap on every source

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a plan needs a name")
        if self.budget is not None and self.budget < 1:
            raise ValueError(f"plan {self.name}: budget must be at least 1, got {self.budget}")
        if self.max_depth < 1:
            raise ValueError(f"plan {self.name}: max_depth must be at least 1")
        if (self.timing or self.cache) and not self.searches_stores:
            raise ValueError(f"plan {self.name}: timing and cache need a datastore source")

    @property
    def drafts(self) -> bool:
        """False for plain greedy decoding: every step verifies the root token alone."""
        return self.context or self.analogy or self.history or self.recycled or self.searches_stores

    @property
    def searches_stores(self) -> bool:
        return self.general or self.project or self.expressions


AR = DecodePlan("ar")
# the context alone, in our tree: what prompt lookup gives, merged over several occurrences.
# 15 nodes, not 16: with the root that is 16 rows, one pass of an AMX tile unit (16 rows a
# tile); the 17th row cost a second pass, and 15-node trees decoded 1.09x faster than 16-node
# ones on repo:requests (1.06x end to end; 8 nodes: as fast as 15, 32: 0.88x), Intel Xeon.
# Elsewhere one node fewer changes little.
LOOKUP = DecodePlan("lookup", context=True, budget=15)
# REST (He et al. 2024): one general datastore, searched every step, 64-node trees
REST = DecodePlan("rest", general=True, budget=64)
CODESWIFT = DecodePlan(
    "codeswift",
    context=True,
    history=True,
    general=True,
    project=True,
    recycled=True,
    analogy=True,
    scored=True,
    timing=True,
    cache=True,
)
PLANS = {plan.name: plan for plan in (CODESWIFT, LOOKUP, REST, AR)}
DEFAULT_PLAN = CODESWIFT
