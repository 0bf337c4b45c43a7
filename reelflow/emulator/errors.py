"""Error responses in each emulated provider's own shape."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

__all__ = ["ProviderHTTPError", "handle_provider_http_error"]


class ProviderHTTPError(Exception):
    """An error answered with exactly the status and JSON body the real provider would send.

    Raised from provider routes and their dependencies; `handle_provider_http_error` turns it
    into the response, so FastAPI's own error shape never leaks into a provider API.
    """

    def __init__(
        self, status_code: int, body: dict[str, Any], *, media_type: str = "application/json"
    ) -> None:
        super().__init__(body.get("detail", status_code))
        self.status_code = status_code
        self.body = body
        self.media_type = media_type


async def handle_provider_http_error(request: Request, exc: ProviderHTTPError) -> Response:
    """Answer a `ProviderHTTPError` with its own status and body."""
    return JSONResponse(exc.body, status_code=exc.status_code, media_type=exc.media_type)
