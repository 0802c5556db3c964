"""codeswift daemon: the composition root (command line, configuration) and the engine."""

__all__: list[str] = []
