"""CodeSwift drafting: several sources merged into one weighted candidate set.

Sources (paper §3, DESIGN.md §1):
  * the general datastore (common code) and the project datastore (the open workspace),
    searched for the longest suffix of the context;
  * the context itself (prompt + output so far), like prompt lookup;
  * the model's own earlier output (the LLM-preference cache), kept across requests, so drafts
    follow what this model actually writes;
  * the model's argmax after every row it verified, kept under the row's last tokens
    (recycled from earlier verifies, rejected branches included);
  * the context's earlier code of the same shape with one name changed (analogies).
Retrieval timing skips the datastores where they rarely pay, and a small cache reuses the
datastore answer for a matched context seen before.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from daemon.engine.datastore import SuffixIndex
from daemon.engine.drafters import ContextLookupDrafter, HistoryDrafter, SuccessorTable
from daemon.engine.plan import DecodePlan
from daemon.engine.tree import Candidate

__all__ = [
    "DraftSources",
    "DraftStats",
    "PlanMemory",
    "RetrievalCache",
    "RetrievalDrafter",
    "RetrievalTuning",
    "TimingStats",
]

_KEY_TOKENS = 16  # SuffixIndex.longest_match reads at most this many context tokens
# document-order context a draft looks up: longer than any match is followed (drafters' 32)
_QUERY_TOKENS = 40
_TAIL_TOKENS = 4  # context kept for the successor table's keys (at most 3 tokens long)
_LEAD_TOKENS = 16  # context kept before an output in the history: as far as a match is scored
_CACHE_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class RetrievalTuning:
    """Constants of the datastore search and of retrieval timing (the plan says what runs)."""

    # per store and step; replaying 20 functions each of click, urllib3 and rich, 8, 16 and 32
    # drafted alike (tokens per forward within 1.5%) and 8 builds the tree in ~20% less time
    max_continuations: int = 8
    skip_after_misses: int = 4  # retrieval timing: back off after this many fruitless searches
    backoff_steps: int = 3
    # retrieval timing: a context ending (e.g. after whitespace) whose store drafts were
    # accepted less often than this, over at least `min_evidence` steps, skips retrieval,
    # except every `explore_every`-th time so the estimate can recover
    min_hit_rate: float = 0.1
    min_evidence: int = 50
    explore_every: int = 10
    # search the stores on two threads (paper idea 3); off: the searches are too short for it
    # (repo:click p50 0.36 ms one after another, 0.59 ms on two threads; docs/bench/click.json)
    parallel: bool = False

    def __post_init__(self) -> None:
        if self.max_continuations < 1:
            raise ValueError("max_continuations must be at least 1")


class TimingStats:
    """Store-hit counts by context ending, kept across requests: what retrieval timing uses.

    Measured on HumanEval (bf16), store drafts were accepted after 42% of the steps that
    followed a whitespace-only token and after 24% of the others, so a fixed "skip after
    whitespace" rule was wrong there; the decision is therefore taken from these counts.
    """

    def __init__(self) -> None:
        self.steps: dict[str, int] = {}
        self.hits: dict[str, int] = {}
        self._skipped: dict[str, int] = {}

    def record(self, kind: str, hit: bool) -> None:
        self.steps[kind] = self.steps.get(kind, 0) + 1
        self.hits[kind] = self.hits.get(kind, 0) + hit

    def rate(self, kind: str) -> float | None:
        steps = self.steps.get(kind, 0)
        return self.hits.get(kind, 0) / steps if steps else None

    def worth_retrieving(self, kind: str, tuning: RetrievalTuning) -> bool:
        rate = self.rate(kind)
        if rate is None or self.steps[kind] < tuning.min_evidence or rate >= tuning.min_hit_rate:
            return True
        skipped = self._skipped.get(kind, 0) + 1
        self._skipped[kind] = skipped
        return skipped % tuning.explore_every == 0


class RetrievalCache:
    """Least-recently-used map from (depth, the context's last 16 tokens) to the stores' answer."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._items: OrderedDict[tuple[int, ...], list[Candidate]] = OrderedDict()

    def get(self, key: tuple[int, ...]) -> list[Candidate] | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def clear(self) -> None:
        self._items.clear()

    def put(self, key: tuple[int, ...], value: list[Candidate]) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.entries:
            self._items.popitem(last=False)


@dataclass
class PlanMemory:
    """What one plan's drafting keeps from request to request (the engine holds one per plan,
    so ablations never share it): editors ask again around the same code."""

    history: HistoryDrafter = field(default_factory=HistoryDrafter)
    cache: RetrievalCache = field(default_factory=lambda: RetrievalCache(_CACHE_ENTRIES))
    timing: TimingStats = field(default_factory=TimingStats)
    successors: SuccessorTable = field(default_factory=SuccessorTable)


@dataclass(frozen=True)
class DraftSources:
    """The datastores a drafter may search: each used only where its plan says so."""

    general: SuffixIndex | None = None
    project: tuple[SuffixIndex, ...] = ()  # the project store's search layers
    expressions: tuple[SuffixIndex, ...] = ()
    whitespace_ids: frozenset[int] = frozenset()  # tokens that decode to whitespace only
    # fill-in-the-middle markers (prefix, suffix, middle): drafts look up the text before the
    # hole and after the middle marker as one, in document order
    fim_ids: tuple[int, int, int] | None = None


@dataclass
class DraftStats:
    """One request's datastore figures, for reports: search times, and per context ending the
    steps with store drafts and those where the model accepted at least one store token."""

    search_ms: list[float] = field(default_factory=list)
    store_steps: dict[str, int] = field(default_factory=dict)
    store_hits: dict[str, int] = field(default_factory=dict)


class RetrievalDrafter:
    """Drafter over datastores + context + model history, as `plan` says (module docstring)."""

    def __init__(
        self,
        plan: DecodePlan,
        sources: DraftSources,
        memory: PlanMemory | None = None,
        tuning: RetrievalTuning | None = None,
    ) -> None:
        self.plan = plan
        self.tuning = tuning or RetrievalTuning()
        memory = memory or PlanMemory()
        weights = plan.weights
        stores: list[tuple[SuffixIndex, float, str]] = []
        if plan.general and sources.general is not None:
            stores.append((sources.general, weights.general, "general"))
        if plan.project:
            stores += [(layer, weights.project, "project") for layer in sources.project]
        if plan.expressions:
            stores += [(layer, weights.expressions, "expressions") for layer in sources.expressions]
        self.stores = stores
        self.whitespace_ids = sources.whitespace_ids
        # one index of the context serves its exact lookups and its analogies
        self.context = ContextLookupDrafter() if plan.context or plan.analogy else None
        self.history = memory.history if plan.history else None
        self.successors = memory.successors if plan.recycled else None
        self._cache = memory.cache if plan.cache else None
        self.timing = memory.timing
        self._pool = ThreadPoolExecutor(max_workers=2) if self.tuning.parallel else None
        self._misses = 0
        self._backoff = 0
        self._last_from_store: set[tuple[int, ...]] = set()
        self._last_kind = "other"
        self.stats = DraftStats()
        self.fim_ids = sources.fim_ids
        self._seam: tuple[int, int] | None = None  # (hole, middle marker) positions
        self._lead: list[int] = []  # the request's context end, in document order
        self._tail: Sequence[int] = ()

    # -- Drafter protocol -------------------------------------------------------------------

    def begin(self, prompt: Sequence[int]) -> None:
        if self.context is not None:
            self.context.begin(prompt)
        self._seam = _seam(prompt, self.fim_ids)
        self._lead = list(self._query(prompt)[-_LEAD_TOKENS:])
        self._misses = self._backoff = 0
        self.stats = DraftStats()

    def observe(
        self,
        accepted: Sequence[int],
        rows: Sequence[int] = (),
        predicted: Sequence[int] = (),
        parents: Sequence[int] = (),
    ) -> None:
        if self.successors is not None and rows:
            self.successors.learn(self._tail, rows, parents, predicted)
        if self._last_from_store:
            hit = len(accepted) > 1 and any(c[0] == accepted[0] for c in self._last_from_store)
            kind = self._last_kind
            self.stats.store_steps[kind] = self.stats.store_steps.get(kind, 0) + 1
            self.stats.store_hits[kind] = self.stats.store_hits.get(kind, 0) + hit
            self.timing.record(kind, hit)
            self._misses = 0 if hit else self._misses + 1
            if self._misses >= self.tuning.skip_after_misses:
                self._backoff, self._misses = self.tuning.backoff_steps, 0

    def finish(self, generated: Sequence[int]) -> None:
        """The request is over: remember what the model wrote, for later requests."""
        if self.history is not None and generated:
            self.history.remember(generated, self._lead)

    def propose(self, context: Sequence[int], depth: int) -> list[Candidate]:
        weights = self.plan.weights
        candidates: list[Candidate] = []
        query = self._query(context)
        self._tail = query[-_TAIL_TOKENS:]  # what the next verify's rows follow
        if self.context is not None and self.plan.context:
            found = self.context.propose(context, depth, query)
            candidates += _tagged(self._unmarked(found), weights.context, "context")
        if self.context is not None and self.plan.analogy:
            found = self.context.analogies(context, depth, query)
            candidates += _tagged(self._unmarked(found), weights.analogy, "analogy")
        if self.history is not None:
            candidates += _tagged(self.history.propose(query, depth), weights.history, "history")
        if self.successors is not None:
            found = self.successors.propose(query, depth)
            candidates += _tagged(found, weights.recycled, "recycled")
        self._last_from_store = set()
        self._last_kind = "after_whitespace" if query[-1] in self.whitespace_ids else "other"
        if self._should_retrieve():
            found = self._retrieve(query, depth)
            self._last_from_store = {c.tokens for c in found}
            candidates += found
        return candidates

    def _unmarked(self, found: list[Candidate]) -> list[Candidate]:
        """The prompt's own fill-in-the-middle markers are never drafted."""
        return found if self.fim_ids is None else _before_markers(found, self.fim_ids)

    def _query(self, context: Sequence[int]) -> Sequence[int]:
        """The end of `context` that drafts continue: in a fill-in-the-middle prompt, the text
        before the hole followed by what comes after the middle marker (the line typed so far
        and the output), as the document has them. Right after the marker the context's own
        end is a marker no source holds, and the first tokens would go undrafted."""
        if self._seam is None:
            return context
        hole, middle = self._seam
        written = context[middle + 1 :][-_QUERY_TOKENS:]
        if len(written) >= _QUERY_TOKENS or hole == 0:
            return written or context
        return [*context[max(0, hole - _QUERY_TOKENS) : hole], *written]

    # -- retrieval --------------------------------------------------------------------------

    def _should_retrieve(self) -> bool:
        """Retrieval timing (paper idea 2): skip where the datastores rarely pay."""
        if not self.stores:
            return False
        if not self.plan.timing:
            return True
        if self._backoff > 0:
            self._backoff -= 1
            return False
        return self.timing.worth_retrieving(self._last_kind, self.tuning)

    def _retrieve(self, context: Sequence[int], depth: int) -> list[Candidate]:
        if self._cache is None:
            return self.search(context, depth)
        key = (depth, *context[-_KEY_TOKENS:])
        found = self._cache.get(key)
        if found is None:
            found = self.search(context, depth)
            self._cache.put(key, found)
        return found

    def search(self, context: Sequence[int], depth: int) -> list[Candidate]:
        """Every store's continuations of the longest suffix of `context` it holds, weighted;
        no cache, no timing (the bench times this)."""
        started = time.perf_counter()
        if self._pool is not None and len(self.stores) > 1:
            futures = [
                self._pool.submit(self._search, *store, context, depth) for store in self.stores
            ]
            found = [c for f in futures for c in f.result()]
        else:
            found = [c for store in self.stores for c in self._search(*store, context, depth)]
        self.stats.search_ms.append((time.perf_counter() - started) * 1000)
        return found

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _search(
        self, store: SuffixIndex, weight: float, source: str, context: Sequence[int], depth: int
    ) -> list[Candidate]:
        match = store.longest_match(context)
        if match is None:
            return []
        # longer matches are better evidence; spread the weight over the occurrences
        share = weight * match.length / max(match.count, 1)
        continuations = store.continuations(match, depth, self.tuning.max_continuations)
        return [Candidate(tokens, share, source, match.length) for tokens in continuations]


def _seam(prompt: Sequence[int], fim_ids: tuple[int, int, int] | None) -> tuple[int, int] | None:
    """Positions of the suffix and middle markers of a fill-in-the-middle `prompt`."""
    if fim_ids is None:
        return None
    _, hole_id, middle_id = fim_ids
    for middle in range(len(prompt) - 1, -1, -1):
        if prompt[middle] == middle_id:
            for hole in range(middle - 1, -1, -1):
                if prompt[hole] == hole_id:
                    return hole, middle
            return None
    return None


def _before_markers(candidates: list[Candidate], markers: tuple[int, ...]) -> list[Candidate]:
    """Candidates cut before the first marker they hold; those left empty dropped."""
    kept = []
    for candidate in candidates:
        tokens = candidate.tokens
        cut = next((i for i, token in enumerate(tokens) if token in markers), len(tokens))
        if cut == len(tokens):
            kept.append(candidate)
        elif cut:
            kept.append(
                Candidate(tokens[:cut], candidate.weight, candidate.source, candidate.match)
            )
    return kept


def _tagged(candidates: list[Candidate], weight: float, source: str) -> list[Candidate]:
    return [Candidate(c.tokens, c.weight * weight, source, c.match) for c in candidates]
