"""fal's queue API: requests, their lifecycle, signed webhooks, the JWKS and output files.

Mounted under `/fal`, so a client whose queue base URL is `http://host:port/fal` sees the same
paths, bodies, statuses, error shapes and webhooks as with `https://queue.fal.run`:

- `POST /{model_id}[?fal_webhook=<url>]` submits; the answer's `status_url`, `response_url` and
  `cancel_url` address the request under the model's app (`owner/app`), without the endpoint's
  subpath, as fal does.
- `GET /{owner}/{app}/requests/{id}/status[?logs=1]`, `GET /{owner}/{app}/requests/{id}` (the
  result) and `PUT /{owner}/{app}/requests/{id}/cancel`.
- Webhooks are signed with Ed25519; the public key is at `GET /.well-known/jwks.json` (fal
  publishes it at `https://rest.alpha.fal.ai/.well-known/jwks.json`).
- Outputs are served from `/files/{id}/output.mp4`, standing in for fal's CDN (`fal.media`).
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse

from reelflow.emulator.errors import ProviderHTTPError
from reelflow.emulator.faults import FaultResponses, delay_create_response, request_faults
from reelflow.emulator.jobs import Job, JobBackend, JobEvent, Phase, backend_dependency
from reelflow.emulator.models import InputField, VideoModel
from reelflow.emulator.render import VideoSpec
from reelflow.emulator.state import StateDep
from reelflow.emulator.webhooks import fal_jwks, fal_webhook_signer

__all__ = ["MODELS", "PREFIX", "FalBackend", "FalModel", "FalRequest", "router"]

PREFIX = "/fal"
"""Where `router` is mounted."""

_OUTPUT_FILENAME = "output.mp4"
_CONTENT_POLICY_URL = "https://docs.fal.ai/errors#content_policy_violation"
# A 5xx from fal's ingress is nginx's page; fal's clients retry exactly those.
_INGRESS_503 = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>"
    "\r\n</body>\r\n</html>\r\n"
)


# --- Models --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FalModel(VideoModel):
    """An endpoint (`name` is its full id, e.g. `fal-ai/kling-video/v2.1/master/text-to-video`)."""

    @property
    def app(self) -> str:
        """`owner/app`: the endpoint id without its subpath, which queue URLs use."""
        owner, app, *_ = self.name.split("/")
        return f"{owner}/{app}"


_KLING_DURATION = InputField("string", choices=("5", "10"))
_KLING_COMMON: Mapping[str, InputField] = {
    "prompt": InputField("string", required=True),
    "duration": _KLING_DURATION,
    "negative_prompt": InputField("string"),
    "cfg_scale": InputField("number", minimum=0, maximum=1),
}
_KLING_TEXT_TO_VIDEO: Mapping[str, InputField] = {
    **_KLING_COMMON,
    "aspect_ratio": InputField("string", choices=("16:9", "9:16", "1:1")),
}

MODELS: Mapping[str, FalModel] = {
    model.name: model
    for model in (
        FalModel(
            "fal-ai/kling-video/v2.1/master/text-to-video",
            _KLING_TEXT_TO_VIDEO,
            default_seconds=5,
            fps=24,
        ),
        FalModel(
            "fal-ai/kling-video/v2.1/standard/image-to-video",
            {**_KLING_COMMON, "image_url": InputField("string", required=True)},
            default_seconds=5,
            fps=24,
        ),
        FalModel(
            "fal-ai/kling-video/v1.6/standard/text-to-video",
            _KLING_TEXT_TO_VIDEO,
            default_seconds=5,
            fps=24,
        ),
        FalModel(
            "fal-ai/minimax/hailuo-02/standard/text-to-video",
            {
                "prompt": InputField("string", required=True),
                "duration": InputField("string", choices=("6", "10")),
                "prompt_optimizer": InputField("boolean"),
            },
            default_seconds=6,
            fps=25,
        ),
    )
}
"""The endpoints the emulator runs, by id, with the input schemas fal publishes for them."""


# --- Requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    """How fal reports a request that did not produce a result."""

    status_code: int
    """The result endpoint's HTTP status."""

    body: dict[str, Any]
    """The result endpoint's body, also the webhook's `payload`."""

    error_type: str
    """Machine-readable category (`X-Fal-Error-Type`)."""

    @property
    def summary(self) -> str:
        """The `error` of the status and of the webhook."""
        return f"Invalid status code: {self.status_code}"

    @classmethod
    def request_error(cls, status_code: int, detail: str, error_type: str) -> _Failure:
        """An infrastructure-level failure, in fal's "request error" shape."""
        return cls(status_code, {"detail": detail, "error_type": error_type}, error_type)


