"""`codeswift serve`: the composition root of the language server (lsp) and its backend."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging

from daemon.service import Service
from lsp.server import build_server
from lsp.settings import Settings

__all__ = ["serve"]

logger = logging.getLogger(__name__)


def serve(
    model: str,
    device: str,
    dtype: str,
    address: tuple[str, int] | None = None,
    backend: str = "auto",
) -> None:
    """Run until the client exits (stdio) or forever (tcp)."""
    service = Service(backend)
    server = build_server(service, importlib.metadata.version("codeswift"))
    # the command line sets the defaults; clients' settings override them
    server.settings = dataclasses.replace(Settings(), model=model, device=device, dtype=dtype)
    try:
        if address is None:
            server.start_io()
        else:
            logger.info("listening on %s:%d", *address)
            server.start_tcp(*address)
    finally:
        service.shutdown()
