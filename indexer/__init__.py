"""The workspace indexer (watchdog + tree-sitter): which files count, their chunks, and a sink
told of every change. It imports no other project package."""

__all__: list[str] = []
