"""Provider callbacks."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status

from api.deps import ServicesDep
from api.schemas import ErrorDetail
from reelflow.providers.errors import ProviderError, WebhookVerificationError
from reelflow.webhooks import InvalidWebhookToken, UnknownJob, receive_webhook

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])


@router.post(
    "/job/{job_record_id}",
    responses={
        401: {"model": ErrorDetail, "description": "Bad token or bad or stale signature"},
        404: {"model": ErrorDetail, "description": "No such job"},
        503: {"model": ErrorDetail, "description": "Verification unavailable; deliver again later"},
    },
)
async def job_webhook(
    services: ServicesDep,
    job_record_id: str,
    request: Request,
    token: Annotated[str | None, Query(max_length=128)] = None,
) -> dict[str, str]:
    """Verify a provider's callback and pass it to the job's workflow; answers in milliseconds."""
    body = await request.body()
    try:
        outcome = await receive_webhook(
            db=services.db,
            temporal=services.temporal,
            providers=services.providers,
            webhook_secret=services.webhook_secret,
            task_queue=services.settings.task_queue,
            job_record_id=job_record_id,
            token=token,
            headers=request.headers,
            body=body,
        )
    except InvalidWebhookToken as error:
        logger.warning("[Webhook] Refused webhook for job %s: bad or missing token", job_record_id)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "webhook rejected: bad token") from error
    except UnknownJob as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job") from error
    except WebhookVerificationError as error:
        logger.warning("[Webhook] Rejected webhook for job %s: %s", job_record_id, error)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"webhook rejected: {error}") from error
    except ProviderError as error:
        # We could not fetch what verification needs (the signing secret): the provider should
        # deliver again later, which a 5xx asks for.
        logger.error("[Webhook] Cannot verify webhook for job %s: %s", job_record_id, error)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "webhook verification is unavailable"
        ) from error
    return {"result": outcome.value}
