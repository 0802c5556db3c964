"""Workspace indexer (watchdog + tree-sitter). Imports no other project package; arrives with its
issue."""

__all__: list[str] = []
