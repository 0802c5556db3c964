"""The general datastore: common code (by default the running interpreter's standard library),
tokenized once with the model's tokenizer and cached under (tokenizer, corpus, schema).

Which files make the corpus, and how a file is read, is the caller's (daemon/assembly.py): the
indexer's reader is the one that knows binary, huge and undecodable files."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from daemon.engine.datastore import SCHEMA, StoreCorrupt, SuffixIndex
from daemon.engine.registry import cache_root

__all__ = ["ReadSource", "build_store", "open_general_store", "tokenizer_fingerprint"]

logger = logging.getLogger(__name__)

# (text, None), or (None, why it was skipped)
ReadSource = Callable[[Path], tuple[str | None, str | None]]
_BATCH = 64


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Changes whenever token ids would: a store from another tokenizer is never used."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _corpus_fingerprint(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            continue
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def open_general_store(
    tokenizer: Any,
    sources: Sequence[Path],
    read: ReadSource,
    progress: Callable[[int, int], None] | None = None,
) -> SuffixIndex:
    """The cached store for this tokenizer and corpus, built (or rebuilt) if needed."""
    expect = {"tokenizer": tokenizer_fingerprint(tokenizer), "corpus": _corpus_fingerprint(sources)}
    folder = cache_root() / "stores" / f"general-{expect['tokenizer']}-{expect['corpus']}-s{SCHEMA}"
    if folder.exists():
        try:
            return SuffixIndex.load(folder, expect)
        except StoreCorrupt as exc:
            logger.warning("general store damaged, rebuilding: %s", exc)
    store = build_store(tokenizer, sources, read, expect, progress)
    store.save(folder)
    return SuffixIndex.load(folder, expect)


def build_store(
    tokenizer: Any,
    sources: Sequence[Path],
    read: ReadSource,
    meta: dict[str, Any],
    progress: Callable[[int, int], None] | None = None,
) -> SuffixIndex:
    """Tokenize `sources` in batches (the fast tokenizer runs them in parallel) and index them."""
    documents: list[list[int]] = []
    skipped: dict[str, int] = {}
    for start in range(0, len(sources), _BATCH):
        texts = []
        for path in sources[start : start + _BATCH]:
            text, reason = read(path)
            if text is None:
                skipped[reason or "?"] = skipped.get(reason or "?", 0) + 1
            elif text.strip():
                texts.append(text)
        if texts:
            documents.extend(tokenizer(texts, add_special_tokens=False)["input_ids"])
        if progress:
            progress(min(start + _BATCH, len(sources)), len(sources))
    tokens = sum(len(d) for d in documents)
    logger.info("general store: %d files, %d tokens, skipped %s", len(documents), tokens, skipped)
    return SuffixIndex.build(documents, {**meta, "files": len(documents), "skipped": skipped})
