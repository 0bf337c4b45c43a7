"""Scripted provider APIs for the adapter tests: httpx handlers and the clients that use them."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import httpx

__all__ = [
    "Handler",
    "MockHttp",
    "answer",
    "echo_authorization",
    "no_requests",
    "refuse_echoing_authorization",
]

Handler = (
    Callable[[httpx.Request], httpx.Response]
    | Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
)
MockHttp = Callable[[Handler], httpx.AsyncClient]


def answer(
    data: Any = None,
    status: int = 200,
    *,
    text: str | None = None,
    headers: dict[str, str] | None = None,
) -> Handler:
    """A handler that answers every request with `data` as JSON (or with `text`)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text, headers=headers)
        return httpx.Response(status, json=data, headers=headers)

    return handler


def no_requests(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected request {request.method} {request.url}")


def echo_authorization(status: int) -> Handler:
    """A misbehaving server that puts the request's Authorization header into its error."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"detail": f"bad {request.headers['authorization']}"})

    return handler


def refuse_echoing_authorization(request: httpx.Request) -> httpx.Response:
    """A network failure whose message carries the request's Authorization header."""
    raise httpx.ConnectError(f"refused {request.headers['authorization']}")
