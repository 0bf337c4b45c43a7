"""Execution plans: schema and validation that reports every problem at once.

Validation is plain Python over the request's JSON so that one bad job does not hide the problems
of the others: each problem carries the JSON path of the value at fault. A valid plan is a DAG:
edges come from `dependsOn` and from references (`"{{jobs.<id>.output}}"`) in params.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reelflow.providers.registry import ModelSpec, get_model
from reelflow.references import find_references, with_placeholders

__all__ = [
    "MAX_DEPTH",
    "MAX_JOBS",
    "OPERATIONS",
    "PlanInvalid",
    "PlanProblem",
    "ValidatedJob",
    "ValidatedPlan",
    "validate_submission",
]

MAX_JOBS = 500
MAX_DEPTH = 64
"""How deeply a body may nest objects and lists (a plan needs 7 levels; metadata has the rest)."""
GENERATE = "pipeline:generate"
CONCAT = "pipeline:concat"
THUMBNAIL = "pipeline:thumbnail"
OPERATIONS = (GENERATE, CONCAT, THUMBNAIL)

OutputKind = Literal["video", "image"]
_HTTP_URL = r"^https?://"


class ConcatParams(BaseModel):
    """`pipeline:concat`: videos joined in order."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Annotated[str, Field(pattern=_HTTP_URL)]] = Field(min_length=1, max_length=200)


class ThumbnailParams(BaseModel):
    """`pipeline:thumbnail`: one frame of a video as an image."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(pattern=_HTTP_URL)
    atSeconds: float = Field(default=0.0, ge=0, le=24 * 3600)
    format: Literal["jpeg", "png"] = "jpeg"


# What a referenced output must be, by the param it is put in; other params take any kind.
_EXPECTED_KIND: dict[str, OutputKind] = {"imageUrl": "image", "input": "video", "inputs": "video"}
# Params that take a list, where `.outputs` fits.
_LIST_PARAMS = frozenset({"inputs"})


@dataclass(frozen=True)
class PlanProblem:
    """One thing wrong with a submitted plan."""

    path: str
    """JSON path of the offending value, e.g. `executionPlan.jobs[1].params.prompt`."""
    message: str
    """What is wrong, in words a user can act on."""


class PlanInvalid(Exception):
    """The submission is not a valid plan; `problems` lists everything wrong with it."""

    def __init__(self, problems: list[PlanProblem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the execution plan")
        self.problems = problems


@dataclass(frozen=True)
class ValidatedJob:
    """A job that passed validation."""

    id: str
    """The job's id inside the plan."""
    operation: str
    """One of OPERATIONS."""
    params: dict[str, Any]
    """Params as validated, defaults filled in, references kept for the workflow to resolve."""
    model: ModelSpec | None
    """The registry entry of a `pipeline:generate` job's model."""
    depends_on: tuple[str, ...]
    """Jobs that must complete first: `dependsOn` and every referenced job."""
    continue_on_error: bool
    """Whether dependents that do not reference this job may run when it fails."""

    @property
    def output_kind(self) -> OutputKind:
        """What the job produces."""
        if self.model is not None:
            return self.model.output_type
        return "image" if self.operation == THUMBNAIL else "video"


@dataclass(frozen=True)
class ValidatedPlan:
    """A submission that passed validation."""

    jobs: list[ValidatedJob]
    """Jobs in plan order."""
    metadata: dict[str, Any]
    """Caller's metadata, stored as given."""


