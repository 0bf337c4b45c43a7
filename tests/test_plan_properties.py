"""Properties of plan validation, checked with hypothesis.

Whatever the body, `validate_submission` returns a ValidatedPlan or raises PlanInvalid, never
anything else; each problem's path points into the body; a plan it returns is really valid, as
checked here without reelflow.plan's code (`assert_really_valid`); and valid plans, built from the
registry's models and the three operations with references between jobs, are accepted. Bodies
come as arbitrary JSON, as plan-shaped JSON, and as valid plans with one mutation each.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from reelflow.plan import (
    MAX_DEPTH,
    MAX_JOBS,
    OPERATIONS,
    PlanInvalid,
    PlanProblem,
    ValidatedPlan,
    validate_submission,
)
from reelflow.providers.registry import MODELS, ModelSpec
from reelflow.references import parse_reference

GENERATE, CONCAT, THUMBNAIL = "pipeline:generate", "pipeline:concat", "pipeline:thumbnail"
PROVIDERS = frozenset(model.provider for model in MODELS.values())
REGISTRY = sorted(MODELS.values(), key=lambda model: model.id)

PROPERTIES = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# The documented contract (README, "HTTP API"), written out again rather than imported.
REFERENCE = re.compile(r"\{\{jobs\.([A-Za-z0-9_.-]+)\.(output|outputs)\}\}")
JOB_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
HTTP_URL = re.compile(r"https?://")
JOB_FIELDS = {"id", "operation", "params", "dependsOn", "continueOnError"}
THUMBNAIL_FIELDS = {"input", "atSeconds", "format"}


# -- Outcomes and paths ------------------------------------------------------------------------


def outcome(body: Any, providers: frozenset[str] = PROVIDERS) -> ValidatedPlan | list[PlanProblem]:
    """The plan, or the problems; any other exception fails the test that called this."""
    try:
        return validate_submission(body, providers=providers)
    except PlanInvalid as invalid:
        assert invalid.problems, "PlanInvalid without problems"
        return invalid.problems


_INDEX = re.compile(r"\[(\d+)\]")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def points_into(body: Any, path: str) -> bool:
    """Whether `path` names a value of `body`, or a missing field of an object in it."""
    return path == "$" or _resolves(body, path, root=True)


def _resolves(node: Any, rest: str, *, root: bool = False) -> bool:
    if rest == "":
        return True
    if isinstance(node, list):
        index = _INDEX.match(rest)
        return (
            index is not None
            and int(index[1]) < len(node)
            and _resolves(node[int(index[1])], rest[index.end() :])
        )
    if not isinstance(node, dict):
        return False
    if not root:
        if not rest.startswith("."):
            return False
        rest = rest[1:]
    # Keys may hold dots and brackets themselves: try every key the path could start with.
    for key in node:
        if isinstance(key, str) and rest.startswith(key):
            after = rest[len(key) :]
            if after[:1] in ("", ".", "[") and _resolves(node[key], after):
                return True
    return _FIELD.fullmatch(rest) is not None  # a required field that is missing


def assert_problems_point_into(body: Any, problems: list[PlanProblem]) -> None:
    for problem in problems:
        assert isinstance(problem.message, str) and problem.message, problem
        assert isinstance(problem.path, str) and points_into(body, problem.path), problem


# -- The independent check of an accepted plan --------------------------------------------------


def references(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[Any, str, bool]]:
    """(path, job id, many) of each reference in a params tree."""
    if isinstance(value, str):
        if match := REFERENCE.fullmatch(value):
            yield path, match[1], match[2] == "outputs"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from references(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from references(item, (*path, index))


def _urls(job_id: str) -> list[str]:
    return [f"https://outputs.example/{job_id}/{n}.mp4" for n in range(2)]


def substituted(value: Any) -> Any:
    """Params as the workflow runs them: each reference replaced by (two) output URLs."""
    if isinstance(value, str) and (match := REFERENCE.fullmatch(value)):
        return _urls(match[1]) if match[2] == "outputs" else _urls(match[1])[0]
    if isinstance(value, dict):
        return {key: substituted(item) for key, item in value.items()}
    if isinstance(value, list):
        result: list[Any] = []
        for item in value:
            match = REFERENCE.fullmatch(item) if isinstance(item, str) else None
            if match and match[2] == "outputs":
                result.extend(_urls(match[1]))
            else:
                result.append(substituted(item))
        return result
    return value


def output_kind(raw_job: dict[str, Any]) -> str:
    if raw_job["operation"] == GENERATE:
        return MODELS[raw_job["params"]["modelId"]].output_type
    return "image" if raw_job["operation"] == THUMBNAIL else "video"


def _last_name(path: tuple[str | int, ...]) -> str:
    return next((part for part in reversed(path) if isinstance(part, str)), "")


def assert_really_valid(body: Any, plan: ValidatedPlan, providers: frozenset[str]) -> None:
    """Everything an accepted body must be, checked from the body itself."""
    assert isinstance(body, dict) and set(body) <= {"executionPlan", "metadata"}
    assert plan.metadata == body.get("metadata", {}) and isinstance(plan.metadata, dict)
    json.dumps(body, allow_nan=False)  # storable as strict JSON
    execution_plan = body["executionPlan"]
    assert isinstance(execution_plan, dict) and set(execution_plan) == {"jobs"}
    raw_jobs = execution_plan["jobs"]
    assert isinstance(raw_jobs, list) and 1 <= len(raw_jobs) <= MAX_JOBS
    for raw in raw_jobs:
        assert isinstance(raw, dict) and {"id", "operation", "params"} <= set(raw) <= JOB_FIELDS
    ids = [raw["id"] for raw in raw_jobs]
    assert all(isinstance(job_id, str) and JOB_ID.fullmatch(job_id) for job_id in ids), ids
    assert len(set(ids)) == len(ids), f"duplicate ids in {ids}"
    assert [job.id for job in plan.jobs] == ids
    assert all(raw["operation"] in OPERATIONS for raw in raw_jobs)
    kinds = {raw["id"]: output_kind(raw) for raw in raw_jobs}
    graph: dict[str, set[str]] = {}
    for raw, job in zip(raw_jobs, plan.jobs, strict=True):
        where = f"job {raw['id']!r}"
        params = raw["params"]
        assert job.operation == raw["operation"] and isinstance(params, dict), where
        depends_on = raw.get("dependsOn", [])
        assert isinstance(depends_on, list) and all(isinstance(dep, str) for dep in depends_on)
        found = list(references(params))
        targets = set(depends_on) | {target for _, target, _ in found}
        assert targets <= set(ids), f"{where} depends on unknown {targets - set(ids)}"
        assert raw["id"] not in targets, f"{where} depends on itself"
        assert set(job.depends_on) == targets, where
        graph[raw["id"]] = targets
        assert isinstance(job.continue_on_error, bool)
        # References stay, verbatim and where they were, for the workflow to resolve.
        assert Counter(references(job.params)) == Counter(found), where
        for path, target, _ in found:
            name = _last_name(path)
            if name == "imageUrl":
                assert kinds[target] == "image", f"{where}: {name} <- {kinds[target]}"
            if name in ("input", "inputs"):
                assert kinds[target] == "video", f"{where}: {name} <- {kinds[target]}"
        values = substituted(job.params)
        if raw["operation"] == GENERATE:
            model: ModelSpec | None = MODELS.get(params.get("modelId"))
            assert model is not None and job.model == model and model.provider in providers
            model.params_model.model_validate(values, strict=True)
            assert values.get("waitingStrategy", "polling") in model.capabilities, where
            given_keys = {key for key, value in params.items() if value is not None}
            assert given_keys <= set(job.params), f"{where} dropped {given_keys - set(job.params)}"
        elif raw["operation"] == CONCAT:
            assert job.model is None and set(params) == set(job.params) == {"inputs"}, where
            assert isinstance(params["inputs"], list | str)
            if isinstance(params["inputs"], list):
                assert 1 <= len(params["inputs"]) <= 200, where
            inputs = values["inputs"]
            assert isinstance(inputs, list) and inputs, where
            assert all(isinstance(url, str) and HTTP_URL.match(url) for url in inputs), where
        else:
            assert job.model is None and set(params) <= THUMBNAIL_FIELDS, where
            assert set(job.params) <= THUMBNAIL_FIELDS, where
            assert isinstance(values["input"], str) and HTTP_URL.match(values["input"]), where
            at = job.params.get("atSeconds", 0)
            assert type(at) in (int, float) and 0 <= at <= 24 * 3600, where
            assert job.params.get("format", "jpeg") in ("jpeg", "png"), where
    # Acyclic: a topological sort (Kahn) takes every job.
    remaining = dict(graph)
    while remaining:
        ready = [job_id for job_id, deps in remaining.items() if not deps & remaining.keys()]
        assert ready, f"dependency cycle among {sorted(remaining)}"
        for job_id in ready:
            del remaining[job_id]


def check(body: Any, providers: frozenset[str] = PROVIDERS) -> ValidatedPlan | None:
    """The properties every body has; the plan when it was accepted."""
    result = outcome(body, providers)
    if isinstance(result, ValidatedPlan):
        assert_really_valid(body, result, providers)
        return result
    assert_problems_point_into(body, result)
    return None


# -- Strategies: arbitrary JSON -----------------------------------------------------------------

# What Python's JSON parser can hand the API: NaN and infinities included.
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
finite_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)

JOB_IDS = st.from_regex(r"[A-Za-z0-9_.-]{1,10}", fullmatch=True)
URLS = st.from_regex(
    r"https?://[a-z0-9-]{1,12}\.example(/[A-Za-z0-9._~-]{1,8}){0,2}", fullmatch=True
)
PROMPTS = st.text(min_size=1, max_size=40)


def reference_to(job_id: str, *, many: bool = False) -> str:
    return f"{{{{jobs.{job_id}.{'outputs' if many else 'output'}}}}}"


# Few ids, so that dependsOn and references in plan-shaped JSON often hit a job of the plan.
SHAPED_IDS = st.sampled_from(["a", "b", "c", "a.output"])
SHAPED_REFERENCES = st.builds(reference_to, SHAPED_IDS, many=st.booleans())
SHAPED_PARAMS = st.dictionaries(
    st.sampled_from(
        ["modelId", "prompt", "imageUrl", "durationSeconds", "waitingStrategy", "inputs"]
        + ["input", "atSeconds", "format", "seed", "aspectRatio", "colour"]
    ),
    json_values
    | SHAPED_REFERENCES
    | URLS
    | st.sampled_from([model.id for model in REGISTRY])
    | st.lists(SHAPED_REFERENCES | URLS, max_size=3)
    | st.sampled_from(["webhook", "polling", "png", "16:9", 5, 6, 8]),
    max_size=5,
)
SHAPED_JOBS = st.fixed_dictionaries(
    {},
    optional={
        "id": SHAPED_IDS | json_values,
        "operation": st.sampled_from(OPERATIONS) | json_values,
        "params": SHAPED_PARAMS | json_values,
        "dependsOn": st.lists(SHAPED_IDS, max_size=3) | json_values,
        "continueOnError": st.booleans() | json_values,
    },
)
plan_shaped_json = st.fixed_dictionaries(
    {},
    optional={
        "executionPlan": st.fixed_dictionaries(
            {}, optional={"jobs": st.lists(SHAPED_JOBS, max_size=4) | json_values}
        )
        | json_values,
        "metadata": json_values,
    },
)


# -- Strategies: valid plans --------------------------------------------------------------------


def _from_schema(prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of one field of a model's params JSON schema (as GET /api/models publishes it)."""
    if "anyOf" in prop:
        return st.one_of([_from_schema(branch) for branch in prop["anyOf"]])
    if "const" in prop:
        return st.just(prop["const"])
    if "enum" in prop:
        return st.sampled_from(prop["enum"])
    if prop.get("type") == "null":
        return st.none()
    if prop.get("type") == "integer":
        return st.integers(prop.get("minimum"), prop.get("maximum"))
    if prop.get("type") == "string":
        if prop.get("pattern") == "^https?://":
            return URLS
        return st.text(
            min_size=prop.get("minLength", 0), max_size=min(prop.get("maxLength", 40), 40)
        )
    raise AssertionError(f"no strategy for {prop}")


