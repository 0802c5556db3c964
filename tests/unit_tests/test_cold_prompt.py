"""When a request is answered from the short prompt (`Service._short_prompt`): only while the
document's kept rows, if any, are a start of the full prompt."""

from __future__ import annotations

from daemon.engine.decode import PrefixCache
from daemon.service import is_cold

PROMPT = list(range(1000))
SHORT_ROWS = 384


def kept(tokens: list[int]) -> PrefixCache:
    return PrefixCache(tokens=tokens, cache=object())


def test_a_document_with_no_rows_is_cold() -> None:
    assert is_cold(PrefixCache(), PROMPT, SHORT_ROWS)


def test_a_warm_up_part_way_leaves_it_cold_until_little_is_left() -> None:
    assert is_cold(kept(PROMPT[:64]), PROMPT, SHORT_ROWS)  # a key typed right after opening
    assert is_cold(kept(PROMPT[:615]), PROMPT, SHORT_ROWS)
    assert not is_cold(kept(PROMPT[:616]), PROMPT, SHORT_ROWS)  # 384 rows left: the full one
    assert not is_cold(kept(PROMPT), PROMPT, SHORT_ROWS)
    assert not is_cold(kept([*PROMPT, 5]), [*PROMPT, 7], SHORT_ROWS)  # after an answer


def test_rows_of_another_prompt_keep_the_full_context() -> None:
    moved = [*PROMPT[:1], *range(5000, 5900)]  # the window moved: only the marker is shared
    assert not is_cold(kept(moved), PROMPT, SHORT_ROWS)
    answered = [*PROMPT[:10], *range(9000, 9050)]  # the last request's prompt and output
    assert not is_cold(kept(answered), PROMPT, SHORT_ROWS)


def test_a_short_prompt_is_never_cold() -> None:
    assert not is_cold(PrefixCache(), PROMPT[:SHORT_ROWS], SHORT_ROWS)
    assert is_cold(PrefixCache(), PROMPT[: SHORT_ROWS + 1], SHORT_ROWS)
