"""Replicate's HTTP API: predictions, their lifecycle, signed webhooks and output files.

Mounted under `/replicate`, so a client whose base URL is `http://host:port/replicate` sees the
same paths, bodies, statuses, error shapes and webhooks as with `https://api.replicate.com`.
Outputs are served from `/replicate/delivery/<id>/output.mp4`, standing in for
`replicate.delivery`.

`GET /v1/predictions` lists predictions as Replicate documents it: newest first, 100 a page,
`{"next", "previous", "results"}` with `next` and `previous` as absolute URLs carrying an opaque
`cursor`, filters `created_after` (inclusive) and `created_before` (exclusive), and results that
leave out `logs`, `webhook` and `webhook_events_filter` (Replicate's documented list result has
none of them; fetching a prediction shows them).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from reelflow.emulator.config import EmulatorConfig
from reelflow.emulator.errors import ProviderHTTPError
from reelflow.emulator.faults import FaultResponses, delay_create_response, request_faults
from reelflow.emulator.jobs import Job, JobBackend, JobEvent, Phase, backend_dependency
from reelflow.emulator.models import InputField, VideoModel, json_type
from reelflow.emulator.render import VideoSpec
from reelflow.emulator.state import StateDep
from reelflow.emulator.webhooks import standard_webhooks_signer

__all__ = [
    "MODELS",
    "PREFIX",
    "InputField",
    "Prediction",
    "PredictionStatus",
    "ReplicateBackend",
    "ReplicateModel",
    "WebhookEvent",
    "router",
]

PREFIX = "/replicate"
"""Where `router` is mounted."""

_PROBLEM_JSON = "application/problem+json"
_OUTPUT_FILENAME = "output.mp4"
# Replicate ids are 26 characters of lowercase base32 (digits and letters).
_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Replicate sends `logs` and `output` webhooks at most once per 500 ms per prediction.
_THROTTLE_SECONDS = 0.5
# `GET /v1/predictions` answers 100 predictions a page, as Replicate does.
_PAGE_SIZE = 100
# Keys of a prediction that the list leaves out.
_NOT_LISTED = frozenset({"logs", "webhook", "webhook_events_filter"})


class PredictionStatus(StrEnum):
    """A prediction's status, as Replicate spells it."""

    STARTING = "starting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        """Whether the prediction can no longer change."""
        return self not in {PredictionStatus.STARTING, PredictionStatus.PROCESSING}


_STATUS_OF_PHASE = {
    Phase.QUEUED: PredictionStatus.STARTING,
    Phase.RUNNING: PredictionStatus.PROCESSING,
    Phase.SUCCEEDED: PredictionStatus.SUCCEEDED,
    Phase.FAILED: PredictionStatus.FAILED,
    Phase.CANCELED: PredictionStatus.CANCELED,
}


class WebhookEvent(StrEnum):
    """Values of `webhook_events_filter`."""

    START = "start"
    OUTPUT = "output"
    LOGS = "logs"
    COMPLETED = "completed"


_ALL_EVENTS = tuple(WebhookEvent)
_THROTTLED_EVENTS = frozenset({WebhookEvent.LOGS, WebhookEvent.OUTPUT})


# --- Models --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicateModel(VideoModel):
    """An official model (`name` is `owner/name`), with the input schema Replicate publishes."""

    @property
    def version(self) -> str:
        """A stable 64-hex version id (made up: the emulator has one version per model)."""
        return hashlib.sha256(self.name.encode()).hexdigest()


_ASPECT_RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21")
_SEEDANCE_INPUTS: Mapping[str, InputField] = {
    "prompt": InputField("string", required=True),
    "image": InputField("uri"),
    "last_frame_image": InputField("uri"),
    "duration": InputField("integer", minimum=2, maximum=12),
    "resolution": InputField("string", choices=("480p", "720p", "1080p")),
    "aspect_ratio": InputField("string", choices=_ASPECT_RATIOS),
    "fps": InputField("integer", choices=(24,)),
    "camera_fixed": InputField("boolean"),
    "seed": InputField("integer"),
}

MODELS: Mapping[str, ReplicateModel] = {
    model.name: model
    for model in (
        ReplicateModel("bytedance/seedance-1-pro", _SEEDANCE_INPUTS, default_seconds=5, fps=24),
        ReplicateModel("bytedance/seedance-1-lite", _SEEDANCE_INPUTS, default_seconds=5, fps=24),
        ReplicateModel(
            "kwaivgi/kling-v2.1",
            {
                "prompt": InputField("string", required=True),
                "start_image": InputField("uri"),
                "end_image": InputField("uri"),
                "mode": InputField("string", choices=("standard", "pro")),
                "duration": InputField("integer", choices=(5, 10)),
                "negative_prompt": InputField("string"),
            },
            default_seconds=5,
            fps=24,
        ),
        ReplicateModel(
            "minimax/video-01",
            {
                "prompt": InputField("string", required=True),
                "first_frame_image": InputField("uri"),
                "subject_reference": InputField("uri"),
                "prompt_optimizer": InputField("boolean"),
            },
            default_seconds=6,
            fps=25,
        ),
    )
}
"""The models the emulator knows, by `owner/name`; add a row to support another."""

_MODELS_BY_VERSION = {model.version: model for model in MODELS.values()}


# --- Predictions ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Prediction(Job):
    """One prediction and everything needed to render it as Replicate's JSON."""

    model: ReplicateModel
    input: dict[str, Any]
    webhook_events_filter: list[WebhookEvent] | None = None
    last_sent: dict[WebhookEvent, float] = field(default_factory=dict)
    """Loop time at which each throttled webhook event was last sent."""

    @property
    def status(self) -> PredictionStatus:
        """The prediction's status, as Replicate names it."""
        return _STATUS_OF_PHASE[self.phase]

    def to_json(self, base_url: str, *, data_removed: bool = False) -> dict[str, Any]:
        """The prediction as Replicate's API and webhooks show it.

        Args:
            base_url: The emulator's Replicate base URL, e.g. `http://127.0.0.1:3001/replicate`.
            data_removed: Whether the input, output and logs are gone (an hour after the end).
        """
        output = None
        if self.outputs and not data_removed:
            output = f"{base_url}/delivery/{self.id}/{self.outputs[0].name}"
        body: dict[str, Any] = {
            "id": self.id,
            "model": self.model.name,
            "version": self.model.version,
            "input": {} if data_removed else self.input,
            "logs": "" if data_removed else "".join(f"{line.message}\n" for line in self.logs),
            "output": output,
            "data_removed": data_removed,
            "error": self.error,
            "status": self.status.value,
            "source": "api",
            "created_at": _timestamp(self.created_at),
            "started_at": _timestamp(self.started_at),
            "completed_at": _timestamp(self.completed_at),
            "urls": {
                "get": f"{base_url}/v1/predictions/{self.id}",
                "cancel": f"{base_url}/v1/predictions/{self.id}/cancel",
                "web": f"{base_url}/p/{self.id}",
            },
            "webhook": self.webhook,
            "webhook_events_filter": self.webhook_events_filter,
        }
        if self.completed_at is not None:
            metrics = {"total_time": (self.completed_at - self.created_at).total_seconds()}
            if self.run_seconds is not None:
                metrics["predict_time"] = self.run_seconds
            body["metrics"] = metrics
        return body


