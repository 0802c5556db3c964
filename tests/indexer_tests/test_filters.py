"""PathFilter, IndexRules and read_text on real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer import filters
from indexer.filters import DEFAULT_IGNORED_DIRS, IndexRules, PathFilter, read_text


def write(path: Path, text: str = "x = 1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- .gitignore -----------------------------------------------------------------------------


def test_root_gitignore_ignores_files_and_folders(tmp_path: Path) -> None:
    write(tmp_path / ".gitignore", "*.gen.py\ngenerated/\n# a comment\n\n/only_root.py\n")
    f = PathFilter(tmp_path)
    assert f.file_reason(write(tmp_path / "a.gen.py")) == "gitignored"
    assert f.file_reason(write(tmp_path / "deep" / "b.gen.py")) == "gitignored"
    assert f.file_reason(write(tmp_path / "only_root.py")) == "gitignored"
    assert f.file_reason(write(tmp_path / "deep" / "only_root.py")) is None  # anchored
    assert f.file_reason(write(tmp_path / "a.py")) is None
    (tmp_path / "generated").mkdir()
    assert f.folder_reason(tmp_path / "generated") == "gitignored"
    assert f.folder_reason(tmp_path / "deep") is None


def test_nested_gitignore_wins_and_negation_re_includes(tmp_path: Path) -> None:
    write(tmp_path / ".gitignore", "*.log\nsecret_dir/\n")
    write(tmp_path / "sub" / ".gitignore", "!keep.log\nlocal.py\n")
    rules = IndexRules(include=("*.log", "*.py"))
    f = PathFilter(tmp_path, rules)
    assert f.file_reason(write(tmp_path / "debug.log")) == "gitignored"
    assert f.file_reason(write(tmp_path / "keep.log")) == "gitignored"  # negation is in sub/
    assert f.file_reason(write(tmp_path / "sub" / "keep.log")) is None
    assert f.file_reason(write(tmp_path / "sub" / "other.log")) == "gitignored"
    assert f.file_reason(write(tmp_path / "sub" / "local.py")) == "gitignored"
    assert f.file_reason(write(tmp_path / "local.py")) is None  # sub/.gitignore only below sub
    assert f.file_reason(write(tmp_path / "sub" / "deeper" / "keep.log")) is None


def test_gitignore_is_checked_before_the_suffix(tmp_path: Path) -> None:
    write(tmp_path / ".gitignore", "*.log\n!keep.log\n")
    f = PathFilter(tmp_path)
    assert f.file_reason(write(tmp_path / "debug.log")) == "gitignored"
    # re-included by the negation, then refused only because .log is no source suffix
    assert f.file_reason(write(tmp_path / "keep.log")) == "not_source"


def test_respect_gitignore_false(tmp_path: Path) -> None:
    write(tmp_path / ".gitignore", "*.py\n")
    f = PathFilter(tmp_path, IndexRules(respect_gitignore=False))
    assert f.file_reason(write(tmp_path / "a.py")) is None


def test_forget_gitignore_rereads_it(tmp_path: Path) -> None:
    f = PathFilter(tmp_path)
    a = write(tmp_path / "a.py")
    assert f.file_reason(a) is None
    write(tmp_path / ".gitignore", "a.py\n")
    assert f.file_reason(a) is None  # cached: no .gitignore when first asked
    f.forget_gitignore(tmp_path)
    assert f.file_reason(a) == "gitignored"


def test_malformed_gitignore_is_ignored(tmp_path: Path) -> None:
    write(tmp_path / ".gitignore", "!\n")
    f = PathFilter(tmp_path)
    assert f.file_reason(write(tmp_path / "a.py")) is None


# -- default ignored folders and secrets ----------------------------------------------------


@pytest.mark.parametrize("folder", ["node_modules", ".venv", "build", "__pycache__", ".git"])
def test_default_ignored_dirs(tmp_path: Path, folder: str) -> None:
    assert folder in DEFAULT_IGNORED_DIRS
    f = PathFilter(tmp_path)
    inner = write(tmp_path / "pkg" / folder / "mod.py")
    assert f.folder_reason(tmp_path / "pkg" / folder) == "ignored_dir"
    assert f.file_reason(inner) == "ignored_dir"
    assert f.file_reason(write(tmp_path / "pkg" / f"{folder}.py")) is None  # only folders


def test_ignored_dir_names_only_count_inside_the_root(tmp_path: Path) -> None:
    """A root that itself lives under e.g. `build/` still indexes its files."""
    root = tmp_path / "build" / "proj"
    f = PathFilter(root)
    assert f.file_reason(write(root / "a.py")) is None
    assert f.folder_reason(root / "src") is None


@pytest.mark.parametrize(
    "name",
    [".env", ".env.local", "id_rsa", "id_rsa.pub", "server.pem", "credentials.json", "prod.key"],
)
def test_secrets_excluded_by_default(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / "conf" / name, "TOKEN=abc\n")
    assert PathFilter(tmp_path).file_reason(path) == "secret"


@pytest.mark.parametrize(
    "name", [".env", ".env.local", "id_rsa", "server.pem", "credentials.json", "secrets.yaml"]
)
def test_secrets_included_with_index_secrets(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, "TOKEN=abc\n")
    with_secrets = PathFilter(tmp_path, IndexRules(index_secrets=True))
    assert with_secrets.file_reason(path) is None  # whatever its suffix
    everything = PathFilter(tmp_path, IndexRules(index_secrets=True, include=("*",)))
    assert everything.file_reason(path) is None
    # an include glob alone does not let a secret in
    assert PathFilter(tmp_path, IndexRules(include=("*",))).file_reason(path) == "secret"


def test_secret_with_a_source_suffix_is_indexed_only_with_index_secrets(tmp_path: Path) -> None:
    path = write(tmp_path / "credentials.json", "{}\n")
    assert PathFilter(tmp_path).file_reason(path) == "secret"
    assert PathFilter(tmp_path, IndexRules(index_secrets=True)).file_reason(path) is None


# -- include / exclude globs ----------------------------------------------------------------


def test_exclude_globs(tmp_path: Path) -> None:
    f = PathFilter(tmp_path, IndexRules(exclude=("vendor/", "*_pb2.py", "/top.py")))
    assert f.file_reason(write(tmp_path / "vendor" / "lib.py")) == "excluded"
    assert f.folder_reason(tmp_path / "vendor") == "excluded"
    assert f.file_reason(write(tmp_path / "api" / "x_pb2.py")) == "excluded"
    assert f.file_reason(write(tmp_path / "top.py")) == "excluded"
    assert f.file_reason(write(tmp_path / "pkg" / "top.py")) is None
    assert f.file_reason(write(tmp_path / "pkg" / "lib.py")) is None


def test_include_globs_replace_the_suffix_list(tmp_path: Path) -> None:
    f = PathFilter(tmp_path, IndexRules(include=("src/**/*.py", "*.txt")))
    assert f.file_reason(write(tmp_path / "src" / "a" / "b.py")) is None
    assert f.file_reason(write(tmp_path / "notes.txt")) is None
    assert f.file_reason(write(tmp_path / "tools" / "c.py")) == "not_included"
    assert f.file_reason(write(tmp_path / "README.md")) == "not_included"


def test_exclude_beats_include(tmp_path: Path) -> None:
    f = PathFilter(tmp_path, IndexRules(include=("*.py",), exclude=("gen_*.py",)))
    assert f.file_reason(write(tmp_path / "gen_a.py")) == "excluded"
    assert f.file_reason(write(tmp_path / "a.py")) is None


def test_known_suffixes_without_include_globs(tmp_path: Path) -> None:
    f = PathFilter(tmp_path)
    for name in ("a.py", "b.TS", "c.rs", "README.md", "conf.toml", "x.jsx"):
        assert f.file_reason(write(tmp_path / name)) is None, name
    for name in ("a.txt", "Makefile", "image.png", "a.log"):
        assert f.file_reason(write(tmp_path / name)) == "not_source", name


def test_paths_outside_the_root(tmp_path: Path) -> None:
    f = PathFilter(tmp_path / "root")
    assert f.file_reason(tmp_path / "elsewhere" / "a.py") == "outside"
    assert f.folder_reason(tmp_path / "elsewhere") == "outside"


# -- IndexRules validation -------------------------------------------------------------------


@pytest.mark.parametrize("max_bytes", [0, -1])
def test_rules_reject_a_non_positive_size_cap(max_bytes: int) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        IndexRules(max_bytes=max_bytes)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"include": ("",)},
        {"exclude": ("   ",)},
        {"include": ("*.py", "")},
        {"exclude": ("!",)},  # malformed for pathspec
    ],
)
def test_rules_reject_bad_globs(kwargs: dict[str, tuple[str, ...]]) -> None:
    with pytest.raises(ValueError):
        IndexRules(**kwargs)  # type: ignore[arg-type]


def test_rules_defaults() -> None:
    rules = IndexRules()
    assert rules.max_bytes == 1 << 20
    assert not rules.index_secrets
    assert rules.respect_gitignore


# -- read_text ------------------------------------------------------------------------------


def test_read_text_ok(tmp_path: Path) -> None:
    path = write(tmp_path / "a.py", "s = 'é😀'\n")
    raw, reason = read_text(path, 1 << 20)
    assert reason is None
    assert raw == "s = 'é😀'\n".encode()


def test_read_text_sparse_50mb_is_too_large_without_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.py"
    with path.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # sparse: no data blocks written
    assert path.stat().st_size == 50 * 1024 * 1024
    small = tmp_path / "small.py"
    small.write_bytes(b"x = 1\n")
    reads: list[int] = []
    real_read = filters.read_up_to

    def counting_read(descriptor: int, limit: int) -> bytes:
        reads.append(limit)
        return real_read(descriptor, limit)

    monkeypatch.setattr(filters, "read_up_to", counting_read)
    assert read_text(path, 1 << 20) == (None, "too_large")
    assert reads == []  # decided from fstat alone
    assert read_text(small, 1 << 20) == (b"x = 1\n", None)
    assert reads == [(1 << 20) + 1]  # the wrapper does see reads
    monkeypatch.undo()
    assert PathFilter(tmp_path).file_reason(path) is None  # the path alone is fine


def test_read_text_exact_cap(tmp_path: Path) -> None:
    path = tmp_path / "a.py"
    path.write_bytes(b"x" * 100)
    assert read_text(path, 100) == (b"x" * 100, None)
    assert read_text(path, 99) == (None, "too_large")


def test_read_text_nul_is_binary(tmp_path: Path) -> None:
    path = tmp_path / "a.py"
    path.write_bytes(b"x = 1\n\0\n")
    assert read_text(path, 1 << 20) == (None, "binary")


@pytest.mark.parametrize(
    "raw", [b"caf\xe9 = 1\n", b"\xff\xfe", b"x = '\xf0\x9f\x98'\n", b"\xed\xa0\x80"]
)
def test_read_text_invalid_utf8(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "a.py"
    path.write_bytes(raw)
    assert read_text(path, 1 << 20) == (None, "not_utf8")


def test_read_text_vanished_and_directory(tmp_path: Path) -> None:
    assert read_text(tmp_path / "gone.py", 100) == (None, "vanished")
    (tmp_path / "dir.py").mkdir()
    assert read_text(tmp_path / "dir.py", 100) == (None, "not_a_file")


def test_read_text_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.py"
    path.write_bytes(b"")
    assert read_text(path, 1) == (b"", None)