class _JobShape(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    operation: str
    params: dict[str, Any]
    dependsOn: list[str] = Field(default_factory=list, max_length=MAX_JOBS)
    continueOnError: bool = False


def _path(*parts: str | int) -> str:
    text = ""
    for position, part in enumerate(parts):
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            # By position, not by `text`: a first key may be "" (any string is a JSON key).
            text += f".{part}" if position else part
    return text


def _pydantic_problems(error: ValidationError, *prefix: str | int) -> list[PlanProblem]:
    problems = []
    for item in error.errors(include_url=False):
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(PlanProblem(_path(*prefix, *item["loc"]), message))
    return problems


def validate_submission(body: Any, *, providers: Collection[str]) -> ValidatedPlan:
    """Validate a `POST /api/execute` body for a deployment that has these providers.

    Raises:
        PlanInvalid: with every problem found, each with its JSON path.
    """
    if not isinstance(body, dict):
        raise PlanInvalid([PlanProblem("$", "the body must be a JSON object")])
    if unusable := _unusable_values(body):
        raise PlanInvalid(unusable)
    problems = [
        PlanProblem(key, "unknown field") for key in body.keys() - {"executionPlan", "metadata"}
    ]
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        problems.append(PlanProblem("metadata", "must be an object"))
        metadata = {}
    plan = body.get("executionPlan")
    if not isinstance(plan, dict):
        problems.append(PlanProblem("executionPlan", "required, an object with `jobs`"))
        raise PlanInvalid(problems)
    for key in plan.keys() - {"jobs"}:
        problems.append(PlanProblem(_path("executionPlan", key), "unknown field"))
    raw_jobs = plan.get("jobs")
    if not isinstance(raw_jobs, list) or not raw_jobs:
        problems.append(PlanProblem("executionPlan.jobs", "required, a non-empty list of jobs"))
        raise PlanInvalid(problems)
    if len(raw_jobs) > MAX_JOBS:
        problems.append(PlanProblem("executionPlan.jobs", f"at most {MAX_JOBS} jobs per plan"))
        raise PlanInvalid(problems)

    shapes: dict[int, _JobShape] = {}
    first_index: dict[str, int] = {}
    for index, raw in enumerate(raw_jobs):
        try:
            shape = _JobShape.model_validate(raw)
        except ValidationError as error:
            problems.extend(_pydantic_problems(error, "executionPlan", "jobs", index))
            continue
        shapes[index] = shape
        if shape.id in first_index:
            problems.append(
                PlanProblem(
                    _path("executionPlan", "jobs", index, "id"),
                    f"duplicate job id {shape.id!r} (first used by jobs[{first_index[shape.id]}])",
                )
            )
        else:
            first_index[shape.id] = index

    jobs: dict[int, ValidatedJob] = {}
    for index, shape in shapes.items():
        job = _validate_job(shape, index, problems, providers)
        if job is not None:
            jobs[index] = job
    for index, shape in shapes.items():
        _check_dependencies(shape, index, first_index, jobs, problems)
    problems.extend(_cycle_problems(list(jobs.values()), first_index))
    if problems:
        raise PlanInvalid(problems)
    return ValidatedPlan(jobs=[jobs[index] for index in sorted(jobs)], metadata=metadata)


def _unusable_values(body: dict[str, Any]) -> list[PlanProblem]:
    """Nesting deeper than MAX_DEPTH and non-finite numbers, anywhere in the body.

    What follows walks params recursively and stores the body as JSON: a few hundred levels of
    nesting would exhaust Python's recursion limit, and NaN or Infinity (which Python's JSON
    parser accepts) are not JSON to the database. Iterative, so any depth is safe here.
    """
    problems: list[PlanProblem] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(PlanProblem(_path(*path), "must be a finite number"))
        elif isinstance(value, dict | list):
            if len(path) >= MAX_DEPTH:
                problems.append(PlanProblem(_path(*path), f"nested deeper than {MAX_DEPTH} levels"))
                continue
            if isinstance(value, dict):
                stack.extend(((*path, str(key)), item) for key, item in value.items())
            else:
                stack.extend(((*path, index), item) for index, item in enumerate(value))
    return problems


def _validate_job(
    shape: _JobShape, index: int, problems: list[PlanProblem], providers: Collection[str]
) -> ValidatedJob | None:
    where = ("executionPlan", "jobs", index)
    model: ModelSpec | None = None
    schema: type[BaseModel]
    if shape.operation == GENERATE:
        model = _generate_model(shape, where, problems, providers)
        if model is None:
            return None
        schema = model.params_model
    elif shape.operation == CONCAT:
        schema = ConcatParams
    elif shape.operation == THUMBNAIL:
        schema = ThumbnailParams
    else:
        problems.append(
            PlanProblem(
                _path(*where, "operation"),
                f"unknown operation {shape.operation!r}; expected one of {list(OPERATIONS)}",
            )
        )
        return None
    try:
        validated = schema.model_validate(with_placeholders(shape.params))
    except ValidationError as error:
        problems.extend(_pydantic_problems(error, *where, "params"))
        return None
    params = validated.model_dump(exclude_none=True)
    references = list(find_references(shape.params))
    for path, reference in references:
        # Put each reference back where validation saw its placeholder.
        _set(params, path, str(reference))
    depends_on = [*shape.dependsOn, *(reference.job_id for _, reference in references)]
    return ValidatedJob(
        id=shape.id,
        operation=shape.operation,
        params=params,
        model=model,
        depends_on=tuple(dict.fromkeys(depends_on)),
        continue_on_error=shape.continueOnError,
    )


def _generate_model(
    shape: _JobShape,
    where: tuple[str | int, ...],
    problems: list[PlanProblem],
    providers: Collection[str],
) -> ModelSpec | None:
    model_id = shape.params.get("modelId")
    at = _path(*where, "params", "modelId")
    if not isinstance(model_id, str):
        problems.append(PlanProblem(at, "required, a model id"))
        return None
    model = get_model(model_id)
    if model is None:
        problems.append(PlanProblem(at, f"unknown model {model_id!r}; see GET /api/models"))
        return None
    if model.provider not in providers:
        problems.append(
            PlanProblem(
                at,
                f"model {model_id!r} needs provider {model.provider!r}, which this deployment"
                " has no credentials for",
            )
        )
        return None
    strategy = shape.params.get("waitingStrategy")
    if isinstance(strategy, str) and strategy in ("webhook", "polling"):
        if strategy not in model.capabilities:
            problems.append(
                PlanProblem(
                    _path(*where, "params", "waitingStrategy"),
                    f"model {model_id!r} does not support {strategy!r}",
                )
            )
            return None
    return model


def _set(tree: Any, path: tuple[str | int, ...], value: Any) -> None:
    for part in path[:-1]:
        tree = tree[part]
    tree[path[-1]] = value


def _check_dependencies(
    shape: _JobShape,
    index: int,
    first_index: dict[str, int],
    jobs: dict[int, ValidatedJob],
    problems: list[PlanProblem],
) -> None:
    where = ("executionPlan", "jobs", index)
    for dep_index, dep in enumerate(shape.dependsOn):
        at = _path(*where, "dependsOn", dep_index)
        if dep == shape.id:
            problems.append(PlanProblem(at, "a job cannot depend on itself"))
        elif dep not in first_index:
            problems.append(PlanProblem(at, f"unknown job id {dep!r}"))
    for path, reference in find_references(shape.params):
        at = _path(*where, "params", *path)
        if reference.job_id == shape.id:
            problems.append(PlanProblem(at, "a job cannot use its own output"))
            continue
        if reference.job_id not in first_index:
            problems.append(PlanProblem(at, f"{reference} names unknown job {reference.job_id!r}"))
            continue
        param = next((part for part in reversed(path) if isinstance(part, str)), "")
        if reference.many and param not in _LIST_PARAMS:
            problems.append(
                PlanProblem(
                    at,
                    f"{reference} is a list of URLs and {param} takes one;"
                    f" use {{{{jobs.{reference.job_id}.output}}}}",
                )
            )
        referenced = jobs.get(first_index[reference.job_id])
        expected = _EXPECTED_KIND.get(param)
        if referenced is not None and expected and referenced.output_kind != expected:
            problems.append(
                PlanProblem(
                    at,
                    f"{reference} is {_article(referenced.output_kind)} and {param} needs"
                    f" {_article(expected)}",
                )
            )


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _cycle_problems(jobs: list[ValidatedJob], index: dict[str, int]) -> list[PlanProblem]:
    """Report each dependency cycle once, naming its members in order."""
    graph = {job.id: [dep for dep in job.depends_on if dep != job.id] for job in jobs}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    problems: list[PlanProblem] = []
    for start in graph:
        if start in state:
            continue
        # Iterative depth-first search: plans may hold hundreds of jobs in a chain.
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = [start]
        state[start] = 1
        while stack:
            node, next_child = stack[-1]
            children = [dep for dep in graph[node] if dep in graph]
            if next_child == len(children):
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            stack[-1] = (node, next_child + 1)
            child = children[next_child]
            if state.get(child) == 1:
                cycle = path[path.index(child) :] + [child]
                problems.append(
                    PlanProblem(
                        _path("executionPlan", "jobs", index[child], "dependsOn"),
                        "dependency cycle: " + " -> ".join(cycle),
                    )
                )
            elif child not in state:
                state[child] = 1
                stack.append((child, 0))
                path.append(child)
    return problems