def _timestamp(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with microseconds and `Z`, as Replicate writes timestamps."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _base_url(config: EmulatorConfig) -> str:
    return config.public_url + PREFIX


def _position(prediction: Prediction) -> tuple[datetime, str]:
    """Where a prediction sorts in the list (the id breaks ties of equal timestamps)."""
    return prediction.created_at, prediction.id


def _cursor(reverse: bool, prediction: Prediction) -> str:
    """An opaque cursor next to `prediction`: after it, or before it when `reverse`.

    Shaped like the cursors of Django REST framework's CursorPagination, which Replicate's
    look like: base64 of `p=<position>`, with `r=1` for a previous page.
    """
    fields = {"p": prediction.created_at.isoformat(), "i": prediction.id}
    if reverse:
        fields = {"r": "1", **fields}
    return base64.b64encode(urlencode(fields).encode()).decode("ascii")


class _InvalidCursorError(ValueError):
    """A list cursor that this emulator did not hand out."""


def _page_bounds(listed: Sequence[Prediction], cursor: str | None) -> tuple[int, int]:
    """The slice of `listed` (newest first) that the page at `cursor` shows.

    Raises:
        _InvalidCursorError: the cursor is not one this emulator handed out.
    """
    if cursor is None:
        return 0, min(_PAGE_SIZE, len(listed))
    try:
        fields = parse_qs(base64.b64decode(cursor, validate=True).decode(), strict_parsing=True)
        position = (datetime.fromisoformat(fields["p"][0]), fields["i"][0])
        reverse = fields.get("r") == ["1"]
    except (binascii.Error, UnicodeDecodeError, KeyError, ValueError) as error:
        raise _InvalidCursorError(cursor) from error
    if position[0].tzinfo is None:
        raise _InvalidCursorError(cursor)
    # Newest first: the predictions sorting after `position` are older ones.
    newer = sum(1 for prediction in listed if _position(prediction) > position)
    if reverse:
        return max(0, newer - _PAGE_SIZE), newer
    start = sum(1 for prediction in listed if _position(prediction) >= position)
    return start, min(start + _PAGE_SIZE, len(listed))


class ReplicateBackend(JobBackend[Prediction]):
    """The predictions of one emulator app and the tasks that run them."""

    provider = "replicate"

    def create(
        self,
        *,
        model: ReplicateModel,
        inputs: dict[str, Any],
        webhook: str | None,
        webhook_events_filter: list[WebhookEvent] | None,
    ) -> Prediction:
        """Record a validated prediction and start running it in the background."""
        prediction = Prediction(
            id="".join(secrets.choice(_ID_ALPHABET) for _ in range(26)),
            model=model,
            input=inputs,
            webhook=webhook,
            webhook_events_filter=webhook_events_filter,
        )
        return self.start(prediction)

    def to_json(self, prediction: Prediction) -> dict[str, Any]:
        """The prediction's JSON as of now (its data removed once outputs expired)."""
        return prediction.to_json(
            _base_url(self._state.config), data_removed=self.expired(prediction)
        )

    def page(
        self,
        *,
        cursor: str | None,
        created_after: datetime | None,
        created_before: datetime | None,
        query: Mapping[str, str],
    ) -> dict[str, Any]:
        """One page of the prediction list, as `GET /v1/predictions` answers it.

        Args:
            cursor: Where the page starts, from an earlier page's `next` or `previous`.
            created_after: Only predictions created at or after this.
            created_before: Only predictions created before this.
            query: The request's other query parameters, kept in `next` and `previous`.

        Raises:
            _InvalidCursorError: the cursor is not one this emulator handed out.
        """
        listed = sorted(
            (
                prediction
                for prediction in self.jobs()
                if (created_after is None or prediction.created_at >= created_after)
                and (created_before is None or prediction.created_at < created_before)
            ),
            key=_position,
            reverse=True,
        )
        start, end = _page_bounds(listed, cursor)
        results = listed[start:end]
        url = f"{_base_url(self._state.config)}/v1/predictions"

        def link(reverse: bool, prediction: Prediction) -> str:
            return f"{url}?{urlencode({**query, 'cursor': _cursor(reverse, prediction)})}"

        return {
            "next": link(False, results[-1]) if results and end < len(listed) else None,
            "previous": link(True, results[0]) if results and start > 0 else None,
            "results": [
                {k: v for k, v in self.to_json(p).items() if k not in _NOT_LISTED} for p in results
            ],
        }

    def _video_spec(self, job: Prediction) -> VideoSpec:
        return job.model.video_spec(job.input)

    def _notify(self, job: Prediction, event: JobEvent) -> None:
        if event is JobEvent.CREATED:
            self._emit(job, WebhookEvent.START)
        elif event is JobEvent.LOG:
            self._emit(job, WebhookEvent.LOGS)
        else:
            if job.outputs:
                self._emit(job, WebhookEvent.OUTPUT)
            self._emit(job, WebhookEvent.COMPLETED)

    def _emit(self, prediction: Prediction, event: WebhookEvent) -> None:
        """Send the prediction's current JSON to its webhook, if it asked for `event`."""
        if prediction.webhook is None:
            return
        if event not in (prediction.webhook_events_filter or _ALL_EVENTS):
            return
        if event in _THROTTLED_EVENTS:
            now = asyncio.get_running_loop().time()
            if now - prediction.last_sent.get(event, float("-inf")) < _THROTTLE_SECONDS:
                return
            prediction.last_sent[event] = now
        body = json.dumps(self.to_json(prediction)).encode()
        sign = standard_webhooks_signer(self._state.config.replicate_webhook_secret, body)
        self._send_webhook(prediction, body, sign, final=event is WebhookEvent.COMPLETED)


# --- Request validation --------------------------------------------------------------------------


@dataclass(frozen=True)
class _InvalidField:
    type: str
    field: str
    description: str


def _validation_error(problems: list[_InvalidField]) -> ProviderHTTPError:
    """Replicate's 422: a `- field: description` line per problem, and the problems as a list."""
    return ProviderHTTPError(
        422,
        {
            "title": "Input validation failed",
            "detail": "\n".join(f"- {p.field}: {p.description}" for p in problems),
            "status": 422,
            "invalid_fields": [
                {"type": p.type, "field": p.field, "description": p.description} for p in problems
            ],
        },
        media_type=_PROBLEM_JSON,
    )


def _check_input(model: ReplicateModel, inputs: dict[str, Any]) -> list[_InvalidField]:
    """Validate `inputs` against the model's schema the way Replicate (JSON Schema) reports it."""
    problems: list[_InvalidField] = []
    for name, spec in model.inputs.items():
        if name not in inputs:
            if spec.required:
                problems.append(_InvalidField("required", "input", f"{name} is required"))
            continue
        value = inputs[name]
        path = f"input.{name}"
        expected = "string" if spec.kind == "uri" else spec.kind
        if json_type(value) != expected:
            problems.append(
                _InvalidField(
                    "invalid_type",
                    path,
                    f"Invalid type. Expected: {expected}, given: {json_type(value)}",
                )
            )
        elif spec.choices and value not in spec.choices:
            allowed = ", ".join(json.dumps(choice) for choice in spec.choices)
            problems.append(
                _InvalidField("enum", path, f"{path} must be one of the following: {allowed}")
            )
        elif spec.minimum is not None and value < spec.minimum:
            problems.append(
                _InvalidField(
                    "number_gte", path, f"Must be greater than or equal to {spec.minimum}"
                )
            )
        elif spec.maximum is not None and value > spec.maximum:
            problems.append(
                _InvalidField("number_lte", path, f"Must be less than or equal to {spec.maximum}")
            )
        elif spec.kind == "uri" and not urlsplit(value).scheme:
            problems.append(_InvalidField("format", path, "Does not match format 'uri'"))
    return problems


def _check_webhook(body: dict[str, Any]) -> list[_InvalidField]:
    problems: list[_InvalidField] = []
    webhook = body.get("webhook")
    if webhook is not None and (
        not isinstance(webhook, str)
        or urlsplit(webhook).scheme not in {"http", "https"}
        or not urlsplit(webhook).netloc
    ):
        problems.append(_InvalidField("format", "webhook", "Does not match format 'uri'"))
    events = body.get("webhook_events_filter")
    if events is None:
        return problems
    if not isinstance(events, list):
        problems.append(
            _InvalidField(
                "invalid_type",
                "webhook_events_filter",
                f"Invalid type. Expected: array, given: {json_type(events)}",
            )
        )
        return problems
    allowed = ", ".join(json.dumps(event.value) for event in WebhookEvent)
    for index, event in enumerate(events):
        if event not in set(WebhookEvent):
            path = f"webhook_events_filter.{index}"
            problems.append(
                _InvalidField("enum", path, f"{path} must be one of the following: {allowed}")
            )
    return problems


async def _read_json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError as error:
        raise ProviderHTTPError(
            400,
            {"title": "Invalid JSON", "detail": f"Invalid JSON: {error}", "status": 400},
            media_type=_PROBLEM_JSON,
        ) from error
    if not isinstance(body, dict):
        raise _validation_error(
            [
                _InvalidField(
                    "invalid_type",
                    "(root)",
                    f"Invalid type. Expected: object, given: {json_type(body)}",
                )
            ]
        )
    return body


def _create(backend: ReplicateBackend, model: ReplicateModel, body: dict[str, Any]) -> Prediction:
    """Validate a create request's body and start the prediction."""
    inputs = body.get("input")
    if not isinstance(inputs, dict):
        problem = (
            _InvalidField("required", "(root)", "input is required")
            if inputs is None
            else _InvalidField(
                "invalid_type",
                "input",
                f"Invalid type. Expected: object, given: {json_type(inputs)}",
            )
        )
        raise _validation_error([problem, *_check_webhook(body)])
    problems = _check_input(model, inputs) + _check_webhook(body)
    if problems:
        raise _validation_error(problems)
    events = body.get("webhook_events_filter")
    return backend.create(
        model=model,
        inputs=inputs,
        webhook=body.get("webhook"),
        webhook_events_filter=None if events is None else [WebhookEvent(e) for e in events],
    )


# --- Routes --------------------------------------------------------------------------------------


def _not_found() -> ProviderHTTPError:
    return ProviderHTTPError(
        404,
        {"detail": "The requested resource could not be found.", "status": 404},
        media_type=_PROBLEM_JSON,
    )


def _throttled(reset_seconds: int) -> ProviderHTTPError:
    """Replicate's 429: the wait in `Retry-After`, in `retry_after` and in words."""
    unit = "second" if reset_seconds == 1 else "seconds"
    return ProviderHTTPError(
        429,
        {
            "title": "Request was throttled.",
            "detail": f"Request was throttled. Expected available in {reset_seconds} {unit}.",
            "status": 429,
            "retry_after": reset_seconds,
        },
        media_type=_PROBLEM_JSON,
        headers={"Retry-After": str(reset_seconds)},
    )


def _unavailable() -> ProviderHTTPError:
    return ProviderHTTPError(
        503,
        {
            "title": "Service Unavailable",
            "detail": "The service is temporarily unavailable. Please try again.",
            "status": 503,
        },
        media_type=_PROBLEM_JSON,
    )


_FAULTS = FaultResponses(rate_limited=_throttled, unavailable=_unavailable)


_BackendDep = Annotated[ReplicateBackend, Depends(backend_dependency(ReplicateBackend))]


def _authenticate(request: Request, state: StateDep) -> None:
    """Accept `Authorization: Bearer <token>` (or the legacy `Token <token>`) for the one token."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = state.config.replicate_token
    if scheme.lower() not in {"bearer", "token"} or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise ProviderHTTPError(
            401,
            {
                "title": "Unauthenticated",
                "detail": "You did not pass a valid authentication token",
                "status": 401,
            },
            media_type=_PROBLEM_JSON,
        )


def _prediction_or_404(backend: ReplicateBackend, prediction_id: str) -> Prediction:
    prediction = backend.get(prediction_id)
    if prediction is None:
        raise _not_found()
    return prediction


def _model_for_version(reference: object) -> ReplicateModel:
    """Resolve `version` as `owner/name:version`, a bare version id or `owner/name`."""
    if reference is None:
        raise _validation_error([_InvalidField("required", "(root)", "version is required")])
    if isinstance(reference, str):
        name, _, version = reference.partition(":")
        if "/" not in name:
            name, version = "", name
        model = MODELS.get(name) if name else _MODELS_BY_VERSION.get(version)
        if model is not None and version in {"", model.version}:
            return model
    raise ProviderHTTPError(
        422,
        {
            "title": "Invalid version or not permitted",
            "detail": "The specified version does not exist (or perhaps you don't have permission"
            " to use it?)",
            "status": 422,
        },
        media_type=_PROBLEM_JSON,
    )


def _query_time(name: str, value: str | None) -> datetime | None:
    """An ISO 8601 date-time query parameter (UTC when it names no offset)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise ProviderHTTPError(
            400,
            {
                "title": "Invalid query parameter",
                "detail": f"{name} must be an ISO 8601 date-time, e.g. 2025-01-01T00:00:00Z",
                "status": 400,
            },
            media_type=_PROBLEM_JSON,
        ) from error
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_api = APIRouter(prefix="/v1", dependencies=[Depends(_authenticate)])
_create_faults = Depends(request_faults("replicate", "create", _FAULTS))
_status_faults = Depends(request_faults("replicate", "status", _FAULTS))


@_api.post("/models/{owner}/{name}/predictions", status_code=201, dependencies=[_create_faults])
async def create_model_prediction(
    owner: str, name: str, request: Request, backend: _BackendDep
) -> dict[str, Any]:
    """Create a prediction of an official model."""
    model = MODELS.get(f"{owner}/{name}")
    if model is None:
        raise _not_found()
    created = backend.to_json(_create(backend, model, await _read_json_object(request)))
    await delay_create_response(backend.behaviour)
    return created


@_api.post("/predictions", status_code=201, dependencies=[_create_faults])
async def create_prediction(request: Request, backend: _BackendDep) -> dict[str, Any]:
    """Create a prediction of a model version named by `version`."""
    body = await _read_json_object(request)
    created = backend.to_json(_create(backend, _model_for_version(body.get("version")), body))
    await delay_create_response(backend.behaviour)
    return created


@_api.get("/predictions", dependencies=[_status_faults])
async def list_predictions(
    request: Request,
    backend: _BackendDep,
    cursor: str | None = None,
    created_after: str | None = None,
    created_before: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """List predictions, newest first, a page of 100 at a time."""
    if source == "web":  # every prediction here was created through the API
        return {"next": None, "previous": None, "results": []}
    query = {k: v for k, v in request.query_params.items() if k != "cursor"}
    try:
        return backend.page(
            cursor=cursor,
            created_after=_query_time("created_after", created_after),
            created_before=_query_time("created_before", created_before),
            query=query,
        )
    except _InvalidCursorError as error:
        # Django REST framework's CursorPagination answers a bad cursor so.
        raise ProviderHTTPError(
            404, {"detail": "Invalid cursor", "status": 404}, media_type=_PROBLEM_JSON
        ) from error


@_api.get("/predictions/{prediction_id}", dependencies=[_status_faults])
async def get_prediction(prediction_id: str, backend: _BackendDep) -> dict[str, Any]:
    """Get a prediction's current state."""
    return backend.to_json(_prediction_or_404(backend, prediction_id))


@_api.post("/predictions/{prediction_id}/cancel")
async def cancel_prediction(prediction_id: str, backend: _BackendDep) -> dict[str, Any]:
    """Cancel a prediction; a finished one is returned unchanged."""
    prediction = _prediction_or_404(backend, prediction_id)
    backend.cancel(prediction)
    return backend.to_json(prediction)


@_api.get("/webhooks/default/secret")
async def get_webhook_secret(state: StateDep) -> dict[str, str]:
    """The secret that signs every webhook."""
    return {"key": state.config.replicate_webhook_secret}


router = APIRouter(tags=["replicate"])
"""Replicate's API (under `/v1`, authenticated), output files and prediction pages."""
router.include_router(_api)


@router.api_route("/delivery/{prediction_id}/{filename}", methods=["GET", "HEAD"])
async def get_output(
    prediction_id: str, filename: str, request: Request, backend: _BackendDep
) -> FileResponse:
    """Stream a prediction's video like `replicate.delivery`: public, gone once data is removed."""
    prediction = _prediction_or_404(backend, prediction_id)
    response = backend.output_response(request, prediction, filename)
    if response is None:
        raise _not_found()
    return response


@router.get("/p/{prediction_id}")
async def get_prediction_page(prediction_id: str, backend: _BackendDep) -> dict[str, Any]:
    """Stand-in for the prediction's web page (`urls.web`): its JSON, without a token."""
    return backend.to_json(_prediction_or_404(backend, prediction_id))