@st.composite
def generate_params(draw: st.DrawFn, model: ModelSpec, earlier: dict[str, str]) -> dict[str, Any]:
    schema = model.params_model.model_json_schema()
    images = sorted(job_id for job_id, kind in earlier.items() if kind == "image")
    params: dict[str, Any] = {"modelId": model.id}
    # Any output may stand in a prompt; only an image in imageUrl.
    params["prompt"] = draw(
        PROMPTS | st.sampled_from(sorted(earlier)).map(reference_to) if earlier else PROMPTS
    )
    for name, prop in schema["properties"].items():
        if name in params or (name not in schema["required"] and draw(st.booleans())):
            continue
        if name == "waitingStrategy":
            params[name] = draw(st.sampled_from(sorted(model.capabilities)))
        elif name == "imageUrl" and images and draw(st.booleans()):
            params[name] = reference_to(draw(st.sampled_from(images)))
        else:
            params[name] = draw(_from_schema(prop))
    return params


@st.composite
def valid_plans(draw: st.DrawFn, *, max_jobs: int = 6) -> dict[str, Any]:
    count = draw(st.integers(1, max_jobs))
    ids = draw(st.lists(JOB_IDS, min_size=count, max_size=count, unique=True))
    kinds: dict[str, str] = {}
    jobs = []
    for job_id in ids:
        videos = sorted(other for other, kind in kinds.items() if kind == "video")
        video_reference = st.sampled_from(videos).map(reference_to) if videos else st.nothing()
        operation = draw(st.sampled_from(OPERATIONS))
        params: dict[str, Any]
        if operation == GENERATE:
            model = draw(st.sampled_from(REGISTRY))
            params = draw(generate_params(model, kinds))
            kinds[job_id] = model.output_type
        elif operation == CONCAT:
            spliced = (
                st.sampled_from(videos).map(lambda other: reference_to(other, many=True))
                if videos
                else st.nothing()
            )
            inputs = st.lists(URLS | video_reference | spliced, min_size=1, max_size=4)
            # A whole `.outputs` param is the list of that job's outputs.
            params = {"inputs": draw(inputs | spliced)}
            kinds[job_id] = "video"
        else:
            params = {"input": draw(URLS | video_reference)}
            if draw(st.booleans()):
                params["atSeconds"] = draw(
                    st.integers(0, 24 * 3600) | st.floats(0, 24 * 3600, allow_nan=False)
                )
            if draw(st.booleans()):
                params["format"] = draw(st.sampled_from(["jpeg", "png"]))
            kinds[job_id] = "image"
        job: dict[str, Any] = {"id": job_id, "operation": operation, "params": params}
        if kinds.keys() - {job_id} and draw(st.booleans()):
            job["dependsOn"] = draw(
                st.lists(st.sampled_from(sorted(kinds.keys() - {job_id})), unique=True)
            )
        if draw(st.booleans()):
            job["continueOnError"] = draw(st.booleans())
        jobs.append(job)
    body: dict[str, Any] = {"executionPlan": {"jobs": draw(st.permutations(jobs))}}
    if draw(st.booleans()):
        body["metadata"] = draw(st.dictionaries(st.text(max_size=8), finite_json, max_size=3))
    return body


