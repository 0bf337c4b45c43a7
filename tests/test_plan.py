"""Plan validation: every problem at once, each with its JSON path."""

from __future__ import annotations

from typing import Any

import pytest

from reelflow.plan import MAX_JOBS, PlanInvalid, validate_submission
from reelflow.providers.registry import MODELS
from tests.factories import generate_job, plan

PROVIDERS = {model.provider for model in MODELS.values()}


def problems(body: Any) -> dict[str, str]:
    with pytest.raises(PlanInvalid) as caught:
        validate_submission(body, providers=PROVIDERS)
    return {problem.path: problem.message for problem in caught.value.problems}


def test_valid_plan_fills_in_model_defaults() -> None:
    validated = validate_submission(
        plan(generate_job("a"), metadata={"user": "u1"}), providers=PROVIDERS
    )
    [job] = validated.jobs
    assert job.model.id == "bytedance/seedance-1-lite"
    assert job.params["aspectRatio"] == "16:9"
    assert job.params["durationSeconds"] == 5
    assert validated.metadata == {"user": "u1"}


@pytest.mark.parametrize("body", [None, [], "plan", 3])
def test_body_that_is_not_an_object_is_one_problem(body: Any) -> None:
    assert problems(body) == {"$": "the body must be a JSON object"}


def test_missing_plan_and_empty_jobs_are_reported() -> None:
    assert "executionPlan" in problems({})
    assert "executionPlan.jobs" in problems({"executionPlan": {"jobs": []}})


def test_one_plan_with_many_errors_reports_all_of_them() -> None:
    body = plan(
        generate_job("a", prompt=""),
        generate_job("a"),
        {"id": "b", "operation": "pipeline:unknown", "params": {}},
        generate_job("c", modelId="acme/nonexistent"),
        generate_job("d", durationSeconds=13, aspectRatio="2:1", colour="red"),
        {"id": "bad id!", "operation": "pipeline:generate"},
        generate_job("e", waitingStrategy="carrier-pigeon"),
        {**generate_job("f"), "dependsOn": ["f", "ghost"]},
        extra="field",
    )
    found = problems(body)
    # Two pydantic messages are long; their keys are checked here, their gist below.
    assert found == {
        "extra": "unknown field",
        "executionPlan.jobs[0].params.prompt": "String should have at least 1 character",
        "executionPlan.jobs[1].id": "duplicate job id 'a' (first used by jobs[0])",
        "executionPlan.jobs[2].operation": (
            "unknown operation 'pipeline:unknown'; expected one of ['pipeline:generate']"
        ),
        "executionPlan.jobs[3].params.modelId": (
            "unknown model 'acme/nonexistent'; see GET /api/models"
        ),
        "executionPlan.jobs[4].params.durationSeconds": "Input should be less than or equal to 12",
        "executionPlan.jobs[4].params.aspectRatio": found.get(
            "executionPlan.jobs[4].params.aspectRatio"
        ),
        "executionPlan.jobs[4].params.colour": "unknown field",
        "executionPlan.jobs[5].id": found.get("executionPlan.jobs[5].id"),
        "executionPlan.jobs[5].params": "Field required",
        "executionPlan.jobs[6].params.waitingStrategy": "Input should be 'webhook' or 'polling'",
        "executionPlan.jobs[7].dependsOn[0]": "a job cannot depend on itself",
        "executionPlan.jobs[7].dependsOn[1]": "unknown job id 'ghost'",
    }
    assert "16:9" in found["executionPlan.jobs[4].params.aspectRatio"]
    assert "pattern" in found["executionPlan.jobs[5].id"]


def test_dependency_cycle_is_named() -> None:
    body = plan(
        {**generate_job("a"), "dependsOn": ["c"]},
        {**generate_job("b"), "dependsOn": ["a"]},
        {**generate_job("c"), "dependsOn": ["b"]},
    )
    assert list(problems(body).values()) == ["dependency cycle: a -> c -> b -> a"]


def test_too_many_jobs_is_refused() -> None:
    body = plan(*(generate_job(f"j{i}") for i in range(MAX_JOBS + 1)))
    assert problems(body) == {"executionPlan.jobs": f"at most {MAX_JOBS} jobs per plan"}


def test_non_string_prompt_and_wrong_types_are_reported_with_paths() -> None:
    found = problems(plan(generate_job("a", prompt=42, seed=-1), {"id": 7, "params": []}))
    assert found["executionPlan.jobs[0].params.prompt"] == "Input should be a valid string"
    assert "executionPlan.jobs[0].params.seed" in found
    assert "executionPlan.jobs[1].id" in found
    assert "executionPlan.jobs[1].operation" in found
    assert "executionPlan.jobs[1].params" in found


def test_model_of_a_provider_without_credentials_is_refused() -> None:
    with pytest.raises(PlanInvalid) as caught:
        validate_submission(plan(generate_job("a")), providers={"fal"})
    [problem] = caught.value.problems
    assert problem.path == "executionPlan.jobs[0].params.modelId"
    assert "no credentials for" in problem.message and "'replicate'" in problem.message
