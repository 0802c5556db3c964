"""llama.cpp as a peer: the engine local-completion users already run, on the same GGUF.

Lab-only (like `lab.py`): `codeswift bench` runs llama.cpp's greedy decoding and its own prompt
lookup speculation (llama-cpp-python's `LlamaPromptLookupDecoding`) on the packaged model's
GGUF file as shipped, with the same prompt token ids as every other method.

On CPUs with AMX, llama.cpp's AMX weight buffers crash in `ggml_backend_amx_mul_mat` with the
pinned 0.3.36 build (measured here, Intel Xeon with amx_int8), so there the extra buffer types
are switched off at load time; everything else is llama.cpp's defaults.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daemon.engine.decode import DecodeResult
from daemon.errors import UsageError

__all__ = ["LlamaCppPeer"]

_PROMPT_LOOKUP_TOKENS = 10  # as Hugging Face's pld here


@dataclass
class _Counted:
    evals: int = 0


class LlamaCppPeer:
    """Greedy (`prompt_lookup=False`) or prompt-lookup decoding with llama.cpp."""

    def __init__(self, gguf: Path, threads: int, n_ctx: int, prompt_lookup: bool) -> None:
        try:
            import llama_cpp.llama_cpp as api
            from llama_cpp import Llama
            from llama_cpp.llama_speculative import LlamaPromptLookupDecoding
        except ImportError:
            raise UsageError(
                "the llamacpp peers need llama-cpp-python: run `make llama` (builds it once)"
            ) from None
        self.api = api
        self.prompt_lookup = prompt_lookup
        draft = LlamaPromptLookupDecoding(num_pred_tokens=_PROMPT_LOOKUP_TOKENS)
        with _without_amx_buffers(api):
            self.llm = Llama(
                str(gguf),
                n_ctx=n_ctx,
                n_batch=512,
                n_threads=threads,
                n_threads_batch=threads,
                draft_model=draft if prompt_lookup else None,
                # a draft model makes llama.cpp keep every row's logits; its score buffer is
                # sized by this flag, so it must say so too
                logits_all=prompt_lookup,
                verbose=False,
            )
        self.vocab = int(api.llama_n_vocab(api.llama_model_get_vocab(self.llm.model)))
        self.counted = _Counted()
        evaluate = self.llm.eval

        def counting_eval(tokens: Sequence[int]) -> None:
            self.counted.evals += 1
            evaluate(tokens)

        patched: Any = self.llm  # typed or not, depending on whether llama_cpp is installed
        patched.eval = counting_eval

    def generate(
        self, prompt: Sequence[int], max_new_tokens: int, eos_ids: frozenset[int]
    ) -> DecodeResult:
        """Prefill (timed apart), then decode until an end token or `max_new_tokens`."""
        llm = self.llm
        llm.reset()
        started = time.perf_counter()
        llm.eval(list(prompt))
        prefill_s = time.perf_counter() - started
        self.counted.evals = 0
        if self.prompt_lookup:
            tokens = self._prompt_lookup(prompt, max_new_tokens, eos_ids)
        else:
            tokens = self._greedy(max_new_tokens, eos_ids)
        seconds = time.perf_counter() - started
        reason = "eos" if tokens and tokens[-1] in eos_ids else "max_new_tokens"
        # the first token comes from the prefill's logits, as in our loop
        return DecodeResult(tokens, reason, prefill_s, seconds, self.counted.evals + 1)

    def _greedy(self, max_new_tokens: int, eos_ids: frozenset[int]) -> list[int]:
        tokens = [self._last_argmax()]
        while len(tokens) < max_new_tokens and tokens[-1] not in eos_ids:
            self.llm.eval([tokens[-1]])
            tokens.append(self._last_argmax())
        return tokens

    def _prompt_lookup(
        self, prompt: Sequence[int], max_new_tokens: int, eos_ids: frozenset[int]
    ) -> list[int]:
        tokens: list[int] = []
        # the prompt is cached and its logits live, so generate samples at once
        for token in self.llm.generate(list(prompt), temp=0.0, repeat_penalty=1.0, reset=True):
            tokens.append(int(token))
            if len(tokens) >= max_new_tokens or token in eos_ids:
                break
        return tokens

    def forward_ms(self, context: Sequence[int], rows: int, repeats: int = 5) -> float:
        """One forward over `rows` new tokens after `context`, logits for every row (what
        verifying a draft of `rows` tokens costs), median of `repeats`."""
        llm = self.llm
        llm.reset()
        llm.eval(list(context))
        times = []
        for _ in range(repeats):
            llm.n_tokens = len(context)  # eval drops the rows after n_tokens first
            started = time.perf_counter()
            llm.eval([int(t) % self.vocab for t in range(1000, 1000 + rows)])
            times.append(time.perf_counter() - started)
        return 1000 * sorted(times)[len(times) // 2]

    def _last_argmax(self) -> int:
        row = self.api.llama_get_logits_ith(self.llm.ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(row, shape=(self.vocab,))))


@contextlib.contextmanager
def _without_amx_buffers(api: Any) -> Iterator[None]:
    if not _cpu_has_amx():
        yield
        return
    defaults = api.llama_model_default_params

    def no_extra_buffers() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    api.llama_model_default_params = no_extra_buffers
    try:
        yield
    finally:
        api.llama_model_default_params = defaults


def _cpu_has_amx() -> bool:
    try:
        return "amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