# -- Strategies: mutations of valid plans -------------------------------------------------------
# Each mutates a valid plan in place and says whether the result is surely invalid; when it is
# not sure, assert_really_valid is the judge of what the validator accepts.

Mutation = Callable[[st.DrawFn, dict[str, Any]], bool]


def _jobs(body: dict[str, Any]) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = body["executionPlan"]["jobs"]
    return jobs


def _pick_job(draw: st.DrawFn, body: dict[str, Any]) -> dict[str, Any]:
    return draw(st.sampled_from(_jobs(body)))


def _fresh_id(body: dict[str, Any], stem: str) -> str:
    taken = {job["id"] for job in _jobs(body)}
    return next(f"{stem}-{n}" for n in range(len(taken) + 1) if f"{stem}-{n}" not in taken)


def drop_a_required_field(draw: st.DrawFn, body: dict[str, Any]) -> bool:
    job = _pick_job(draw, body)
    required: list[tuple[str, ...]] = [("id",), ("operation",), ("params",)]
    if job["operation"] == GENERATE:
        schema = MODELS[job["params"]["modelId"]].params_model.model_json_schema()
        required += [("params", name) for name in schema["required"]]
    else:
        required.append(("params", "inputs" if job["operation"] == CONCAT else "input"))
    *parents, last = draw(st.sampled_from(required))
    node = job
    for part in parents:
        node = node[part]
    del node[last]
    return True


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nodes(item, (*path, index))


