"""Replicate's HTTP API: predictions, their lifecycle, signed webhooks and output files.

Mounted under `/replicate`, so a client whose base URL is `http://host:port/replicate` sees the
same paths, bodies, statuses, error shapes and webhooks as with `https://api.replicate.com`.
Outputs are served from `/replicate/delivery/<id>/output.mp4`, standing in for
`replicate.delivery`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from reelflow.emulator.config import EmulatorConfig
from reelflow.emulator.errors import ProviderHTTPError
from reelflow.emulator.render import render_mp4
from reelflow.emulator.state import EmulatorState, StateDep
from reelflow.emulator.webhooks import WebhookDelivery, standard_webhooks_signer

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

logger = logging.getLogger(__name__)

PREFIX = "/replicate"
"""Where `router` is mounted."""

_PROBLEM_JSON = "application/problem+json"
_OUTPUT_FILENAME = "output.mp4"
# Replicate ids are 26 characters of lowercase base32 (digits and letters).
_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# A prediction sits in `starting` (queued, booting) for this share of its run, then `processing`.
_STARTING_SHARE = 0.2
_PROGRESS_STEPS = 4
# Replicate sends `logs` and `output` webhooks at most once per 500 ms per prediction.
_THROTTLE_SECONDS = 0.5
# The rendered clips are small: their long side has this many pixels.
_LONG_SIDE = 160


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
class InputField:
    """One property of a model's input schema (the subset of JSON Schema these models use)."""

    kind: Literal["string", "integer", "boolean", "uri"]
    """JSON type; `uri` is a string in the `uri` format."""

    required: bool = False
    """Whether the input must have it."""

    choices: tuple[str | int, ...] = ()
    """Allowed values (an `enum`), if restricted."""

    minimum: int | None = None
    """Smallest allowed integer."""

    maximum: int | None = None
    """Largest allowed integer."""


@dataclass(frozen=True)
class ReplicateModel:
    """An official model the emulator runs, with the input schema Replicate publishes for it."""

    name: str
    """`owner/name`."""

    inputs: Mapping[str, InputField]
    """Input schema; properties not listed are accepted and ignored, as Replicate does."""

    default_seconds: float
    """Video length when the input has no `duration`."""

    fps: int
    """Frame rate of the model's videos."""

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


