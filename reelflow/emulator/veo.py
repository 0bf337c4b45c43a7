"""The Gemini API's Veo video generation: long-running operations and key-protected files.

Mounted under `/gemini`, so a client whose base URL is `http://host:port/gemini` sees the same
paths, bodies, statuses and error shapes as with `https://generativelanguage.googleapis.com`:

- `POST /v1beta/models/{model}:predictLongRunning` starts an operation
  `models/{model}/operations/{id}`, read with `GET /v1beta/models/{model}/operations/{id}`.
- Every API call needs the key, in the `x-goog-api-key` header or the `key` parameter.
- A finished operation's `video.uri` is `/v1beta/files/{id}:download?alt=media`, which also needs
  the key and redirects (302) to a signed storage URL, `/storage/{id}.mp4?sig=…`, that does not —
  as Google redirects to its content host.

The Gemini API sends no webhooks for Veo and documents no way to cancel its operations.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, RedirectResponse

from reelflow.emulator.config import ProviderBehaviour, VeoBehaviour
from reelflow.emulator.errors import ProviderHTTPError
from reelflow.emulator.faults import FaultResponses, chance, delay_create_response, request_faults
from reelflow.emulator.jobs import Job, JobBackend, Phase, backend_dependency
from reelflow.emulator.render import VideoSpec
from reelflow.emulator.state import EmulatorState, StateDep

__all__ = ["MODELS", "PREFIX", "VeoBackend", "VeoModel", "VeoOperation", "router"]

PREFIX = "/gemini"
"""Where `router` is mounted."""

_VERSION = "v1beta"
_RESPONSE_TYPE = (
    "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
)
# Operation and file ids are 12 lowercase letters and digits.
_ID_ALPHABET = string.ascii_lowercase + string.digits
_ASPECT_RATIOS = ("16:9", "9:16")
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
_INSTANCE_FIELDS = frozenset({"prompt", "image"})
_INTERNAL = 13  # google.rpc.Code.INTERNAL


# --- Models --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VeoModel:
    """A Veo model and the parameters the Gemini API documents for it."""

    name: str
    """Model id, e.g. `veo-3.0-generate-001`."""

    durations: tuple[int, ...]
    """Allowed `durationSeconds`."""

    resolutions: tuple[str, ...]
    """Allowed `resolution`; empty when the model does not take the parameter."""

    eight_second_resolutions: frozenset[str]
    """Resolutions that only come as 8-second videos."""

    text_person_generation: tuple[str, ...]
    """Allowed `personGeneration` for text-to-video."""

    image_person_generation: tuple[str, ...]
    """Allowed `personGeneration` for image-to-video."""

    max_samples: int
    """Largest `sampleCount` (videos per operation)."""

    extra_parameters: frozenset[str] = frozenset()
    """Parameters only this model takes."""

    default_duration: int = 8
    """`durationSeconds` when not given."""

    fps: int = 24
    """Frame rate of its videos."""

    @property
    def parameters(self) -> frozenset[str]:
        """Every parameter the model takes."""
        common = {"aspectRatio", "durationSeconds", "negativePrompt", "personGeneration", "seed"}
        optional = {"resolution"} if self.resolutions else set()
        return frozenset(common | optional | {"sampleCount"} | self.extra_parameters)


def _veo3(name: str, resolutions: tuple[str, ...]) -> VeoModel:
    return VeoModel(
        name,
        durations=(4, 6, 8),
        resolutions=resolutions,
        eight_second_resolutions=frozenset(resolutions) - {"720p"},
        text_person_generation=("allow_all",),
        image_person_generation=("allow_adult",),
        max_samples=1,
    )


MODELS: Mapping[str, VeoModel] = {
    model.name: model
    for model in (
        _veo3("veo-3.1-generate-preview", ("720p", "1080p", "4k")),
        _veo3("veo-3.0-generate-001", ("720p", "1080p")),
        _veo3("veo-3.0-fast-generate-001", ("720p", "1080p")),
        VeoModel(
            "veo-2.0-generate-001",
            durations=(5, 6, 7, 8),
            resolutions=(),
            eight_second_resolutions=frozenset(),
            text_person_generation=("allow_all", "allow_adult", "dont_allow"),
            image_person_generation=("allow_adult", "dont_allow"),
            max_samples=2,
            extra_parameters=frozenset({"enhancePrompt"}),
        ),
    )
}
"""The models the emulator runs, by id."""


# --- Operations ----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class VeoOperation(Job):
    """One `predictLongRunning` operation."""

    model: VeoModel
    prompt: str
    parameters: dict[str, Any]
    file_ids: list[str]
    """One per requested video, assigned up front."""
    filtered: bool = False
    """Whether the safety filters withheld every video."""

    @property
    def name(self) -> str:
        """The operation's resource name."""
        return f"models/{self.model.name}/operations/{self.id}"