def _replace(draw: st.DrawFn, body: dict[str, Any], values: st.SearchStrategy[Any]) -> None:
    *parents, last = draw(st.sampled_from(list(_nodes(body))[1:]))
    node: Any = body
    for part in parents:
        node = node[part]
    old = node[last]
    node[last] = draw(values.filter(lambda new: type(new) is not type(old)))


def change_a_type(draw: st.DrawFn, body: dict[str, Any]) -> bool:
    _replace(draw, body, json_scalars | st.lists(json_scalars, max_size=2) | st.just({}))
    return False


def replace_a_value_with_any_json(draw: st.DrawFn, body: dict[str, Any]) -> bool:
    _replace(draw, body, json_values)
    return False


def retarget_a_reference(draw: st.DrawFn, body: dict[str, Any]) -> bool:
    job = _pick_job(draw, body)
    target = draw(st.sampled_from(["itself", "unknown", "another"]))
    others = sorted(other["id"] for other in _jobs(body) if other is not job)
    if target == "another" and not others:
        target = "itself"
    job_id = {
        "itself": job["id"],
        "unknown": _fresh_id(body, "ghost"),
        "another": draw(st.sampled_from(others)) if others else job["id"],
    }[target]
    reference = reference_to(job_id)
    if job["operation"] == GENERATE:
        job["params"]["prompt"] = reference
    elif job["operation"] == CONCAT:
        job["params"]["inputs"] = [reference]
    else:
        job["params"]["input"] = reference
    # Another job may be fine, or a cycle, or the wrong kind of output.
    return target != "another"


