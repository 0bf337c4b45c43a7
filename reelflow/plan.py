"""Execution plans: schema and validation that reports every problem at once.

Validation is plain Python over the request's JSON so that one bad job does not hide the problems
of the others: each problem carries the JSON path of the value at fault.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reelflow.providers.registry import ModelSpec, get_model

__all__ = [
    "MAX_JOBS",
    "OPERATIONS",
    "PlanInvalid",
    "PlanProblem",
    "ValidatedJob",
    "ValidatedPlan",
    "validate_submission",
]

MAX_JOBS = 500
OPERATIONS = frozenset({"pipeline:generate"})


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
    """The operation, e.g. `pipeline:generate`."""
    params: dict[str, Any]
    """Params as validated, with defaults filled in."""
    model: ModelSpec
    """The registry entry of the job's model."""
    depends_on: tuple[str, ...]
    """Ids of jobs that must complete first."""


@dataclass(frozen=True)
class ValidatedPlan:
    """A submission that passed validation."""

    jobs: list[ValidatedJob]
    """Jobs in plan order."""
    metadata: dict[str, Any]
    """Caller's metadata, stored as given."""


class _JobShape(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    operation: str
    params: dict[str, Any]
    dependsOn: list[str] = Field(default_factory=list)


def _path(*parts: str | int) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
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
    problems: list[PlanProblem] = []
    if not isinstance(body, dict):
        raise PlanInvalid([PlanProblem("$", "the body must be a JSON object")])
    for key in body.keys() - {"executionPlan", "metadata"}:
        problems.append(PlanProblem(key, "unknown field"))
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

    jobs: list[ValidatedJob] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(raw_jobs):
        where = ("executionPlan", "jobs", index)
        try:
            shape = _JobShape.model_validate(raw)
        except ValidationError as error:
            problems.extend(_pydantic_problems(error, *where))
            continue
        if shape.id in first_index:
            problems.append(
                PlanProblem(
                    _path(*where, "id"),
                    f"duplicate job id {shape.id!r} (first used by jobs[{first_index[shape.id]}])",
                )
            )
        else:
            first_index[shape.id] = index
        job = _validate_job(shape, where, problems, providers)
        if job is not None:
            jobs.append(job)

    for index, raw in enumerate(raw_jobs):
        depends_on = raw.get("dependsOn") if isinstance(raw, dict) else None
        if not isinstance(depends_on, list):
            continue
        for dep_index, dep in enumerate(depends_on):
            dep_path = _path("executionPlan", "jobs", index, "dependsOn", dep_index)
            if dep == raw.get("id"):
                problems.append(PlanProblem(dep_path, "a job cannot depend on itself"))
            elif isinstance(dep, str) and dep not in first_index:
                problems.append(PlanProblem(dep_path, f"unknown job id {dep!r}"))
    problems.extend(_cycle_problems(jobs))
    if problems:
        raise PlanInvalid(problems)
    return ValidatedPlan(jobs=jobs, metadata=metadata)


def _validate_job(
    shape: _JobShape,
    where: tuple[str | int, ...],
    problems: list[PlanProblem],
    providers: Collection[str],
) -> ValidatedJob | None:
    if shape.operation not in OPERATIONS:
        problems.append(
            PlanProblem(
                _path(*where, "operation"),
                f"unknown operation {shape.operation!r}; expected one of {sorted(OPERATIONS)}",
            )
        )
        return None
    model_id = shape.params.get("modelId")
    if not isinstance(model_id, str):
        problems.append(PlanProblem(_path(*where, "params", "modelId"), "required, a model id"))
        return None
    model = get_model(model_id)
    if model is None:
        problems.append(
            PlanProblem(
                _path(*where, "params", "modelId"),
                f"unknown model {model_id!r}; see GET /api/models",
            )
        )
        return None
    if model.provider not in providers:
        problems.append(
            PlanProblem(
                _path(*where, "params", "modelId"),
                f"model {model_id!r} needs provider {model.provider!r}, which this deployment"
                " has no credentials for",
            )
        )
        return None
    try:
        params = model.params_model.model_validate(shape.params)
    except ValidationError as error:
        problems.extend(_pydantic_problems(error, *where, "params"))
        return None
    strategy = shape.params.get("waitingStrategy")
    if strategy is not None and strategy not in model.capabilities:
        problems.append(
            PlanProblem(
                _path(*where, "params", "waitingStrategy"),
                f"model {model_id!r} does not support {strategy!r}",
            )
        )
        return None
    return ValidatedJob(
        id=shape.id,
        operation=shape.operation,
        params=params.model_dump(exclude_none=True),
        model=model,
        depends_on=tuple(dict.fromkeys(shape.dependsOn)),
    )


def _cycle_problems(jobs: list[ValidatedJob]) -> list[PlanProblem]:
    """Report each dependency cycle once, naming its members in order."""
    graph = {job.id: [dep for dep in job.depends_on if dep != job.id] for job in jobs}
    index = {job.id: i for i, job in enumerate(jobs)}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    problems: list[PlanProblem] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        path.append(node)
        for dep in graph.get(node, []):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :] + [dep]
                problems.append(
                    PlanProblem(
                        _path("executionPlan", "jobs", index[dep], "dependsOn"),
                        "dependency cycle: " + " -> ".join(cycle),
                    )
                )
            elif dep not in state:
                visit(dep, path)
        path.pop()
        state[node] = 2

    for job in jobs:
        if job.id not in state:
            visit(job.id, [])
    return problems
