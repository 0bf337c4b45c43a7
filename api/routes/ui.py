"""The run viewer: a static page at `/` and the two small endpoints it reads.

The page and its assets are public (they hold no data; the page asks for an API key when the
API has keys). `GET /api/ui-config` and `GET /api/ui/examples` are authenticated like every other
`/api` route.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse
from pydantic import BaseModel

from api.deps import UNAUTHORIZED, ServicesDep, TenantDep

__all__ = ["UiConfig", "UiExample", "UiExamples", "router"]

logger = logging.getLogger(__name__)

UI_DIR = Path(__file__).resolve().parents[1] / "ui"
"""The page's static files (`api/ui/`)."""
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
"""The repository's example plans; absent outside a checkout, where the list is empty."""

# The only files served under /ui/, so no request can name anything else on the disk.
_ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}

# The page builds its DOM with textContent and loads scripts and styles from this origin only;
# outputs may be on a CDN (S3 mode), so media and images may come from any http(s) origin, and
# from blob: URLs (files fetched with the API key when the API has keys).
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' blob: data: http: https:; media-src 'self' blob: http: https:; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files that change with the code: revalidate (ETag) rather than serve stale.
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["ui"])


class UiConfig(BaseModel):
    """What the page needs to know about this deployment."""

    temporalUiUrl: str
    """Base URL of the Temporal Web UI, for links to each execution's workflow."""
    temporalNamespace: str
    """The Temporal namespace the workflows run in."""
    filesBaseUrl: str | None
    """Base URL of outputs that this API serves under `/files/` (the local store), which want
    the API key; null when outputs are in S3 behind a CDN."""


class UiExample(BaseModel):
    """One example plan from the repository's `examples/` directory."""

    name: str
    """The file name, e.g. `storyboard.json`."""
    plan: dict[str, Any]
    """The submission body, as `POST /api/execute` takes it."""


class UiExamples(BaseModel):
    """The example plans, by file name."""

    examples: list[UiExample]


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """The run viewer page."""
    return FileResponse(UI_DIR / "index.html", media_type="text/html", headers=_PAGE_HEADERS)


@router.get("/ui/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    """A script or stylesheet of the page."""
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such asset")
    return FileResponse(UI_DIR / name, media_type=media_type, headers=_PAGE_HEADERS)


@router.get("/api/ui-config", response_model=UiConfig, responses=UNAUTHORIZED)
async def ui_config(services: ServicesDep, tenant: TenantDep) -> UiConfig:
    """Where the Temporal Web UI is, for the page's links."""
    settings = services.settings
    return UiConfig(
        temporalUiUrl=settings.temporal_ui_url.rstrip("/"),
        temporalNamespace=settings.temporal_namespace,
        filesBaseUrl=settings.public_files_base if settings.s3_bucket is None else None,
    )


@router.get("/api/ui/examples", response_model=UiExamples, responses=UNAUTHORIZED)
async def ui_examples(tenant: TenantDep) -> UiExamples:
    """The example plans, to preload the page's submit form."""
    return UiExamples(examples=await asyncio.to_thread(_read_examples, EXAMPLES_DIR))


def _read_examples(directory: Path) -> list[UiExample]:
    examples = []
    for path in sorted(directory.glob("*.json")):
        try:
            plan = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            # A broken example should not take the page's form down with it.
            logger.warning("Skipping example %s: %s", path.name, error)
            continue
        if isinstance(plan, dict):
            examples.append(UiExample(name=path.name, plan=plan))
    return examples
