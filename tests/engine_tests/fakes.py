"""Small fakes for fast engine tests (the real tokenizer and model are tested elsewhere)."""

from __future__ import annotations


class CharTokenizer:
    """One token per character: enough for the project store's bookkeeping."""

    backend_tokenizer = None

    def get_vocab(self) -> dict[str, int]:
        return {"chars": 0}

    def __call__(self, text, add_special_tokens: bool = False):  # type: ignore[no-untyped-def]
        if isinstance(text, list):
            return {"input_ids": [[ord(c) for c in t] for t in text]}
        return {"input_ids": [ord(c) for c in text]}