@dataclass(kw_only=True)
class FalRequest(Job):
    """One queue request."""

    model: FalModel
    input: dict[str, Any]

    def failure(self) -> _Failure | None:
        """What went wrong, once the request ended without a result."""
        if self.phase is Phase.CANCELED:
            message = "Request was cancelled by the client"
            return _Failure.request_error(499, message, "client_cancelled")
        if self.phase is not Phase.FAILED:
            return None
        if self.crashed:
            return _Failure.request_error(500, "Internal Server Error", "runner_server_error")
        # A failure by `failure_rate` is a content-policy rejection of the prompt.
        problem = {
            "loc": ["body", "prompt"],
            "msg": self.error,
            "type": "content_policy_violation",
            "url": _CONTENT_POLICY_URL,
            "input": self.input.get("prompt"),
        }
        return _Failure(422, {"detail": [problem]}, "content_policy_violation")

    def result(self, base_url: str) -> dict[str, Any]:
        """The model's output, as the result endpoint and a successful webhook show it."""
        output = self.outputs[0]
        return {
            "video": {
                "url": f"{base_url}/files/{self.id}/{output.name}",
                "content_type": "video/mp4",
                "file_name": output.name,
                "file_size": output.size,
            }
        }


class FalBackend(JobBackend[FalRequest]):
    """The queue requests of one emulator app and the tasks that run them."""

    provider = "fal"

    @property
    def base_url(self) -> str:
        """The emulator's stand-in for `https://queue.fal.run`."""
        return self._state.config.public_url + PREFIX

    def submit(self, *, model: FalModel, inputs: dict[str, Any], webhook: str | None) -> FalRequest:
        """Queue a validated request and start running it in the background."""
        request = FalRequest(id=str(uuid.uuid4()), model=model, input=inputs, webhook=webhook)
        return self.start(request)

    def urls(self, request: FalRequest) -> dict[str, str]:
        """The request's queue URLs, under its app (no endpoint subpath)."""
        response_url = f"{self.base_url}/{request.model.app}/requests/{request.id}"
        return {
            "response_url": response_url,
            "status_url": f"{response_url}/status",
            "cancel_url": f"{response_url}/cancel",
        }

    def queue_position(self, request: FalRequest) -> int:
        """How many queued requests for the same app are ahead of this one."""
        ahead = 0
        for other in self.jobs():
            if other is request:
                break
            ahead += other.phase is Phase.QUEUED and other.model.app == request.model.app
        return ahead

    def status(self, request: FalRequest, *, with_logs: bool) -> dict[str, Any]:
        """The status endpoint's body."""
        body: dict[str, Any] = {"request_id": request.id, **self.urls(request)}
        body["logs"] = (
            [
                {
                    "message": line.message,
                    "level": "INFO",
                    "source": "user",
                    "timestamp": line.at.isoformat(),
                }
                for line in request.logs
            ]
            if with_logs
            else None
        )
        if request.phase is Phase.QUEUED:
            return {"status": "IN_QUEUE", "queue_position": self.queue_position(request), **body}
        if request.phase is Phase.RUNNING:
            return {"status": "IN_PROGRESS", **body}
        body["metrics"] = {"inference_time": request.run_seconds}
        failure = request.failure()
        if failure is not None:
            body["error"] = failure.summary
            body["error_type"] = failure.error_type
        return {"status": "COMPLETED", **body}

    def _video_spec(self, job: FalRequest) -> VideoSpec:
        return job.model.video_spec(job.input)

    def _notify(self, job: FalRequest, event: JobEvent) -> None:
        if event is not JobEvent.FINISHED:
            return
        failure = job.failure()
        envelope: dict[str, Any] = {
            "request_id": job.id,
            "gateway_request_id": job.id,
            "status": "OK" if failure is None else "ERROR",
            "payload": job.result(self.base_url) if failure is None else failure.body,
            "error": None if failure is None else failure.summary,
        }
        # fal serializes with Python's defaults and sorted keys; the signature covers the bytes.
        body = json.dumps(envelope, sort_keys=True).encode()
        config = self._state.config
        sign = fal_webhook_signer(
            config.fal_webhook_signing_key, user_id=config.fal_user_id, request_id=job.id, body=body
        )
        self._send_webhook(job, body, sign, final=True)


