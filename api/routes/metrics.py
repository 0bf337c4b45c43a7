"""The API process's Prometheus metrics.

`GET /metrics` serves this process's registry (webhook deliveries by result, and the Python
process collectors) in Prometheus' text format. Jobs, polls, bytes and cost are counted by the
worker and served on its own port (`WORKER_METRICS_PORT`).

The numbers span every tenant, so a tenant's API key does not open them. The API must face the
internet (providers deliver webhooks to it), so in production set `METRICS_TOKEN` and give it
to Prometheus (`authorization: {credentials: …}` in the scrape config); without it the route
is open, which is for a loopback or private network only. The route is left out of the OpenAPI
schema: it is for operators, not for API clients.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from api.deps import ServicesDep

__all__ = ["router"]

router = APIRouter(tags=["metrics"], include_in_schema=False)


def _authorised(request: Request, token: str) -> bool:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), token.encode()
    )


@router.get("/metrics")
async def metrics(services: ServicesDep, request: Request) -> Response:
    """This process's metrics in Prometheus' text format (`Bearer $METRICS_TOKEN` when set)."""
    token = services.settings.metrics_token
    if token is not None and not _authorised(request, token.get_secret_value()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "metrics need `Authorization: Bearer <METRICS_TOKEN>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
