"""The language server (pygls): documents, positions, editors. It reaches completions only
through the `Backend` port (backend.py) and imports no other project package."""

__all__: list[str] = []