# --- Request validation --------------------------------------------------------------------------

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def _problem(
    loc: list[str | int], msg: str, kind: str, ctx: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One entry of fal's 422 `detail` list (FastAPI's shape over pydantic v1 errors)."""
    problem: dict[str, Any] = {"loc": loc, "msg": msg, "type": kind}
    if ctx is not None:
        problem["ctx"] = ctx
    return problem


def _validation_error(problems: list[dict[str, Any]]) -> ProviderHTTPError:
    return ProviderHTTPError(422, {"detail": problems})


def _coerce(name: str, spec: InputField, value: object) -> tuple[object, dict[str, Any] | None]:
    """`value` as fal's input model (pydantic v1) would take it, or the problem it reports."""
    loc: list[str | int] = ["body", name]
    if spec.choices:
        # String enums: the member's exact value only (`5` is not `"5"`).
        if isinstance(value, str) and value in spec.choices:
            return value, None
        permitted = ", ".join(repr(choice) for choice in spec.choices)
        message = f"value is not a valid enumeration member; permitted: {permitted}"
        return value, _problem(loc, message, "type_error.enum", {"enum_values": spec.choices})
    if spec.kind in {"string", "uri"}:
        if isinstance(value, str):
            return value, None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value), None
        return value, _problem(loc, "str type expected", "type_error.str")
    if spec.kind == "boolean":
        if isinstance(value, bool):
            return value, None
        text = str(value).lower() if isinstance(value, str | int) else None
        if text in _TRUE or text in _FALSE:
            return text in _TRUE, None
        return value, _problem(loc, "value could not be parsed to a boolean", "type_error.bool")
    try:
        number = float(value) if isinstance(value, str | int | float) else None
    except ValueError:
        number = None
    if number is None:
        return value, _problem(loc, "value is not a valid float", "type_error.float")
    if spec.minimum is not None and number < spec.minimum:
        message = f"ensure this value is greater than or equal to {spec.minimum}"
        limit = {"limit_value": spec.minimum}
        return value, _problem(loc, message, "value_error.number.not_ge", limit)
    if spec.maximum is not None and number > spec.maximum:
        message = f"ensure this value is less than or equal to {spec.maximum}"
        limit = {"limit_value": spec.maximum}
        return value, _problem(loc, message, "value_error.number.not_le", limit)
    return number, None


def _validate(model: FalModel, body: object) -> dict[str, Any]:
    """The input with its fields coerced, or a 422 listing every problem in schema order."""
    if not isinstance(body, dict):
        raise _validation_error(
            [_problem(["body"], "value is not a valid dict", "type_error.dict")]
        )
    inputs = dict(body)
    problems: list[dict[str, Any]] = []
    for name, spec in model.inputs.items():
        if name not in inputs:
            if spec.required:
                problems.append(_problem(["body", name], "field required", "value_error.missing"))
            continue
        inputs[name], problem = _coerce(name, spec, inputs[name])
        if problem is not None:
            problems.append(problem)
    if problems:
        raise _validation_error(problems)
    return inputs


async def _read_json(request: Request) -> object:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as error:
        position = error.pos if isinstance(error, json.JSONDecodeError) else 0
        message = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        raise _validation_error(
            [_problem(["body", position], message, "value_error.jsondecode")]
        ) from error


