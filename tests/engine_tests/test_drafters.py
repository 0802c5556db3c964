"""ContextLookupDrafter against a brute-force search of the same rule."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.engine.drafters import ContextLookupDrafter


def brute_force(context: list[int], budget: int, drafter: ContextLookupDrafter) -> list[tuple]:
    """The longest n-gram's 32 newest occurrences by how far their match reaches (newest first
    among equals), then each shorter n-gram's newest first."""
    found: list[tuple] = []
    seen: set[int] = set()
    length = len(context)
    longest = min(drafter.max_ngram, length)
    for n in range(longest, drafter.min_ngram - 1, -1):
        suffix = context[length - n :]
        level = []
        for start in range(length - 1, n - 1, -1):
            if context[start - n : start] == suffix and start not in seen:
                seen.add(start)
                match = n
                while (
                    match < min(32, start, length)
                    and context[start - match - 1] == context[length - match - 1]
                ):
                    match += 1
                level.append((match, start))
        if n == longest:
            level = sorted(level[:32], key=lambda item: -item[0])
        for _, start in level:
            found.append((tuple(context[start : start + budget]), float(n)))
            if len(found) >= drafter.max_matches:
                return found
    return found


tokens = st.lists(st.integers(0, 5), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(prompt=tokens, grown=st.lists(tokens, max_size=4), budget=st.integers(1, 12))
def test_incremental_index_matches_brute_force(prompt, grown, budget) -> None:  # type: ignore[no-untyped-def]
    drafter = ContextLookupDrafter(max_ngram=3, min_ngram=1, max_matches=6)
    drafter.begin(prompt)
    context = list(prompt)
    for extra in [[], *grown]:
        context += extra
        got = [(c.tokens, c.weight) for c in drafter.propose(context, budget)]
        assert got == brute_force(context, budget, drafter)


def test_the_occurrence_whose_match_reaches_furthest_comes_first() -> None:
    drafter = ContextLookupDrafter(max_ngram=2, max_matches=1)
    # `5 1 2` occurs early, then `7 1 2` twice more recently: the query ends with `5 1 2`
    context = [5, 1, 2, 3, 9, 7, 1, 2, 4, 7, 1, 2, 4, 5, 1, 2]
    drafter.begin(context)
    assert drafter.propose(context, 2)[0].tokens == (3, 9)


def test_a_different_context_restarts_the_index() -> None:
    drafter = ContextLookupDrafter()
    drafter.begin([1, 2, 3, 1, 2])
    assert drafter.propose([1, 2, 3, 1, 2], 4)[0].tokens == (3, 1, 2)
    assert drafter.propose([9, 8, 9], 4)[0].tokens == (8, 9)