def add_a_cycle(draw: st.DrawFn, body: dict[str, Any]) -> bool:
    jobs = _jobs(body)
    ring = draw(
        st.lists(st.sampled_from(jobs), min_size=1, max_size=min(len(jobs), 4), unique_by=id)
    )
    for job, after in zip(ring, [*ring[1:], ring[0]], strict=True):
        job["dependsOn"] = [*job.get("dependsOn", []), after["id"]]
    return True


def duplicate_an_id(draw: st.DrawFn, body: dict[str, Any]) -> bool:
    jobs = _jobs(body)
    if len(jobs) == 1:
        jobs.append(copy.deepcopy(jobs[0]))
    else:
        first, second = draw(st.lists(st.sampled_from(jobs), min_size=2, max_size=2, unique_by=id))
        second["id"] = first["id"]
    return True


def add_an_unknown_field(draw: st.DrawFn, body: dict[str, Any]) -> bool:
    job = _pick_job(draw, body)
    where = draw(st.sampled_from([body, body["executionPlan"], job, job["params"]]))
    where["x-unknown"] = draw(finite_json)
    return True


def name_an_unknown_model_or_operation(draw: st.DrawFn, body: dict[str, Any]) -> bool:
    job = _pick_job(draw, body)
    if job["operation"] == GENERATE and draw(st.booleans()):
        job["params"]["modelId"] = draw(
            st.sampled_from(["acme/nothing", "", "BYTEDANCE/seedance-1-lite"])
        )
    else:
        job["operation"] = draw(st.sampled_from(["pipeline:Generate", "pipeline:", "concat", ""]))
    return True


def use_the_wrong_kind_of_output(draw: st.DrawFn, body: dict[str, Any]) -> bool:
    jobs = _jobs(body)
    image, video = _fresh_id(body, "still"), _fresh_id(body, "clip")
    jobs.append({"id": image, "operation": THUMBNAIL, "params": {"input": "https://a.example/v"}})
    jobs.append({"id": video, "operation": CONCAT, "params": {"inputs": ["https://a.example/v"]}})
    wrong = draw(
        st.sampled_from(
            [
                (CONCAT, {"inputs": ["https://a.example/v", reference_to(image)]}),
                (CONCAT, {"inputs": [reference_to(image, many=True)]}),
                (THUMBNAIL, {"input": reference_to(image)}),
                (
                    GENERATE,
                    {
                        "modelId": "kwaivgi/kling-v2.1",
                        "prompt": "p",
                        "imageUrl": reference_to(video),
                    },
                ),
            ]
        )
    )
    jobs.append({"id": _fresh_id(body, "wrong"), "operation": wrong[0], "params": wrong[1]})
    return True


