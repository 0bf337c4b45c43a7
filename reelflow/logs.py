"""Process-wide logging set-up for reelflow's commands."""

from __future__ import annotations

import logging
import os

__all__ = ["configure_logging"]


def configure_logging() -> None:
    """Log to stderr at `LOG_LEVEL` (INFO by default) with the logger name in each line."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO, URLs included; keep those for debugging only.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # pgserver narrates every command it runs at INFO.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
