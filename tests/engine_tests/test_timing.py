"""Retrieval timing decides from measured store-hit rates, and keeps exploring."""

from __future__ import annotations

from daemon.engine.retrieval import RetrievalTuning, TimingStats

CONFIG = RetrievalTuning(min_hit_rate=0.1, min_evidence=50, explore_every=10)


def test_retrieves_until_there_is_evidence() -> None:
    timing = TimingStats()
    for _ in range(49):
        timing.record("after_whitespace", False)
    assert timing.worth_retrieving("after_whitespace", CONFIG)
    assert timing.worth_retrieving("other", CONFIG)  # never seen


def test_skips_a_context_ending_that_rarely_pays_but_explores() -> None:
    timing = TimingStats()
    for step in range(100):
        timing.record("after_whitespace", step % 20 == 0)  # 5% hit rate
        timing.record("other", step % 3 == 0)  # 34% hit rate
    decisions = [timing.worth_retrieving("after_whitespace", CONFIG) for _ in range(30)]
    assert decisions.count(True) == 3  # every 10th time, to keep the estimate fresh
    assert all(timing.worth_retrieving("other", CONFIG) for _ in range(30))
    for _ in range(200):
        timing.record("after_whitespace", True)  # it started paying: retrieval resumes
    assert timing.worth_retrieving("after_whitespace", CONFIG)
