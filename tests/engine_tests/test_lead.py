"""Leads (the word being typed, held as the completion's start): which tokens agree."""

from __future__ import annotations

import random
from collections.abc import Sequence

from daemon.engine.lead import Lead, TokenTexts

VOCAB = ["", "e", "en", "env", "environ", "environment", "me", "ment", " ", "   ", " r", " re"]
VOCAB += [" return", "r", "ret", "x", "<|fim_pad|>", "mental", "eturn", "é"]


def test_agreeing_tokens_are_those_a_brute_force_finds() -> None:
    texts = TokenTexts(VOCAB)
    rng = random.Random(3)
    alphabet = "enviromtu rx"
    rests = ["environme", "    r", " r", "e", "me", "x", "é", "z", "ret"]
    rests += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 9))) for _ in range(300)]
    for rest in rests:
        brute = [i for i, t in enumerate(VOCAB) if t and (rest.startswith(t) or t.startswith(rest))]
        assert texts.agreeing(rest) == brute, rest


def test_a_lead_allows_agreeing_tokens_until_it_is_covered() -> None:
    def decode(ids: Sequence[int]) -> str:
        return "".join(VOCAB[i] for i in ids)

    lead = Lead("environme", TokenTexts(VOCAB), decode)
    first = lead.allowed([])
    assert first is not None
    assert {VOCAB[i] for i in first} == {"e", "en", "env", "environ", "environment"}
    after = lead.allowed([VOCAB.index("environ")])
    assert after is not None and {VOCAB[i] for i in after} == {"me", "ment", "mental"}
    assert lead.allowed([VOCAB.index("environment")]) is None  # covered: free from here
    assert lead.allowed([VOCAB.index("environ"), VOCAB.index("me")]) is None  # exactly covered
    assert lead.allowed([VOCAB.index("x")]) is None  # it went elsewhere: no constraint left
    assert Lead("zzz", TokenTexts(VOCAB), decode).allowed([]) is None  # nothing agrees
