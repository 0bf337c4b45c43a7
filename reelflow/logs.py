"""Process-wide logging set-up for reelflow's commands."""

from __future__ import annotations

import logging
import os
import re

__all__ = ["RedactQueryTokens", "configure_logging"]

_QUERY_TOKEN = re.compile(r"([?&]token=)[^&\s]*")


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


class RedactQueryTokens(logging.Filter):
    """Masks `token=` values in a record's arguments.

    Webhook URLs carry a per-job token in their query string, and uvicorn's access log prints
    every request's query string.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _QUERY_TOKEN.sub(r"\1redacted", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True
