"""How reelflow's HTTP servers (the API and the emulator) run under uvicorn."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from reelflow.logs import RedactQueryTokens

__all__ = ["server_config"]

_REDACT = RedactQueryTokens()


def server_config(
    app: Any, host: str, port: int, *, keepalive_s: int, **options: Any
) -> uvicorn.Config:
    """uvicorn's configuration for serving `app` on `host:port`: idle connections kept
    `keepalive_s` (HTTP_KEEPALIVE_S), and no webhook token in the access log."""
    config = uvicorn.Config(app, host=host, port=port, timeout_keep_alive=keepalive_s, **options)
    # After the Config: building it applies uvicorn's logging set-up. addFilter ignores repeats.
    logging.getLogger("uvicorn.access").addFilter(_REDACT)
    return config