def put_outputs_where_one_url_goes(draw: st.DrawFn, body: dict[str, Any]) -> bool:
    jobs = _jobs(body)
    video = _fresh_id(body, "clip")
    jobs.append({"id": video, "operation": CONCAT, "params": {"inputs": ["https://a.example/v"]}})
    many = reference_to(video, many=True)
    params = draw(
        st.sampled_from(
            [
                {"input": many},
                {"modelId": "bytedance/seedance-1-lite", "prompt": many},
                {"modelId": "bytedance/seedance-1-lite", "prompt": "p", "imageUrl": many},
            ]
        )
    )
    operation = THUMBNAIL if "input" in params else GENERATE
    jobs.append({"id": _fresh_id(body, "one"), "operation": operation, "params": params})
    return True


def wait_in_an_unsupported_way(draw: st.DrawFn, body: dict[str, Any]) -> bool:
    model = draw(
        st.sampled_from([model for model in REGISTRY if "webhook" not in model.capabilities])
    )
    _jobs(body).append(
        {
            "id": _fresh_id(body, "veo"),
            "operation": GENERATE,
            "params": {"modelId": model.id, "prompt": "p", "waitingStrategy": "webhook"},
        }
    )
    return True


def put_a_non_url_where_a_url_goes(draw: st.DrawFn, body: dict[str, Any]) -> bool:
    not_url = draw(
        st.sampled_from(["clip.mp4", "ftp://a.example/v", "", " https://a.example/v", "file:///x"])
        | st.text(max_size=10).filter(
            lambda text: not HTTP_URL.match(text) and not REFERENCE.fullmatch(text)
        )
    )
    operation, params = draw(
        st.sampled_from(
            [
                (CONCAT, {"inputs": ["https://a.example/v", not_url]}),
                (THUMBNAIL, {"input": not_url}),
                (GENERATE, {"modelId": "kwaivgi/kling-v2.1", "prompt": "p", "imageUrl": not_url}),
            ]
        )
    )
    _jobs(body).append({"id": _fresh_id(body, "nowhere"), "operation": operation, "params": params})
    return True


def put_in_what_json_cannot_hold(draw: st.DrawFn, body: dict[str, Any]) -> bool:
    value = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    job = _pick_job(draw, body)
    where = draw(st.sampled_from(["metadata", "param", "atSeconds"]))
    if where == "metadata":
        body["metadata"] = {"score": value}
    elif where == "param" and job["operation"] == GENERATE:
        job["params"]["seed"] = value
    else:
        job["operation"], job["params"] = (
            THUMBNAIL,
            {"input": "https://a.example/v", "atSeconds": value},
        )
    return True


MUTATIONS: list[Mutation] = [
    drop_a_required_field,
    change_a_type,
    replace_a_value_with_any_json,
    retarget_a_reference,
    add_a_cycle,
    duplicate_an_id,
    add_an_unknown_field,
    name_an_unknown_model_or_operation,
    use_the_wrong_kind_of_output,
    put_outputs_where_one_url_goes,
    wait_in_an_unsupported_way,
    put_a_non_url_where_a_url_goes,
    put_in_what_json_cannot_hold,
]


@st.composite
def almost_valid_plans(draw: st.DrawFn) -> tuple[dict[str, Any], str, bool]:
    body = copy.deepcopy(draw(valid_plans(max_jobs=4)))
    mutation = draw(st.sampled_from(MUTATIONS))
    surely_invalid = mutation(draw, body)
    return body, mutation.__name__, surely_invalid


# -- Properties ---------------------------------------------------------------------------------


@PROPERTIES
@given(body=json_values)
def test_any_json_is_refused_with_problems_that_point_into_it(body: Any) -> None:
    check(body)


@PROPERTIES
@given(body=plan_shaped_json)
def test_plan_shaped_json_is_refused_or_really_valid(body: Any) -> None:
    check(body)


@PROPERTIES
@given(body=valid_plans())
def test_valid_plans_are_accepted(body: dict[str, Any]) -> None:
    snapshot = copy.deepcopy(body)
    plan = check(body)
    assert plan is not None, outcome(body)
    assert body == snapshot, "validation changed the submitted body"


