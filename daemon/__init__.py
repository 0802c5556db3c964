"""codeswift's daemon: the command line, the language server's backend and the wiring (the
composition root), the engine (`engine/`) and the benchmarks (`bench/`, never imported by the
product)."""

__all__: list[str] = []