@dataclass
class Prediction:
    """One prediction and everything needed to render it as Replicate's JSON."""

    id: str
    model: ReplicateModel
    input: dict[str, Any]
    webhook: str | None
    webhook_events_filter: list[WebhookEvent] | None
    created_at: datetime
    status: PredictionStatus = PredictionStatus.STARTING
    logs: str = ""
    output: str | None = None
    error: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    task: asyncio.Task[None] | None = None
    last_sent: dict[WebhookEvent, float] = field(default_factory=dict)
    """Loop time at which each throttled webhook event was last sent."""

    def to_json(self, base_url: str) -> dict[str, Any]:
        """The prediction as Replicate's API and webhooks show it.

        Args:
            base_url: The emulator's Replicate base URL, e.g. `http://127.0.0.1:3001/replicate`.
        """
        body: dict[str, Any] = {
            "id": self.id,
            "model": self.model.name,
            "version": self.model.version,
            "input": self.input,
            "logs": self.logs,
            "output": self.output,
            "data_removed": False,
            "error": self.error,
            "status": self.status.value,
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
            if self.started_at is not None:
                metrics["predict_time"] = (self.completed_at - self.started_at).total_seconds()
            body["metrics"] = metrics
        return body


def _timestamp(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with microseconds and `Z`, as Replicate writes timestamps."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _base_url(config: EmulatorConfig) -> str:
    return config.public_url + PREFIX


class ReplicateBackend:
    """The predictions of one emulator app and the tasks that run them."""

    def __init__(self, state: EmulatorState) -> None:
        """Run predictions with the shared `state` (config, outputs, webhooks, stats)."""
        self._state = state
        self._predictions: dict[str, Prediction] = {}

    def get(self, prediction_id: str) -> Prediction | None:
        """The prediction with this id, if there is one."""
        return self._predictions.get(prediction_id)

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
            created_at=datetime.now(UTC),
        )
        self._predictions[prediction.id] = prediction
        self._state.stats.record_created(webhook)
        prediction.task = asyncio.create_task(self._run(prediction))
        logger.info("Created prediction %s of %s", prediction.id, model.name)
        self._emit(prediction, WebhookEvent.START)
        return prediction

    def cancel(self, prediction: Prediction) -> None:
        """Stop a running prediction; a finished one is left as it is."""
        if prediction.status.terminal:
            return
        if prediction.task is not None:
            prediction.task.cancel()
        self._state.stats.canceled += 1
        self._finish(prediction, PredictionStatus.CANCELED)

    async def reset(self) -> None:
        """Stop every running prediction and forget all of them."""
        tasks = [p.task for p in self._predictions.values() if p.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._predictions.clear()

    async def _run(self, prediction: Prediction) -> None:
        """Move a prediction through `starting` → `processing` → a terminal state."""
        config = self._state.config
        jitter = config.generation_jitter_seconds
        total = max(0.0, config.generation_seconds + random.uniform(-jitter, jitter))
        try:
            await asyncio.sleep(total * _STARTING_SHARE)
            prediction.status = PredictionStatus.PROCESSING
            prediction.started_at = datetime.now(UTC)
            seed = prediction.input.get("seed")
            if not isinstance(seed, int):
                seed = random.randrange(2**31)
            self._log(prediction, f"Using seed: {seed}")
            for step in range(_PROGRESS_STEPS):
                self._log(prediction, f"Generating video... {100 * step // _PROGRESS_STEPS}%")
                await asyncio.sleep(total * (1 - _STARTING_SHARE) / _PROGRESS_STEPS)
            self._log(prediction, "Generating video... 100%")

            # Read the config again: a PATCH while the prediction ran applies to its outcome.
            config = self._state.config
            if random.random() < config.failure_rate:
                self._finish(prediction, PredictionStatus.FAILED, error=config.failure_message)
                return
            path = self._state.outputs.path(
                provider="replicate", job_id=prediction.id, filename=_OUTPUT_FILENAME
            )
            width, height = _frame_size(str(prediction.input.get("aspect_ratio", "16:9")))
            await asyncio.to_thread(
                render_mp4,
                path,
                prompt=str(prediction.input.get("prompt", "")),
                seconds=float(prediction.input.get("duration", prediction.model.default_seconds)),
                width=width,
                height=height,
                fps=prediction.model.fps,
                seed=seed,
            )
            self._log(prediction, f"Video saved ({path.stat().st_size} bytes)")
            output = f"{_base_url(config)}/delivery/{prediction.id}/{_OUTPUT_FILENAME}"
            self._finish(prediction, PredictionStatus.SUCCEEDED, output=output)
        except Exception as error:
            # A bug or a full disk must end the prediction like a real crash, not leave it
            # `processing` forever.
            logger.exception("Prediction %s crashed", prediction.id)
            self._finish(
                prediction, PredictionStatus.FAILED, error=f"{type(error).__name__}: {error}"
            )

    def _log(self, prediction: Prediction, line: str) -> None:
        prediction.logs += line + "\n"
        self._emit(prediction, WebhookEvent.LOGS)

    def _finish(
        self,
        prediction: Prediction,
        status: PredictionStatus,
        *,
        output: str | None = None,
        error: str | None = None,
    ) -> None:
        prediction.status = status
        prediction.output = output
        prediction.error = error
        prediction.completed_at = datetime.now(UTC)
        logger.info("Prediction %s %s", prediction.id, status.value)
        if output is not None:
            self._emit(prediction, WebhookEvent.OUTPUT)
        self._emit(prediction, WebhookEvent.COMPLETED)

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
        config = self._state.config
        body = json.dumps(prediction.to_json(_base_url(config))).encode()
        delivery = WebhookDelivery(
            url=prediction.webhook,
            body=body,
            sign=standard_webhooks_signer(config.replicate_webhook_secret, body),
            final=event is WebhookEvent.COMPLETED,
        )
        self._state.webhooks.send(prediction.id, delivery, config)


def _frame_size(aspect_ratio: str) -> tuple[int, int]:
    """Even width and height of a small frame with this `W:H` aspect ratio."""
    ratio_w, ratio_h = (int(part) for part in aspect_ratio.split(":"))
    short = max(2, round(_LONG_SIDE * min(ratio_w, ratio_h) / max(ratio_w, ratio_h) / 2) * 2)
    return (_LONG_SIDE, short) if ratio_w >= ratio_h else (short, _LONG_SIDE)


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


def _json_type(value: object) -> str:
    """The JSON Schema type name of a decoded JSON value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        # JSON Schema counts 5.0 as an integer.
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


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
        if _json_type(value) != expected:
            problems.append(
                _InvalidField(
                    "invalid_type",
                    path,
                    f"Invalid type. Expected: {expected}, given: {_json_type(value)}",
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
                f"Invalid type. Expected: array, given: {_json_type(events)}",
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
                    f"Invalid type. Expected: object, given: {_json_type(body)}",
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
                f"Invalid type. Expected: object, given: {_json_type(inputs)}",
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


def _get_backend(request: Request) -> ReplicateBackend:
    """The app's `ReplicateBackend` (a FastAPI dependency)."""
    backend: ReplicateBackend = request.app.state.replicate
    return backend


_BackendDep = Annotated[ReplicateBackend, Depends(_get_backend)]


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


_api = APIRouter(prefix="/v1", dependencies=[Depends(_authenticate)])


@_api.post("/models/{owner}/{name}/predictions", status_code=201)
async def create_model_prediction(
    owner: str, name: str, request: Request, backend: _BackendDep, state: StateDep
) -> dict[str, Any]:
    """Create a prediction of an official model."""
    model = MODELS.get(f"{owner}/{name}")
    if model is None:
        raise _not_found()
    prediction = _create(backend, model, await _read_json_object(request))
    return prediction.to_json(_base_url(state.config))


@_api.post("/predictions", status_code=201)
async def create_prediction(
    request: Request, backend: _BackendDep, state: StateDep
) -> dict[str, Any]:
    """Create a prediction of a model version named by `version`."""
    body = await _read_json_object(request)
    prediction = _create(backend, _model_for_version(body.get("version")), body)
    return prediction.to_json(_base_url(state.config))


@_api.get("/predictions/{prediction_id}")
async def get_prediction(
    prediction_id: str, backend: _BackendDep, state: StateDep
) -> dict[str, Any]:
    """Get a prediction's current state."""
    return _prediction_or_404(backend, prediction_id).to_json(_base_url(state.config))


@_api.post("/predictions/{prediction_id}/cancel")
async def cancel_prediction(
    prediction_id: str, backend: _BackendDep, state: StateDep
) -> dict[str, Any]:
    """Cancel a prediction; a finished one is returned unchanged."""
    prediction = _prediction_or_404(backend, prediction_id)
    backend.cancel(prediction)
    return prediction.to_json(_base_url(state.config))


@_api.get("/webhooks/default/secret")
async def get_webhook_secret(state: StateDep) -> dict[str, str]:
    """The secret that signs every webhook."""
    return {"key": state.config.replicate_webhook_secret}


router = APIRouter(tags=["replicate"])
"""Replicate's API (under `/v1`, authenticated), output files and prediction pages."""
router.include_router(_api)


@router.api_route("/delivery/{prediction_id}/" + _OUTPUT_FILENAME, methods=["GET", "HEAD"])
async def get_output(prediction_id: str, backend: _BackendDep, state: StateDep) -> FileResponse:
    """Stream a succeeded prediction's video, like `replicate.delivery` (public, no token)."""
    prediction = _prediction_or_404(backend, prediction_id)
    if prediction.output is None:
        raise _not_found()
    path = state.outputs.path(provider="replicate", job_id=prediction.id, filename=_OUTPUT_FILENAME)
    if not path.is_file():
        raise _not_found()
    return FileResponse(path, media_type="video/mp4")


@router.get("/p/{prediction_id}")
async def get_prediction_page(
    prediction_id: str, backend: _BackendDep, state: StateDep
) -> dict[str, Any]:
    """Stand-in for the prediction's web page (`urls.web`): its JSON, without a token."""
    return _prediction_or_404(backend, prediction_id).to_json(_base_url(state.config))
