"""The forward port: everything the decode loop asks of a model, and nothing else.

A backend (torch/transformers today, llama.cpp next) implements `ForwardPort`; `decode.py`, the
drafters and the service never see its tensors. The KV cache is the backend's own object: the
loop only holds it, hands it back and tells the backend which rows to keep.

Positions: a cache holding rows for tokens [0, n) receives the next tokens at positions n, n+1,
... (`prefill`), or a draft tree whose node at depth d sits at position n + d (`verify`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

__all__ = ["ForwardPort"]


class ForwardPort(Protocol):
    # what its cost curve is cached under: model, device, precision, threads
    identity: str
    backend: str  # its name in `backends.BACKENDS`
    vocab_size: int

    def new_cache(self) -> Any:
        """An empty KV cache."""

    def prefill(
        self, cache: Any, tokens: Sequence[int], allowed: Sequence[int] | None = None
    ) -> int:
        """Append `tokens` after the cache's rows; the greedy token after the last of them
        (among `allowed`, ascending ids, when given: the first maximal logit of those)."""

    def verify(
        self,
        cache: Any,
        tokens: Sequence[int],
        depths: Sequence[int],
        visible: np.ndarray,
        judged: int | None = None,
        allowed: Sequence[Sequence[int] | None] | None = None,
    ) -> list[int]:
        """One forward over a draft tree after the cache's rows: `tokens[0]` is the root (depth
        0), `visible` the (N+1, N+1) ancestor matrix (row i may attend to column j). Appends
        N+1 rows to the cache; returns the greedy token after each row (the first maximal
        logit: ties go to the lowest id), or after each of the last `judged` rows only (rows
        before them are prompt rows run in the same forward, whose logits nobody needs).
        `allowed`, per returned row: the ids (ascending) its token must be among, or None."""

    def keep(self, cache: Any, past_len: int, rows: Sequence[int]) -> None:
        """After `verify`: keep the tree rows past_len + rows[i] at past_len + i, drop the rest
        (`rows` is increasing and starts with 0, the root)."""

    def crop(self, cache: Any, length: int) -> None:
        """Keep the first `length` rows."""