def _new_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


class VeoBackend(JobBackend[VeoOperation]):
    """The operations of one emulator app and the tasks that run them."""

    provider = "veo"

    def __init__(self, state: EmulatorState) -> None:
        """Run operations with the shared `state`; files are also found by their own id."""
        super().__init__(state)
        self._files: dict[str, VeoOperation] = {}
        self._storage_key = secrets.token_bytes(32)

    @property
    def base_url(self) -> str:
        """The emulator's stand-in for `https://generativelanguage.googleapis.com`."""
        return self._state.config.public_url + PREFIX

    def create(self, *, model: VeoModel, prompt: str, parameters: dict[str, Any]) -> VeoOperation:
        """Record a validated operation and start running it in the background."""
        samples = int(parameters.get("sampleCount", 1))
        operation = VeoOperation(
            id=_new_id(),
            model=model,
            prompt=prompt,
            parameters=parameters,
            file_ids=[_new_id() for _ in range(samples)],
        )
        self._files.update(dict.fromkeys(operation.file_ids, operation))
        return self.start(operation)

    async def reset(self) -> None:
        """Stop every running operation and forget all of them and their files."""
        await super().reset()
        self._files.clear()

    def file(self, file_id: str) -> VeoOperation | None:
        """The operation that produced the file `file_id`, while the file exists."""
        operation = self._files.get(file_id)
        if operation is None or f"{file_id}.mp4" not in {o.name for o in operation.outputs}:
            return None
        return None if self.expired(operation) else operation

    def storage_signature(self, file_id: str) -> str:
        """The `sig` of the file's storage URL."""
        return hmac.new(self._storage_key, file_id.encode(), hashlib.sha256).hexdigest()[:32]

    def to_json(self, operation: VeoOperation) -> dict[str, Any]:
        """The operation as the Gemini API shows it (`done` is left out until it is true)."""
        body: dict[str, Any] = {"name": operation.name}
        if not operation.phase.terminal:
            return body
        body["done"] = True
        if operation.phase is not Phase.SUCCEEDED:
            body["error"] = {"code": _INTERNAL, "message": operation.error}
            return body
        if operation.filtered:
            reason = self._state.config.veo.safety_filter_reason
            videos: dict[str, Any] = {
                "raiMediaFilteredCount": len(operation.file_ids),
                "raiMediaFilteredReasons": [reason],
            }
        else:
            download = f"{self.base_url}/{_VERSION}/files/{{}}:download?alt=media"
            videos = {
                "generatedSamples": [
                    {"video": {"uri": download.format(file_id)}} for file_id in operation.file_ids
                ]
            }
        body["response"] = {"@type": _RESPONSE_TYPE, "generateVideoResponse": videos}
        return body

    def _video_spec(self, job: VeoOperation) -> VideoSpec:
        seed = job.parameters.get("seed")
        return VideoSpec(
            prompt=job.prompt,
            seconds=float(job.parameters.get("durationSeconds", job.model.default_duration)),
            aspect_ratio=str(job.parameters.get("aspectRatio", "16:9")),
            fps=job.model.fps,
            seed=seed if isinstance(seed, int) else None,
        )

    def _output_names(self, job: VeoOperation) -> Sequence[str]:
        return [f"{file_id}.mp4" for file_id in job.file_ids]

    def _withheld(self, job: VeoOperation, behaviour: ProviderBehaviour) -> bool:
        job.filtered = isinstance(behaviour, VeoBehaviour) and chance(behaviour.safety_filter_rate)
        return job.filtered


# --- Errors and request validation ---------------------------------------------------------------