@PROPERTIES
@given(case=almost_valid_plans())
def test_almost_valid_plans_are_refused_or_really_valid(
    case: tuple[dict[str, Any], str, bool],
) -> None:
    body, mutation, surely_invalid = case
    plan = check(body)
    if surely_invalid:
        assert plan is None, f"{mutation}: accepted {body}"


@PROPERTIES
@given(body=valid_plans(), data=st.data())
def test_a_model_whose_provider_is_not_configured_is_refused(
    body: dict[str, Any], data: st.DataObject
) -> None:
    used = [job for job in _jobs(body) if job["operation"] == GENERATE]
    assume(used)
    missing = MODELS[data.draw(st.sampled_from(used))["params"]["modelId"]].provider
    refused = outcome(body, PROVIDERS - {missing})
    assert isinstance(refused, list), "accepted a model of a provider without credentials"
    assert_problems_point_into(body, refused)
    assert any(problem.path.endswith("params.modelId") for problem in refused), refused


def _nested(depth: int, container: str) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value} if container == "object" else [value]
    return value


def _nesting(body: Any) -> int:
    """Levels of objects and lists in `body`: 1 for a flat object."""
    deepest, stack = 0, [(body, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, level)
            stack.extend(
                (item, level + 1) for item in (value.values() if isinstance(value, dict) else value)
            )
    return deepest


@settings(max_examples=40, deadline=None, database=None)
@given(
    depth=st.integers(1, 3000),
    container=st.sampled_from(["object", "list"]),
    where=st.sampled_from(["metadata", "prompt", "inputs"]),
)
def test_deep_nesting_is_refused_without_exhausting_the_stack(
    depth: int, container: str, where: str
) -> None:
    nested = _nested(depth, container)
    job: dict[str, Any] = {
        "id": "deep",
        "operation": GENERATE,
        "params": {"modelId": "bytedance/seedance-1-lite", "prompt": "p"},
    }
    body: dict[str, Any] = {"executionPlan": {"jobs": [job]}}
    if where == "metadata":
        body["metadata"] = {"tree": nested}
    elif where == "prompt":
        job["params"]["prompt"] = nested
    else:
        job["operation"], job["params"] = CONCAT, {"inputs": [nested]}
    result = outcome(body)
    if _nesting(body) > MAX_DEPTH:
        assert isinstance(result, list)
        assert any("nested deeper" in problem.message for problem in result), result
        assert_problems_point_into(body, result)


def _near_references() -> st.SearchStrategy[str]:
    ids = st.from_regex(r"[A-Za-z0-9_.-]{0,6}", fullmatch=True) | st.text(max_size=4)
    kinds = st.sampled_from(["output", "outputs", "Output", "output.output", ""])
    affixes = st.sampled_from(["", "", " ", "\n", "}", "{", "x"])
    return st.builds(
        lambda before, job_id, kind, after: f"{before}{{{{jobs.{job_id}.{kind}}}}}{after}",
        affixes,
        ids,
        kinds,
        affixes,
    )


@PROPERTIES
@given(value=_near_references() | st.text(max_size=30) | json_scalars)
@example("{{jobs.a.output}}\n")  # `$` in a regex also matches before a final newline
@example("{{jobs.a.output.outputs}}")  # ids may hold dots: job `a.output`, all outputs
def test_a_reference_is_a_whole_string_of_the_documented_form(value: Any) -> None:
    parsed = parse_reference(value)
    match = REFERENCE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        assert parsed is None, value
    else:
        assert parsed is not None, value
        assert (parsed.job_id, parsed.many) == (match[1], match[2] == "outputs")
        assert str(parsed) == value


@pytest.mark.parametrize("levels", [MAX_DEPTH, MAX_DEPTH + 1])
def test_a_body_may_nest_max_depth_levels(levels: int) -> None:
    body = {
        "executionPlan": {
            "jobs": [{"id": "a", "operation": CONCAT, "params": {"inputs": ["https://a.example/"]}}]
        },
        "metadata": _nested(levels - 1, "object"),  # under the body's own level
    }
    assert _nesting(body) == levels
    accepted = check(body) is not None
    assert accepted == (levels <= MAX_DEPTH)
