"""How long the datastore searches take, one store after another or on two threads."""

from __future__ import annotations

from collections.abc import Sequence

from daemon.engine.datastore import SuffixIndex
from daemon.engine.plan import DecodePlan
from daemon.engine.retrieval import DraftSources, RetrievalDrafter, RetrievalTuning

__all__ = ["retrieval_latency"]

_STORES_ONLY = DecodePlan("stores", general=True, project=True)


def retrieval_latency(
    general: SuffixIndex | None,
    project: Sequence[SuffixIndex],
    contexts: Sequence[Sequence[int]],
    parallel: bool,
    depth: int = _STORES_ONLY.max_depth,
) -> dict[str, float]:
    """Datastore search time per step over `contexts` (no cache, no timing policy)."""
    sources = DraftSources(general=general, project=tuple(project))
    drafter = RetrievalDrafter(_STORES_ONLY, sources, tuning=RetrievalTuning(parallel=parallel))
    for context in contexts:
        drafter.search(context, depth)
    drafter.close()
    samples = sorted(drafter.stats.search_ms)
    if not samples:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "searches": 0}
    return {
        "p50_ms": round(samples[len(samples) // 2], 4),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 4),
        "searches": len(samples),
    }
