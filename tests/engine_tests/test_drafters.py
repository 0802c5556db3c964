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


def brute_force_analogies(query: list[int], data: list[int], depth: int, limit: int) -> list[tuple]:
    """The rule of `NgramIndex.analogies`, by scanning (n-grams of 1..3, the last 3 tokens)."""
    found_all: list[tuple] = []
    for back in range(1, 4):
        changed = len(query) - back
        if changed < 1:
            break
        new, after = query[changed], query[changed + 1 :]
        found: list[tuple] = []
        for n in range(min(3, changed), 0, -1):
            before = query[changed - n : changed]
            ends = [at for at in range(n, len(data) + 1) if data[at - n : at] == before]
            for at in reversed(ends[-64:]):
                start = at + back
                if start >= len(data) or data[at] == new or data[at + 1 : start] != after:
                    continue
                old = data[at]
                swapped = tuple(new if t == old else t for t in data[start : start + depth])
                found.append((swapped, float(n), n + back - 1))
                if len(found) >= limit:
                    break
            if found:
                break
        found_all += found
    return found_all


@settings(max_examples=300, deadline=None)
@given(prompt=tokens, grown=st.lists(tokens, max_size=3), depth=st.integers(1, 8))
def test_analogies_match_a_scan_of_the_context(prompt, grown, depth) -> None:  # type: ignore[no-untyped-def]
    drafter = ContextLookupDrafter(max_ngram=3, min_ngram=1, max_analogies=3)
    drafter.begin(prompt)
    context = list(prompt)
    for extra in [[], *grown]:
        context += extra
        got = [(c.tokens, c.weight, c.match) for c in drafter.analogies(context, depth)]
        assert got == brute_force_analogies(context, context, depth, 3)


def test_an_analogy_carries_the_new_name_into_the_old_shape() -> None:
    indent, mode, equals, self_, dot, comma, encoding = range(1, 8)
    line = [indent, mode, equals, self_, dot, mode, comma]
    drafter = ContextLookupDrafter()
    # `mode=self.mode,` then a line starting `encoding`: `=self.encoding,` is drafted
    drafted = drafter.analogies([*line, indent, encoding], 5)
    assert (equals, self_, dot, encoding, comma) in [c.tokens for c in drafted]
    # two tokens further the shape still holds: the old name two back, `=self` matched after it
    drafted = drafter.analogies([*line, indent, encoding, equals, self_], 3)
    assert (dot, encoding, comma) in [c.tokens for c in drafted]
    # exact lookup drafts the old name there; the analogy is what finds the new one
    exact = drafter.propose([*line, indent, encoding, equals, self_, dot], 2)
    assert exact[0].tokens == (mode, comma)


def test_no_analogy_repeats_the_query_itself() -> None:
    drafter = ContextLookupDrafter()
    assert drafter.analogies([1, 2, 3], 4) == []
    assert all(c.tokens for c in drafter.analogies([1, 2, 1, 2, 1, 3], 4))
