"""Schemathesis against the live API's OpenAPI schema."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.schemas import BaseSchema

T = TypeVar("T")


@pytest.fixture(scope="session")
async def session_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@pytest.fixture(scope="module")
async def open_schema(api_url: str) -> BaseSchema:
    return await asyncio.to_thread(schemathesis.openapi.from_url, f"{api_url}/openapi.json")


def blocking(loop: asyncio.AbstractEventLoop, func: Callable[..., T], *args: Any) -> T:
    return loop.run_until_complete(asyncio.to_thread(func, *args))


open_api = schemathesis.pytest.from_fixture("open_schema")


@open_api.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_open_api(case: Case, session_loop: asyncio.AbstractEventLoop) -> None:
    blocking(session_loop, case.call_and_validate)
