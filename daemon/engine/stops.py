"""When generation ends: EOS, stop strings, the token cap. Checked token by token, so a step that
commits several tokens at once stops exactly where one-token decoding would have stopped."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

__all__ = ["Stop", "StopRule"]


@dataclass(frozen=True)
class Stop:
    """When a request's generation ends, besides the model's own end tokens."""

    max_new_tokens: int
    strings: tuple[str, ...] = ()  # stop strings (the text is cut before the first)
    end_ids: frozenset[int] = frozenset()  # more end tokens (fill-in-the-middle markers)
    # says the completion's shape is decided from the text so far (an editor's shape rules)
    shape_decided: Callable[[str], bool] | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")


class StopRule:
    """Per-request stop state; `cut` is how many generated tokens to keep once stopped."""

    def __init__(
        self,
        max_new_tokens: int,
        eos_ids: Collection[int],
        stop_strings: Sequence[str] = (),
        decode: Callable[[Sequence[int]], str] | None = None,
        text_stop: Callable[[str], bool] | None = None,
    ) -> None:
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if (stop_strings or text_stop) and decode is None:
            raise ValueError("stop strings need a decode function")
        # `text_stop(text so far)` says the completion's shape is decided (editor stop rules)
        self.text_stop = text_stop
        self.max_new_tokens = max_new_tokens
        self.eos_ids = frozenset(eos_ids)
        self.stop_strings = tuple(s for s in stop_strings if s)
        self._decode = decode
        # a stop string ending in token i lies within its last len(s) tokens (tokens are >= 1 char)
        self._window = max((len(s) for s in self.stop_strings), default=0) + 1
        self.cut = 0

    def check(self, generated: Sequence[int], new: int) -> str | None:
        """Look at the last `new` tokens in order; the reason of the first stop, else None."""
        for index in range(len(generated) - new, len(generated)):
            self.cut = index + 1
            if generated[index] in self.eos_ids:
                return "eos"
            if self.stop_strings and self._ends_with_stop(generated, index):
                return "stop_string"
            if self.text_stop is not None and self._shape_decided(generated, index):
                return "shape"
            if index + 1 >= self.max_new_tokens:
                return "max_new_tokens"
        return None

    def _ends_with_stop(self, generated: Sequence[int], index: int) -> bool:
        assert self._decode is not None  # checked in __init__
        tail = self._decode(generated[max(0, index + 1 - self._window) : index + 1])
        return any(stop in tail for stop in self.stop_strings)

    def _shape_decided(self, generated: Sequence[int], index: int) -> bool:
        assert self.text_stop is not None and self._decode is not None  # checked in __init__
        return self.text_stop(self._decode(generated[: index + 1]))

    def trim(self, text: str) -> str:
        """`text` up to the first stop string (EOS tokens are dropped by the decoder)."""
        positions = [text.find(s) for s in self.stop_strings if s in text]
        return text[: min(positions)] if positions else text
