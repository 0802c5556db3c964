"""What `codeswift bench` reports: per-method rows, the table, and the plot (`--plot`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.errors import UsageError

if TYPE_CHECKING:
    from daemon.engine.decode import DecodeResult
    from daemon.engine.engine import Completion

__all__ = ["calibration_lines", "format_table", "method_row", "percentiles", "write_plot"]

# methods whose loop times the prefill apart (ours and the llama.cpp peers)
_PREFILL_TIMED = ("ar", "codeswift", "rest", "lookup", "llamacpp")


def method_row(
    completions: Sequence[Completion],
    baseline: Sequence[Completion],
    reference: Sequence[Completion],
    task_ids: Sequence[str],
) -> dict[str, Any]:
    """One method's figures over the suite: `baseline` is `ar` on the same prompts, `reference`
    the greedy of the method's own backend."""
    runs = [c.decoded for c in completions]
    own_runs = [r.decoded for r in reference]
    rate, ar_rate, own_rate = _rate(runs), _rate([b.decoded for b in baseline]), _rate(own_runs)
    mismatched = [
        task for task, c, r in zip(task_ids, runs, own_runs, strict=True) if c.tokens != r.tokens
    ]
    row: dict[str, Any] = {
        "tokens_per_s": rate,
        "speedup": rate / ar_rate if ar_rate else 0.0,
        "own_speedup": rate / own_rate if own_rate else 0.0,
        "mean_accepted": sum(len(c.tokens) for c in runs) / max(sum(c.forwards for c in runs), 1),
        "identical": 1 - len(mismatched) / len(runs),
        "new_tokens": sum(len(c.tokens) for c in runs),
        "seconds": sum(c.seconds for c in runs),
        "mismatched": mismatched,
        "accepted_histogram": _histogram(runs),
        **percentiles([ms for c in completions for ms in c.drafting.search_ms], "retrieval"),
        "store_hit_rate": _hit_rates(completions),
    }
    if completions and completions[0].plan.startswith(_PREFILL_TIMED):
        # the prefill is the same work for every method of a backend
        decode_s = sum(c.seconds - c.prefill_s for c in runs)
        decoded = sum(max(len(c.tokens) - 1, 0) for c in runs)
        row["decode_tokens_per_s"] = decoded / decode_s if decode_s > 0 else 0.0
    return row


