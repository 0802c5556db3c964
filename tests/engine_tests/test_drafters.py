"""ContextLookupDrafter against a brute-force search of the same rule."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.engine.drafters import ContextLookupDrafter


def brute_force(context: list[int], budget: int, drafter: ContextLookupDrafter) -> list[tuple]:
    found: list[tuple] = []
    seen: set[int] = set()
    length = len(context)
    for n in range(min(drafter.max_ngram, length), drafter.min_ngram - 1, -1):
        suffix = context[length - n :]
        for start in range(length - 1, n - 1, -1):
            if context[start - n : start] == suffix and start not in seen:
                seen.add(start)
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


def test_a_different_context_restarts_the_index() -> None:
    drafter = ContextLookupDrafter()
    drafter.begin([1, 2, 3, 1, 2])
    assert drafter.propose([1, 2, 3, 1, 2], 4)[0].tokens == (3, 1, 2)
    assert drafter.propose([9, 8, 9], 4)[0].tokens == (8, 9)