def _google_error(
    code: int, status: str, message: str, details: list[dict[str, Any]] | None = None
) -> ProviderHTTPError:
    """An error in Google APIs' shape: `{"error": {code, message, status[, details]}}`."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return ProviderHTTPError(code, {"error": error})


def _invalid(message: str) -> ProviderHTTPError:
    return _google_error(400, "INVALID_ARGUMENT", message)


def _unsupported(name: str) -> ProviderHTTPError:
    return _invalid(
        f"`{name}` isn't supported by this model. Please remove it or refer to the Gemini API"
        " documentation for supported usage."
    )


def _one_of(name: str, allowed: Sequence[object], model: VeoModel) -> ProviderHTTPError:
    choices = ", ".join(str(value) for value in allowed)
    return _invalid(f"`{name}` must be one of {choices} for {model.name}.")


def _integer(name: str, value: object) -> int:
    """A proto3 JSON integer: a number or a string of digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise _invalid(f"Invalid value at 'parameters.{name}', expected an integer.")


def _check_image(image: object) -> None:
    """An instance image is base64 bytes and a MIME type (the Gemini API takes no URLs)."""
    if not isinstance(image, dict) or set(image) - {"bytesBase64Encoded", "mimeType"}:
        raise _invalid("`image` must have exactly `bytesBase64Encoded` and `mimeType`.")
    try:
        data = base64.b64decode(str(image.get("bytesBase64Encoded", "")), validate=True)
    except binascii.Error as error:
        raise _invalid("`image.bytesBase64Encoded` is not valid base64.") from error
    if not data:
        raise _invalid("`image.bytesBase64Encoded` is required.")
    if image.get("mimeType") not in _IMAGE_TYPES:
        raise _invalid(f"`image.mimeType` must be one of {', '.join(_IMAGE_TYPES)}.")


def _validate(model: VeoModel, body: object) -> tuple[str, dict[str, Any]]:
    """The prompt and the parameters (normalized) of a valid request; a 400 otherwise."""
    if not isinstance(body, dict):
        raise _invalid("Invalid JSON payload received. Expected an object.")
    unknown = sorted(set(body) - {"instances", "parameters"})
    if unknown:
        raise _invalid(
            f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.'
        )
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        raise _invalid("`instances` must hold exactly one instance object.")
    instance: dict[str, Any] = instances[0]
    unsupported = sorted(set(instance) - _INSTANCE_FIELDS)
    if unsupported:
        raise _unsupported(unsupported[0])
    prompt, image = instance.get("prompt", ""), instance.get("image")
    if not isinstance(prompt, str):
        raise _invalid("`prompt` must be a string.")
    if image is not None:
        _check_image(image)
    elif not prompt.strip():
        raise _invalid("A prompt is required for text-to-video.")

    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise _invalid("`parameters` must be an object.")
    unsupported = sorted(set(parameters) - model.parameters)
    if unsupported:
        raise _unsupported(unsupported[0])
    normalized = dict(parameters)
    if normalized.get("aspectRatio", "16:9") not in _ASPECT_RATIOS:
        raise _one_of("aspectRatio", _ASPECT_RATIOS, model)
    duration = _integer(
        "durationSeconds", normalized.get("durationSeconds", model.default_duration)
    )
    if duration not in model.durations:
        raise _one_of("durationSeconds", model.durations, model)
    normalized["durationSeconds"] = duration
    resolution = normalized.get("resolution")
    if resolution is not None and resolution not in model.resolutions:
        raise _one_of("resolution", model.resolutions, model)
    if resolution in model.eight_second_resolutions and duration != 8:
        raise _invalid(f"`durationSeconds` must be 8 when `resolution` is {resolution}.")
    people = model.image_person_generation if image is not None else model.text_person_generation
    if "personGeneration" in normalized and normalized["personGeneration"] not in people:
        raise _one_of("personGeneration", people, model)
    samples = _integer("sampleCount", normalized.get("sampleCount", 1))
    if not 1 <= samples <= model.max_samples:
        raise _invalid(f"`sampleCount` must be between 1 and {model.max_samples}.")
    normalized["sampleCount"] = samples
    if "seed" in normalized:
        normalized["seed"] = _integer("seed", normalized["seed"])
    if not isinstance(normalized.get("negativePrompt", ""), str):
        raise _invalid("`negativePrompt` must be a string.")
    return prompt, normalized


# --- Routes --------------------------------------------------------------------------------------


