"""Language server (pygls) adapter. Imports no other project package; arrives with its issue."""

__all__: list[str] = []
