"""Error responses in each emulated provider's own shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

__all__ = ["ProviderHTTPError", "handle_provider_http_error"]


class ProviderHTTPError(Exception):
    """An error answered with exactly the status, headers and body the real provider would send.

    Raised from provider routes and their dependencies; `handle_provider_http_error` turns it
    into the response, so FastAPI's own error shape never leaks into a provider API.
    """

    def __init__(
        self,
        status_code: int,
        body: dict[str, Any] | str,
        *,
        media_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """An error response.

        Args:
            status_code: HTTP status.
            body: A JSON object, or already encoded text (e.g. a storage service's XML).
            media_type: The response's content type.
            headers: Extra response headers, e.g. `Retry-After`.
        """
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.body = body
        self.media_type = media_type
        self.headers = dict(headers or {})


async def handle_provider_http_error(request: Request, exc: ProviderHTTPError) -> Response:
    """Answer a `ProviderHTTPError` with its own status, headers and body."""
    if isinstance(exc.body, str):
        return Response(
            exc.body, status_code=exc.status_code, media_type=exc.media_type, headers=exc.headers
        )
    return JSONResponse(
        exc.body, status_code=exc.status_code, media_type=exc.media_type, headers=exc.headers
    )
