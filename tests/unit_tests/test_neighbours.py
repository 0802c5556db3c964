"""The ring of recently edited chunks that other files' prompts may carry."""

from __future__ import annotations

from pathlib import Path

from daemon.neighbours import ChunkRing

LINES = "".join(f"line {i}\n" for i in range(100))


def test_a_chunk_is_kept_around_the_first_changed_line() -> None:
    ring = ChunkRing(size=4, lines=10)
    after = LINES.replace("line 50\n", "line fifty\n")
    ring.edited(Path("a.py"), LINES, after)
    (chunk,) = ring.chunks()
    assert chunk.first_line == 45 and chunk.text.startswith("line 45\n")
    assert "line fifty\n" in chunk.text and chunk.text.count("\n") == 10


def test_a_file_just_opened_gives_its_top_and_blank_text_nothing() -> None:
    ring = ChunkRing(size=4, lines=10)
    ring.edited(Path("a.py"), None, LINES)
    ring.edited(Path("b.py"), None, "\n\n   \n")
    (chunk,) = ring.chunks()
    assert chunk.path == Path("a.py") and chunk.first_line == 0


def test_overlapping_chunks_of_a_file_are_replaced_and_the_oldest_go_first() -> None:
    ring = ChunkRing(size=3, lines=10)
    text = LINES
    for line in (10, 12, 60):  # 12 overlaps 10's chunk; 60 does not
        edited = text.replace(f"line {line}\n", f"changed {line}\n")
        ring.edited(Path("a.py"), text, edited)
        text = edited
    assert [c.first_line for c in ring.chunks()] == [7, 55]
    ring.edited(Path("b.py"), None, LINES)
    ring.edited(Path("c.py"), None, LINES)
    assert [c.path.name for c in ring.chunks()] == ["a.py", "b.py", "c.py"]  # 7 dropped
    assert [c.path.name for c in ring.chunks(leave_out=Path("b.py"))] == ["a.py", "c.py"]
    ring.forget(Path("a.py"))
    assert [c.path.name for c in ring.chunks()] == ["b.py", "c.py"]
