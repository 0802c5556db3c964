"""The engine: model loading, greedy and speculative decoding, drafters.

The only place torch and transformers are imported. Importing this package itself stays cheap;
the heavy modules are imported by name where they are used.
"""

__all__: list[str] = []
