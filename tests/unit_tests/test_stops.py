"""StopRule: where generation ends, token by token."""

from __future__ import annotations

import pytest

from daemon.engine.stops import StopRule


def letters(ids: list[int] | tuple[int, ...]) -> str:
    return "".join(chr(ord("a") + i % 26) for i in ids)


def test_eos_cuts_after_the_eos_token_even_mid_step() -> None:
    rule = StopRule(100, eos_ids={7})
    assert rule.check([1, 2], 2) is None
    assert rule.check([1, 2, 3, 7, 4, 5], 4) == "eos"
    assert rule.cut == 4


def test_max_new_tokens_cuts_a_long_step() -> None:
    rule = StopRule(3, eos_ids=set())
    assert rule.check([1, 2, 3, 4, 5], 5) == "max_new_tokens"
    assert rule.cut == 3


def test_stop_string_spanning_tokens_stops_at_its_last_token() -> None:
    rule = StopRule(100, eos_ids=set(), stop_strings=["cd"], decode=letters)
    assert rule.check([0, 1, 2], 3) is None  # "abc"
    assert rule.check([0, 1, 2, 3, 4], 2) == "stop_string"  # "abcd|e"
    assert rule.cut == 4
    assert rule.trim("abcde") == "ab"


def test_first_stop_wins() -> None:
    rule = StopRule(2, eos_ids={9})
    assert rule.check([9, 1], 2) == "eos"
    assert rule.cut == 1


@pytest.mark.parametrize("bad", [0, -1])
def test_rejects_non_positive_caps(bad: int) -> None:
    with pytest.raises(ValueError):
        StopRule(bad, eos_ids=set())
