"""Peak memory of one decoding method, measured in a fresh process that holds only what it needs.

Inside one benchmark process every method shares the model, and a memory-mapped store stays
resident once any method touched it, so in-process numbers would say nothing about a method. Here
each method gets its own `python -m daemon.bench.memory_probe` child: it loads the model plus the
method's own structures (datastores for `rest`/`codeswift`, the draft model for `assisted`), runs
the method on the given prompts and reports the kernel's high-water mark of its resident set
(`VmHWM`, reset once loading is over), i.e. what a server running that method needs.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["ProbeSpec", "probe_peak_mb"]


@dataclass(frozen=True)
class ProbeSpec:
    """Everything the child needs to rebuild the benchmark's engine for one method."""

    method: str
    model: str
    device: str
    dtype: str
    prompts: list[list[int]]
    max_new_tokens: int
    workspace: str | None = None
    corpus: tuple[str, ...] = ()
    assistant: str | None = None
    backend: str = "auto"


def probe_peak_mb(spec: ProbeSpec, timeout_s: float = 1800) -> dict[str, float]:
    """{"peak_rss_mb", "loaded_rss_mb"} (and "peak_device_mb" on a GPU) of a child running
    `spec`; RuntimeError if the child fails."""
    with tempfile.TemporaryDirectory(prefix="codeswift-probe-") as folder:
        request = Path(folder) / "spec.json"
        request.write_text(json.dumps(asdict(spec)))
        done = subprocess.run(
            [sys.executable, "-m", "daemon.bench.memory_probe", str(request)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"memory probe of {spec.method} failed: {' | '.join(tail)}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _status_mb(field: str) -> float:
    """A `kB` line of /proc/self/status, in MiB (0.0 where there is no procfs)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _reset_peak() -> None:
    """Start the high-water mark afresh from the current resident set (Linux >= 4.0)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _child(spec_path: Path) -> dict[str, Any]:
    from daemon.bench.methods import Lab
    from daemon.engine.lab import device_peak_mb, reset_device_peak

    spec = ProbeSpec(**json.loads(spec_path.read_text()))
    lab = Lab.open(
        spec.model,
        spec.device,
        spec.dtype,
        [spec.method],
        Path(spec.workspace) if spec.workspace else None,
        tuple(Path(c) for c in spec.corpus),
        backend=spec.backend,
    )
    if spec.method == "assisted" and spec.assistant:
        lab.attach_assistant(spec.assistant)
    loaded = _status_mb("VmRSS")
    _reset_peak()  # loading peaks far above what serving needs (weights pass through fp32)
    reset_device_peak(lab.engine.lm)
    for prompt in spec.prompts:
        lab.run(spec.method, prompt, spec.max_new_tokens)
    result = {"peak_rss_mb": round(_status_mb("VmHWM"), 1), "loaded_rss_mb": round(loaded, 1)}
    device_peak = device_peak_mb(lab.engine.lm)
    if device_peak is not None:  # on a GPU the weights and KV cache live there
        result["peak_device_mb"] = round(device_peak, 1)
    return result


if __name__ == "__main__":
    print(json.dumps(_child(Path(sys.argv[1]))), flush=True)