def _check_webhook(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise _validation_error(
            [_problem(["query", "fal_webhook"], "invalid or missing URL scheme", "value_error.url")]
        )
    return url


# --- Routes --------------------------------------------------------------------------------------


def _rate_limited(reset_seconds: int) -> ProviderHTTPError:
    return ProviderHTTPError(
        429,
        {"detail": "Too many requests. Please retry after the indicated time."},
        headers={"Retry-After": str(reset_seconds)},
    )


def _unavailable() -> ProviderHTTPError:
    return ProviderHTTPError(503, _INGRESS_503, media_type="text/html")


_FAULTS = FaultResponses(rate_limited=_rate_limited, unavailable=_unavailable)


_BackendDep = Annotated[FalBackend, Depends(backend_dependency(FalBackend))]


def _authenticate(request: Request, state: StateDep) -> None:
    """Accept `Authorization: Key <key_id>:<key_secret>` for the one configured key."""
    header = request.headers.get("authorization")
    if header is None:
        raise ProviderHTTPError(401, {"detail": "Unauthorized"})
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "key" or not hmac.compare_digest(
        key.strip().encode(), state.config.fal_key.encode()
    ):
        raise ProviderHTTPError(401, {"detail": "No user found for Key ID and Secret"})


def _request_or_404(backend: FalBackend, owner: str, app: str, request_id: str) -> FalRequest:
    """The request, looked up under its app as fal does (another app's path does not find it)."""
    request = backend.get(request_id)
    if request is None or request.model.app != f"{owner}/{app}":
        raise ProviderHTTPError(404, {"detail": f"Request {request_id} not found"})
    return request


_queue = APIRouter(dependencies=[Depends(_authenticate)])
_status_faults = Depends(request_faults("fal", "status", _FAULTS))


@_queue.get("/{owner}/{app}/requests/{request_id}/status", dependencies=[_status_faults])
async def get_status(
    owner: str, app: str, request_id: str, backend: _BackendDep, logs: str = "0"
) -> JSONResponse:
    """A request's status: 202 while queued or in progress, 200 once completed."""
    request = _request_or_404(backend, owner, app, request_id)
    body = backend.status(request, with_logs=logs.lower() in _TRUE)
    return JSONResponse(body, status_code=200 if request.phase.terminal else 202)


@_queue.get("/{owner}/{app}/requests/{request_id}", dependencies=[_status_faults])
async def get_result(owner: str, app: str, request_id: str, backend: _BackendDep) -> dict[str, Any]:
    """A completed request's result, or the error it ended with (with that error's status)."""
    request = _request_or_404(backend, owner, app, request_id)
    if not request.phase.terminal:
        raise ProviderHTTPError(400, {"detail": "Request is still in progress"})
    failure = request.failure()
    if failure is not None:
        raise ProviderHTTPError(
            failure.status_code, failure.body, headers={"X-Fal-Error-Type": failure.error_type}
        )
    return request.result(backend.base_url)


@_queue.put("/{owner}/{app}/requests/{request_id}/cancel")
async def cancel_request(
    owner: str, app: str, request_id: str, backend: _BackendDep
) -> JSONResponse:
    """Cancel a queued or running request (202); a completed one answers 400."""
    request = backend.get(request_id)
    if request is None or request.model.app != f"{owner}/{app}":
        return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
    if not backend.cancel(request):
        return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
    return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)


@_queue.post(
    "/{model_id:path}",
    dependencies=[Depends(request_faults("fal", "create", _FAULTS))],
)
async def submit(
    model_id: str, request: Request, backend: _BackendDep, fal_webhook: str | None = None
) -> dict[str, Any]:
    """Queue a request for the endpoint `model_id`, optionally with a completion webhook."""
    model = MODELS.get(model_id)
    if model is None:
        raise ProviderHTTPError(404, {"detail": f"Application '{model_id}' not found"})
    webhook = _check_webhook(fal_webhook)
    inputs = _validate(model, await _read_json(request))
    queued = backend.submit(model=model, inputs=inputs, webhook=webhook)
    answer = {
        "status": "IN_QUEUE",
        "request_id": queued.id,
        **backend.urls(queued),
        "queue_position": backend.queue_position(queued),
    }
    await delay_create_response(backend.behaviour)
    return answer


router = APIRouter(tags=["fal"])
"""fal's queue API (authenticated), its JWKS and output files."""


@router.get("/.well-known/jwks.json")
async def get_jwks(state: StateDep) -> dict[str, Any]:
    """The public keys that verify webhook signatures (public, no key)."""
    return fal_jwks(state.config.fal_webhook_signing_key)


@router.api_route("/files/{request_id}/{filename}", methods=["GET", "HEAD"])
async def get_file(
    request_id: str, filename: str, request: Request, backend: _BackendDep
) -> FileResponse:
    """Stream an output file like fal's CDN: public, 404 once expired."""
    job = backend.get(request_id)
    response = None if job is None else backend.output_response(request, job, filename)
    if response is None:
        raise ProviderHTTPError(404, {"detail": "Not Found"})
    return response


router.include_router(_queue)
