"""`codeswift bench --suite steps`: what one forward costs on each backend, side by side.

For every backend the time of a forward over k new tokens after ~1,500 tokens of context
(k = 1 is a greedy step, k > 1 a draft tree's verification), in one process, with the
weight-streaming floor of a one-token step (every weight matrix times one row, in the model's
precision) measured in the same process. llama.cpp's figures are for its own layout of the
packaged GGUF, with logits for every row as a verification needs.
"""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
from tqdm import tqdm

__all__ = ["format_steps", "run_steps_bench", "step_ms"]

SIZES = (1, 2, 4, 8, 16, 32)
_CONTEXT = 1500
_REPEATS = 9


def step_ms(port: Any, context: list[int], rows: int, repeats: int = _REPEATS) -> float:
    """Median milliseconds of `port.verify` over a chain of `rows` tokens after `context`."""
    cache = port.new_cache()
    port.prefill(cache, context)
    visible = np.tril(np.ones((rows, rows), dtype=bool))
    tokens, depths = list(range(1000, 1000 + rows)), list(range(rows))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        port.verify(cache, tokens, depths, visible)
        times.append(time.perf_counter() - started)
        port.crop(cache, len(context))
    return 1000 * sorted(times)[len(times) // 2]


def run_steps_bench(model: str, dtype: str, llamacpp: bool = True) -> dict[str, Any]:
    from daemon.bench.methods import runtime_environment
    from daemon.engine.backends import BACKENDS, open_forward
    from daemon.engine.lab import thread_count, weight_stream_ms
    from daemon.engine.models import load_model

    lm = load_model(model, "cpu", dtype)
    draw = random.Random(0)
    context = [draw.randrange(100, 50_000) for _ in range(_CONTEXT)]
    rows: dict[str, dict[str, float]] = {}
    for backend in tqdm([b for b in BACKENDS if b != "auto"], desc="steps", unit="backend"):
        port = open_forward(lm, backend)
        step_ms(port, context[:64], 1, repeats=2)  # one-off costs outside timing
        rows[backend] = {str(k): round(step_ms(port, context, k), 1) for k in SIZES}
    if llamacpp:
        from daemon.bench.methods import llamacpp_peer

        peer = llamacpp_peer(lm.name, thread_count(), lookup=True)  # keeps every row's logits
        rows["llamacpp"] = {str(k): round(peer.forward_ms(context, k), 1) for k in SIZES}
    floor = weight_stream_ms(lm)
    for row in rows.values():
        row["vs_floor"] = round(row["1"] / floor, 2)
        row["t8_over_t1"] = round(row["8"] / row["1"], 2)
        row["t16_over_t1"] = round(row["16"] / row["1"], 2)
    return {
        "suite": "steps",
        "context_tokens": _CONTEXT,
        "env": runtime_environment(lm, "all"),
        "weight_stream_floor_ms": round(floor, 1),
        "forward_ms": rows,
    }


def format_steps(report: dict[str, Any]) -> str:
    env = report["env"]
    lines = [
        f"forward over k new tokens after {report['context_tokens']} of context; "
        f"{env['model']} {env['dtype']}, {env['threads']} threads, {env['cpu']}; "
        f"weight-streaming floor of a one-token step: {report['weight_stream_floor_ms']} ms",
        f"{'backend':<14}" + "".join(f"{'k=' + str(k):>8}" for k in SIZES) + f"{'vs floor':>10}"
        f"{'t8/t1':>7}{'t16/t1':>8}",
    ]
    for name, row in report["forward_ms"].items():
        lines.append(
            f"{name:<14}"
            + "".join(f"{row[str(k)]:>8.1f}" for k in SIZES)
            + f"{row['vs_floor']:>10.2f}{row['t8_over_t1']:>7.2f}{row['t16_over_t1']:>8.2f}"
        )
    return "\n".join(lines)
