"""Client settings: camelCase JSON at the edge, one frozen dataclass inside.

Clients send settings as `initializationOptions` and in `workspace/didChangeConfiguration`,
either flat or under a `codeswift` section. A bad value never fails a request: it is reported
(so the client can show it) and replaced by the default.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["METHODS", "Settings", "parse_settings"]

_MULTILINE = ("auto", "always", "never")
_LOG_LEVELS = ("error", "warning", "info", "debug")
# the engine's named plans (daemon/engine/plan.py; a test keeps the two lists equal)
METHODS = ("codeswift", "lookup", "rest", "ar")


@dataclass(frozen=True)
class Settings:
    enable: bool = True
    auto_trigger: bool = True  # False: only explicitly invoked completions
    debounce_ms: int = 75
    max_new_tokens: int = 64
    multiline: str = "auto"
    timeout_ms: int = 12000  # generation stops here (the first one after a load prefills a lot)
    # every key re-prefills the suffix and the prefix's changed tail (KV rows before it are
    # reused), so the suffix budget is most of a keystroke's prefill on a CPU
    prefix_tokens: int = 1024
    suffix_tokens: int = 64
    # a document's first request, with no rows warm, is answered from this many prefix tokens
    # (about a fifth of the full prompt's rows) while the full prompt warms behind it; 0: off
    cold_prefix_tokens: int = 320
    # code from other files edited lately, put before the prompt (daemon/neighbours.py)
    context_tokens: int = 0
    method: str = "codeswift"
    # once a completion is on offer, generate the one that would follow it (Tab after Tab)
    predict_next: bool = True
    # the engine's default model (daemon/engine/registry.py; a test keeps the two equal)
    model: str = "qwen2.5-coder-0.5b"
    device: str = "auto"
    dtype: str = "auto"
    index_include: tuple[str, ...] = ()
    index_exclude: tuple[str, ...] = ()
    index_secrets: bool = False
    log_level: str = "info"  # of the server's log on stderr, once a client sends it

    def __post_init__(self) -> None:
        _check(0 <= self.debounce_ms <= 5000, "debounceMs", self.debounce_ms)
        _check(1 <= self.max_new_tokens <= 1024, "maxNewTokens", self.max_new_tokens)
        _check(self.multiline in _MULTILINE, "multiline", self.multiline)
        _check(100 <= self.timeout_ms <= 120_000, "timeoutMs", self.timeout_ms)
        _check(64 <= self.prefix_tokens <= 16_384, "prefixTokens", self.prefix_tokens)
        _check(0 <= self.suffix_tokens <= 4096, "suffixTokens", self.suffix_tokens)
        cold = self.cold_prefix_tokens
        _check(cold == 0 or 64 <= cold <= 16_384, "coldPrefixTokens", cold)
        _check(0 <= self.context_tokens <= 8192, "contextTokens", self.context_tokens)
        _check(self.device in ("auto", "cpu", "cuda"), "device", self.device)
        _check(self.dtype in ("auto", "bfloat16", "float32", "float16"), "dtype", self.dtype)
        _check(self.log_level in _LOG_LEVELS, "logLevel", self.log_level)
        _check(self.method in METHODS, "method", self.method)
        _check(bool(self.model), "model", self.model)


def parse_settings(options: Any, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Settings from a client's JSON (unknown keys ignored), and one message per bad value."""
    base = base or Settings()
    if isinstance(options, Mapping) and isinstance(options.get("codeswift"), Mapping):
        options = options["codeswift"]
    if options is None or options == []:  # Lua clients send an empty table as []
        return base, []
    if not isinstance(options, Mapping):
        return base, [f"settings must be an object, got {type(options).__name__}"]
    defaults = Settings()
    settings, problems = base, []
    for field in dataclasses.fields(Settings):
        key = _camel(field.name)
        if key not in options:
            continue
        value = _coerce(options[key], getattr(defaults, field.name))
        try:
            if value is None:
                raise ValueError
            settings = dataclasses.replace(settings, **{field.name: value})
        except (ValueError, TypeError):
            default = getattr(defaults, field.name)
            problems.append(f"setting {key}={options[key]!r} is invalid; using {default!r}")
            settings = dataclasses.replace(settings, **{field.name: default})
    return settings, problems


def _coerce(value: Any, default: Any) -> Any:
    """`value` as the default's type, or None when it cannot be one."""
    if isinstance(default, bool):
        return value if isinstance(value, bool) else None
    if isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value if ok else None
    if isinstance(default, tuple):
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        return tuple(value) if ok else None
    return value if isinstance(value, str) else None


def _check(ok: bool, key: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"bad {key}: {value!r}")


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)
