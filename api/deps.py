"""Typed dependencies of the API's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.services import Services

__all__ = ["ServicesDep"]


def get_services(request: Request) -> Services:
    """The services opened in the app's lifespan."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
