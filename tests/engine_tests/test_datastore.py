"""Suffix-array stores: search against brute force, persistence, corruption, project shards."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.engine.datastore import SEPARATOR, StoreCorrupt, SuffixIndex
from tests.engine_tests.fakes import CharTokenizer


def brute_longest(docs: list[list[int]], context: list[int], lo: int = 2, hi: int = 16):  # type: ignore[no-untyped-def]
    """(length, sorted continuation starts) of the longest context suffix found in docs."""
    for n in range(min(hi, len(context)), lo - 1, -1):
        pattern = context[-n:]
        starts = []
        for d, doc in enumerate(docs):
            for i in range(len(doc) - n + 1):
                if doc[i : i + n] == pattern:
                    starts.append((d, i + n))
        if starts:
            return n, sorted(starts)
    return None


docs_strategy = st.lists(st.lists(st.integers(0, 4), min_size=0, max_size=40), max_size=5)


@settings(max_examples=300, deadline=None)
@given(docs=docs_strategy, context=st.lists(st.integers(0, 4), min_size=0, max_size=20))
def test_longest_match_and_continuations_agree_with_brute_force(docs, context) -> None:  # type: ignore[no-untyped-def]
    index = SuffixIndex.build(docs, {})
    match = index.longest_match(context)
    expected = brute_longest(docs, context)
    if expected is None:
        assert match is None
        return
    assert match is not None and match.length == expected[0]
    assert match.count == len(expected[1])
    want = sorted(tuple(docs[d][i : i + 3]) for d, i in expected[1] if docs[d][i : i + 3])
    assert sorted(index.continuations(match, depth=3, limit=10_000)) == want


def test_a_hidden_span_never_shadows_the_rest_of_the_store() -> None:
    """A file's old copy hidden under the editor's newer one holds the context itself: its long
    match must give way to the shorter ones elsewhere, not leave the store with nothing."""
    old_copy = [1, 2, 3, 4, 5, 6, 7]
    elsewhere = [9, 5, 6, 8, 8]
    store = SuffixIndex.build([old_copy, elsewhere], {})
    context = [2, 3, 4, 5, 6]
    match = store.longest_match(context)
    assert match is not None and match.length == 5
    assert store.continuations(match, 2, 8) == [(7,)]
    hidden = store.hiding([(0, len(old_copy))])
    match = hidden.longest_match(context)
    assert match is not None and match.length == 2  # `5 6`, found in the other document
    assert hidden.continuations(match, 2, 8) == [(8, 8)]
    assert store.hiding([(0, 20)]).longest_match(context) is None  # nothing visible at all


def test_real_token_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 151_936, size=n).tolist() for n in (500, 1000, 3)]
    docs.append(docs[1][100:140])  # a repeat across files
    index = SuffixIndex.build(docs, {})
    match = index.longest_match([7, *docs[1][110:126]])
    assert match is not None and match.length == 16 and match.count == 2
    continuations = index.continuations(match, depth=20, limit=8)
    assert tuple(docs[1][126:146]) in continuations
    assert tuple(docs[1][126:140]) in continuations  # the copy ends at its file's end
    assert all(SEPARATOR not in c for c in continuations)


def test_continuations_are_sampled_evenly_when_many() -> None:
    index = SuffixIndex.build([[1, 2, 3] * 200], {})
    match = index.longest_match([1, 2])
    assert match is not None and match.count == 200
    assert len(index.continuations(match, depth=2, limit=16)) == 16


def test_round_trip_and_memory_map(tmp_path: Path) -> None:
    index = SuffixIndex.build([[1, 2, 3], [4, 5, 6, 1, 2]], {"tokenizer": "t1"})
    index.save(tmp_path / "store")
    loaded = SuffixIndex.load(tmp_path / "store", {"tokenizer": "t1"})
    # still the mapped pages, not a copy read into memory (a plain view: cheaper to index)
    assert isinstance(loaded.tokens.base, np.memmap) and not loaded.tokens.flags.owndata
    assert loaded.tokens.tolist() == index.tokens.tolist()
    assert loaded.continuations(loaded.longest_match([9, 1, 2]), 5, 5) == [(3,)]  # type: ignore[arg-type]


def test_another_tokenizer_is_refused(tmp_path: Path) -> None:
    SuffixIndex.build([[1, 2, 3]], {"tokenizer": "t1"}).save(tmp_path / "store")
    with pytest.raises(StoreCorrupt, match="tokenizer"):
        SuffixIndex.load(tmp_path / "store", {"tokenizer": "t2"})


@pytest.mark.parametrize("damage", ["flip", "truncate", "meta", "missing"])
def test_damage_is_detected(tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "store"
    SuffixIndex.build([list(range(100))], {}).save(folder)
    tokens = folder / "tokens.npy"
    if damage == "flip":
        raw = bytearray(tokens.read_bytes())
        raw[-10] ^= 0xFF
        tokens.write_bytes(bytes(raw))
    elif damage == "truncate":
        tokens.write_bytes(tokens.read_bytes()[:-40])
    elif damage == "meta":
        (folder / "meta.json").write_text("{not json")
    else:
        (folder / "suffixes.npy").unlink()
    with pytest.raises(StoreCorrupt):
        SuffixIndex.load(folder, {})


def test_project_store_follows_the_folder(tmp_path: Path) -> None:
    from daemon.assembly import open_project, scan_project

    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("def alpha_beta_gamma():\n    return 1\n")
    (root / "b.py").write_text("x = 1\n")
    (root / "blob.py").write_bytes(b"\0\1\2binary")
    (root / "latin.py").write_bytes(b"s = '\xe9'\n")
    (root / "node_modules").mkdir()
    (root / "node_modules" / "dep.js").write_text("ignored()")
    store = open_project(root, CharTokenizer(), folder=tmp_path / "shards")
    report = scan_project(store)
    assert report["files"] == 2
    assert report["skipped"] == {"binary": 1, "not_utf8": 1, "ignored_dir": 1}
    context = [ord(c) for c in "def alpha_beta"]
    (layer,) = store.layers()  # a scan ends compacted: one layer
    match = layer.longest_match(context)
    assert match is not None and match.length == 14

    again = open_project(root, CharTokenizer(), folder=tmp_path / "shards")  # persisted
    assert again.shards.files == ["b.py", "pkg/a.py"]
    assert scan_project(again)["indexed"] == 0  # nothing changed: nothing re-read

    (root / "pkg" / "a.py").unlink()
    time.sleep(0.01)
    (root / "b.py").write_text("def alpha_beta_delta():\n    pass\n")
    report = scan_project(again)
    assert report["files"] == 1 and report["indexed"] == 1
    (layer,) = again.layers()
    found = layer.continuations(layer.longest_match(context), 6, 10)  # type: ignore[arg-type]
    assert found == [tuple(ord(c) for c in "_delta")]


def test_damaged_shard_is_dropped_and_reindexed(tmp_path: Path) -> None:
    from daemon.assembly import open_project, scan_project

    root = tmp_path / "ws"
    root.mkdir()
    (root / "a.py").write_text("print('hello')\n")
    shards = tmp_path / "shards"
    scan_project(open_project(root, CharTokenizer(), folder=shards))
    manifest = json.loads((shards / "manifest.json").read_text())
    manifest["files"]["a.py"]["crc32"] += 1
    (shards / "manifest.json").write_text(json.dumps(manifest))
    store = open_project(root, CharTokenizer(), folder=shards)
    assert store.shards.files == []
    assert scan_project(store)["indexed"] == 1


def test_general_store_is_cached_and_rebuilt_when_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daemon.assembly import read_corpus_file
    from daemon.engine.general_store import open_general_store

    monkeypatch.setenv("CODESWIFT_CACHE_DIR", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.py").write_text("import os\nprint(os.getcwd())\n")
    (corpus / "b.py").write_bytes(b"\xff\xfe not utf-8")
    sources = sorted(corpus.glob("*.py"))
    first = open_general_store(CharTokenizer(), sources, read_corpus_file)
    assert first.meta["files"] == 1 and first.meta["skipped"] == {"not_utf8": 1}
    original = first.tokens.tolist()  # copy: the damage below rewrites the mapped file in place
    (folder,) = (tmp_path / "cache" / "stores").iterdir()
    tokens = folder / "tokens.npy"
    tokens.write_bytes(tokens.read_bytes()[:-8])  # a torn write
    rebuilt = open_general_store(CharTokenizer(), sources, read_corpus_file)
    assert rebuilt.tokens.tolist() == original
    assert SuffixIndex.load(folder, {}).tokens.tolist() == original
    (corpus / "a.py").write_text("import sys\n")  # the corpus changed: a new store, new key
    assert (
        open_general_store(CharTokenizer(), sources, read_corpus_file).tokens.tolist() != original
    )


def test_searches_start_in_the_run_of_the_first_two_tokens_and_find_every_occurrence() -> None:
    """The pair index only narrows where the binary search starts: every range must be the
    one a scan of all suffixes gives, for patterns of one to five tokens, found or not."""
    draw = random.Random(1)
    alphabet = [*range(7), SEPARATOR]
    for _ in range(150):
        documents = [
            [draw.randrange(6) for _ in range(draw.randrange(1, 30))]
            for _ in range(draw.randrange(1, 6))
        ]
        index = SuffixIndex.build(documents, {})
        tokens, suffixes = index.tokens.tolist(), index.suffixes.tolist()
        for _ in range(20):
            # the separator too: it sorts above every token, in the pair index as well
            pattern = [draw.choice(alphabet) for _ in range(draw.randrange(1, 6))]
            rows = [i for i, s in enumerate(suffixes) if tokens[s : s + len(pattern)] == pattern]
            low, high = index._range(pattern)
            assert (low, high) == ((rows[0], rows[-1] + 1) if rows else (low, low))