def _rate_limited(reset_seconds: int) -> ProviderHTTPError:
    """Google's 429: the wait is a `RetryInfo` detail's `retryDelay`."""
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{reset_seconds}s"}
    return _google_error(
        429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", [retry]
    )


def _unavailable() -> ProviderHTTPError:
    return _google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")


_FAULTS = FaultResponses(rate_limited=_rate_limited, unavailable=_unavailable)


_BackendDep = Annotated[VeoBackend, Depends(backend_dependency(VeoBackend))]


def _authenticate(request: Request, state: StateDep) -> None:
    """Accept the one API key, in `x-goog-api-key` or in the `key` query parameter."""
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if not key:
        raise _google_error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity)."
            " Please use API Key or other form of API consumer identity to call this API.",
        )
    if not hmac.compare_digest(key.encode(), state.config.gemini_api_key.encode()):
        reason = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
        raise _google_error(
            400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [reason]
        )


def _model_or_404(name: str) -> VeoModel:
    model = MODELS.get(name)
    if model is None:
        raise _google_error(
            404,
            "NOT_FOUND",
            f"models/{name} is not found for API version {_VERSION}, or is not supported for"
            " predictLongRunning. Call ListModels to see the list of available models and their"
            " supported methods.",
        )
    return model


_api = APIRouter(prefix=f"/{_VERSION}", dependencies=[Depends(_authenticate)])


@_api.post(
    "/models/{model}:predictLongRunning",
    dependencies=[Depends(request_faults("veo", "create", _FAULTS))],
)
async def predict_long_running(
    model: str, request: Request, backend: _BackendDep
) -> dict[str, Any]:
    """Start generating videos; answers the new operation."""
    veo = _model_or_404(model)
    try:
        body = json.loads(await request.body())
    except ValueError as error:
        raise _invalid(f"Invalid JSON payload received. {error}") from error
    prompt, parameters = _validate(veo, body)
    operation = backend.create(model=veo, prompt=prompt, parameters=parameters)
    answer = backend.to_json(operation)
    await delay_create_response(backend.behaviour)
    return answer


@_api.get(
    "/models/{model}/operations/{operation_id}",
    dependencies=[Depends(request_faults("veo", "status", _FAULTS))],
)
async def get_operation(model: str, operation_id: str, backend: _BackendDep) -> dict[str, Any]:
    """An operation's current state."""
    operation = backend.get(operation_id)
    if operation is None or operation.model.name != model:
        name = f"models/{model}/operations/{operation_id}"
        raise _google_error(404, "NOT_FOUND", f"Operation {name} not found.")
    return backend.to_json(operation)


@_api.get("/files/{file_id}:download")
async def download_file(
    file_id: str, backend: _BackendDep, alt: str | None = None
) -> RedirectResponse:
    """Redirect (302) a keyed download to the file's signed storage URL."""
    if alt != "media":
        raise _invalid("Downloading a file needs `alt=media`.")
    if backend.file(file_id) is None:
        raise _google_error(
            403,
            "PERMISSION_DENIED",
            f"You do not have permission to access the File {file_id} or it may not exist.",
        )
    signature = backend.storage_signature(file_id)
    return RedirectResponse(
        f"{backend.base_url}/storage/{file_id}.mp4?sig={signature}", status_code=302
    )


def _storage_error(status_code: int, code: str, message: str) -> ProviderHTTPError:
    """Cloud Storage's XML error document."""
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return ProviderHTTPError(status_code, body, media_type="application/xml")


router = APIRouter(tags=["veo"])
"""The Gemini API's Veo routes (under `/v1beta`, keyed) and the storage host they redirect to."""
router.include_router(_api)


@router.api_route("/storage/{file_id}.mp4", methods=["GET", "HEAD"])
async def get_stored_file(
    file_id: str, request: Request, backend: _BackendDep, sig: str = ""
) -> FileResponse:
    """Stream a video by its signed URL (no key), like Google's content host."""
    if not hmac.compare_digest(sig.encode(), backend.storage_signature(file_id).encode()):
        raise _storage_error(403, "AccessDenied", "Access denied.")
    operation = backend.file(file_id)
    response = (
        None if operation is None else backend.output_response(request, operation, f"{file_id}.mp4")
    )
    if response is None:
        raise _storage_error(404, "NoSuchKey", "The specified key does not exist.")
    return response
