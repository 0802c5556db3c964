"""Completions already offered, answered again without the model.

When the user types the first characters of a completion that is showing, the editor asks
again; the answer is the rest of the same completion (Tabby's forwarding entries, Continue's
generator reuse). Asking again at the very same place is the zero-typed case of the same rule,
so this is also the completion cache. Entries remember the settings that shaped them. An
empty entry says the model had nothing to offer at that very place (greedy decoding of the
same prompt would say so again).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["Offer", "OfferCache"]


@dataclass(frozen=True)
class Offer:
    completion_id: str
    prefix: str  # document text before the cursor when the completion was made
    suffix: str  # ... and after it
    text: str  # the shaped completion
    settings_key: object


class OfferCache:
    """The last few offers per document (LRU over documents)."""

    def __init__(self, per_document: int = 8, documents: int = 64) -> None:
        self._offers: OrderedDict[str, list[Offer]] = OrderedDict()
        self._per_document = per_document
        self._documents = documents
        self._ids = itertools.count(1)
        self.hits = 0

    def new_id(self) -> str:
        return f"cs-{next(self._ids)}"

    def remember(self, uri: str, offer: Offer) -> None:
        offers = self._offers.pop(uri, [])
        offers = [o for o in offers if (o.prefix, o.suffix) != (offer.prefix, offer.suffix)]
        self._offers[uri] = [*offers, offer][-self._per_document :]
        while len(self._offers) > self._documents:
            self._offers.popitem(last=False)

    def lookup(
        self, uri: str, prefix: str, suffix: str, settings_key: object, count: bool = True
    ) -> Offer | None:
        """An offer whose text the user has typed into (or not yet): the rest of it, as an
        offer at the new position. `count`: a hit answers a request (not a mere look)."""
        for offer in reversed(self._offers.get(uri, [])):
            if offer.settings_key != settings_key or offer.suffix != suffix:
                continue
            if not prefix.startswith(offer.prefix):
                continue
            typed = prefix[len(offer.prefix) :]
            if not offer.text and not typed:  # the same place, where there was nothing
                self.hits += count
                return offer
            if offer.text.startswith(typed) and len(typed) < len(offer.text):
                self.hits += count
                return Offer(
                    offer.completion_id, prefix, suffix, offer.text[len(typed) :], settings_key
                )
        return None

    def forget(self, uri: str) -> None:
        self._offers.pop(uri, None)