def percentiles(samples: list[float], name: str) -> dict[str, float]:
    if not samples:
        return {}
    samples = sorted(samples)
    return {
        f"{name}_p50_ms": round(samples[len(samples) // 2], 4),
        f"{name}_p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 4),
    }


def _hit_rates(completions: Sequence[Completion]) -> dict[str, Any]:
    """Per context ending: how often the store drafts gave the model's next token."""
    steps: dict[str, int] = {}
    hits: dict[str, int] = {}
    for completion in completions:
        stats = completion.drafting
        for kind, count in stats.store_steps.items():
            steps[kind] = steps.get(kind, 0) + count
            hits[kind] = hits.get(kind, 0) + stats.store_hits.get(kind, 0)
    return {k: {"steps": steps[k], "rate": round(hits[k] / steps[k], 3)} for k in sorted(steps)}


def _rate(runs: Sequence[DecodeResult]) -> float:
    seconds = sum(c.seconds for c in runs)
    return sum(len(c.tokens) for c in runs) / seconds if seconds else 0.0


def _histogram(runs: Sequence[DecodeResult]) -> dict[str, int]:
    """How many steps accepted k drafted tokens (our own methods only)."""
    counts: dict[int, int] = {}
    for run in runs:
        for accepted in run.accepted:
            counts[accepted] = counts.get(accepted, 0) + 1
    return {str(k): counts[k] for k in sorted(counts)}


def _cell(row: dict[str, Any], key: str, spec: str, width: int) -> str:
    value = row.get(key)
    return f"{value:>{width}{spec}}" if isinstance(value, int | float) else f"{'-':>{width}}"


def format_table(report: dict[str, Any]) -> str:
    env = report["env"]
    lines = [
        f"suite {report['suite']}: {report['prompts']} prompts x {report['max_new_tokens']} new "
        f"tokens; {env['model']} on {env['device']} {env['dtype']}, {env['threads']} threads, "
        f"{env['cpu']}",
        f"{'method':<24}{'tok/s':>7}{'speedup':>9}{'own':>7}{'decode':>8}{'accepted':>9}"
        f"{'ret p50':>9}{'ret p99':>9}{'identical':>10}{'pass@1':>8}{'peak MB':>9}{'vs ar':>7}",
    ]
    for method, row in report["methods"].items():
        lines.append(
            f"{method:<24}{row['tokens_per_s']:>7.2f}{row['speedup']:>8.2f}x"
            + _cell(row, "own_speedup", ".2f", 6)
            + "x"
            + _cell(row, "decode_tokens_per_s", ".2f", 8)
            + f"{row['mean_accepted']:>9.2f}"
            + _cell(row, "retrieval_p50_ms", ".2f", 9)
            + _cell(row, "retrieval_p99_ms", ".2f", 9)
            + f"{row['identical']:>10.2f}"
            + _cell(row, "pass_at_1", ".3f", 8)
            + _cell(row, "peak_device_mb" if "peak_device_mb" in row else "peak_rss_mb", ".0f", 9)
            + _cell(row, "memory_vs_ar", ".2f", 7)
        )
    lines.append(
        "tok/s and speedup: end to end, prefill included; own: speedup over the greedy of the "
        "method's own backend; identical: outputs equal to that greedy's; decode: tokens/s "
        "after the prefill (our loop and llama.cpp's); accepted: tokens per forward; ret: "
        "datastore search ms per step; pass@1: HumanEval's tests passed; peak MB: a fresh "
        "process per method (GPU memory on a GPU)"
    )
    for method, row in report["methods"].items():
        if "calibration" in row:
            lines.append(f"calibration of {method} (nodes whose parent was accepted):")
            lines += calibration_lines(row["calibration"])
    return "\n".join(lines)


def calibration_lines(calibration: dict[str, Any]) -> list[str]:
    lines = [
        f"  {'source':<12}{'drafted':>9}{'reached':>9}{'accepted':>9}{'predicted':>10}"
        f"{'observed':>9}"
    ]
    for source, row in calibration["per_source"].items():
        lines.append(
            f"  {source:<12}{row['drafted']:>9}{row['reached']:>9}{row['accepted']:>9}"
            f"{row['predicted']:>10.3f}{row['observed']:>9.3f}"
        )
    bins = [b for b in calibration["bins"] if b["reached"]]
    lines.append(
        "  estimate bin -> observed: "
        + ", ".join(
            f"{b['range'][0]:.1f}-{b['range'][1]:.1f}: {b['observed']:.2f} ({b['reached']})"
            for b in bins
        )
    )
    return lines


def write_plot(report: dict[str, Any], path: Path) -> None:
    """Panels: speedup over `ar` per method; the distribution of accepted draft tokens per
    verification step for the methods that draft; and, where a method scores its trees, the
    estimated against the observed acceptance of its nodes (a reliability plot)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'codeswift[bench]'") from None
    methods = report["methods"]
    names = list(methods)
    calibrated = [m for m in names if "calibration" in methods[m]]
    if report["suite"].startswith("replay:"):
        _write_replay_plot(report, calibrated, path)
        return
    panels = 3 if calibrated else 2
    figure, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.8))
    speed, accepted = axes[0], axes[1]
    _method_bars(speed, methods, "speedup", "%.2fx", "speedup over ar (tokens/s, prefill included)")
    speed.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    for name in names:
        histogram = {int(k): v for k, v in methods[name]["accepted_histogram"].items()}
        total = sum(histogram.values())
        if name == "ar" or not total:
            continue
        ks = range(max(histogram) + 1)
        accepted.plot(ks, [histogram.get(k, 0) / total for k in ks], marker="o", label=name)
    accepted.xaxis.set_major_locator(MaxNLocator(integer=True))
    accepted.set_xlabel("draft tokens accepted in a step")
    accepted.set_ylabel("share of steps")
    accepted.legend(fontsize=7)
    if calibrated:
        _reliability_panel(axes[2], methods, calibrated)
    _finish(figure, report, path)


def _finish(figure: Any, report: dict[str, Any], path: Path) -> None:
    """Title the figure with the suite and the machine, write it, free it."""
    import matplotlib.pyplot as plt

    env = report["env"]
    figure.suptitle(
        f"{report['suite']}, {report['prompts']} prompts x {report['max_new_tokens']} tokens: "
        f"{env['model']} {env['dtype']} on {env['device']} "
        f"({env['cpu']}, {env['threads']} threads)",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _method_bars(axis: Any, methods: dict[str, Any], key: str, fmt: str, label: str) -> None:
    """One bar per method, labelled with its value, names slanted to fit."""
    names = list(methods)
    bars = axis.bar(names, [methods[m][key] for m in names], color="#4c72b0")
    axis.bar_label(bars, fmt=fmt, fontsize=8)
    axis.set_ylabel(label)
    axis.tick_params(axis="x", labelrotation=60, labelsize=8)
    for tick in axis.get_xticklabels():
        tick.set_horizontalalignment("right")


def _reliability_panel(axis: Any, methods: dict[str, Any], calibrated: list[str]) -> None:
    axis.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--")
    for name in calibrated:
        bins = [b for b in methods[name]["calibration"]["bins"] if b["reached"]]
        axis.plot(
            [b["predicted"] for b in bins], [b["observed"] for b in bins], marker="o", label=name
        )
    axis.set_xlabel("estimated acceptance of a node (its parent accepted)")
    axis.set_ylabel("observed acceptance")
    axis.set_title("calibration (reliability)", fontsize=9)
    axis.legend(fontsize=7)


def _write_replay_plot(report: dict[str, Any], calibrated: list[str], path: Path) -> None:
    import matplotlib.pyplot as plt

    figure, (bars_axis, reliability) = plt.subplots(1, 2, figsize=(13, 4.8))
    _method_bars(
        bars_axis, report["methods"], "tokens_per_forward", "%.2f",
        "tokens per forward (replayed on ar's output)",
    )  # fmt: skip
    _reliability_panel(reliability, report["methods"], calibrated)
    _finish(figure, report, path)
