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
            "unknown operation 'pipeline:unknown'; expected one of"
            " ['pipeline:generate', 'pipeline:concat', 'pipeline:thumbnail']"
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


def test_references_imply_dependencies_and_are_kept_for_the_workflow() -> None:
    validated = validate_submission(
        plan(
            generate_job("a"),
            generate_job("b"),
            {
                "id": "joined",
                "operation": "pipeline:concat",
                "params": {"inputs": ["{{jobs.a.output}}", "{{jobs.b.outputs}}"]},
            },
            {
                "id": "thumb",
                "operation": "pipeline:thumbnail",
                "params": {"input": "{{jobs.joined.output}}", "atSeconds": 1.5},
                "dependsOn": ["a"],
            },
            generate_job("animated", imageUrl="{{jobs.thumb.output}}"),
        ),
        providers=PROVIDERS,
    )
    jobs = {job.id: job for job in validated.jobs}
    assert jobs["joined"].depends_on == ("a", "b")
    assert jobs["joined"].params == {"inputs": ["{{jobs.a.output}}", "{{jobs.b.outputs}}"]}
    assert jobs["thumb"].depends_on == ("a", "joined")
    assert jobs["thumb"].params == {
        "input": "{{jobs.joined.output}}",
        "atSeconds": 1.5,
        "format": "jpeg",
    }
    assert jobs["animated"].params["imageUrl"] == "{{jobs.thumb.output}}"
    assert jobs["animated"].depends_on == ("thumb",)


def test_every_dag_problem_is_reported_at_once() -> None:
    body = plan(
        generate_job("clip"),
        generate_job("wrong-kind", imageUrl="{{jobs.clip.output}}"),
        generate_job("ghost-ref", imageUrl="{{jobs.nobody.output}}"),
        {
            "id": "selfish",
            "operation": "pipeline:thumbnail",
            "params": {"input": "{{jobs.selfish.output}}"},
        },
        {
            "id": "many",
            "operation": "pipeline:thumbnail",
            "params": {"input": "{{jobs.clip.outputs}}"},
        },
        {"id": "empty", "operation": "pipeline:concat", "params": {"inputs": []}},
        {
            "id": "bad-thumb",
            "operation": "pipeline:thumbnail",
            "params": {"input": "ftp://x", "atSeconds": -1, "format": "gif"},
        },
        {
            "id": "loop-a",
            "operation": "pipeline:concat",
            "params": {"inputs": ["{{jobs.loop-b.output}}"]},
        },
        {
            "id": "loop-b",
            "operation": "pipeline:concat",
            "params": {"inputs": ["{{jobs.loop-a.output}}"]},
        },
    )
    found = problems(body)
    jobs = "executionPlan.jobs"
    assert found == {
        f"{jobs}[1].params.imageUrl": "{{jobs.clip.output}} is a video and imageUrl needs an image",
        f"{jobs}[2].params.imageUrl": "{{jobs.nobody.output}} names unknown job 'nobody'",
        f"{jobs}[3].params.input": "a job cannot use its own output",
        f"{jobs}[4].params.input": (
            "{{jobs.clip.outputs}} is a list of URLs and input takes one; use {{jobs.clip.output}}"
        ),
        f"{jobs}[5].params.inputs": "List should have at least 1 item after validation, not 0",
        f"{jobs}[6].params.input": "String should match pattern '^https?://'",
        f"{jobs}[6].params.atSeconds": "Input should be greater than or equal to 0",
        f"{jobs}[6].params.format": "Input should be 'jpeg' or 'png'",
        f"{jobs}[7].dependsOn": "dependency cycle: loop-a -> loop-b -> loop-a",
    }


def test_a_long_chain_validates_without_recursion_limits() -> None:
    chain = [generate_job("j0")] + [
        {
            "id": f"j{i}",
            "operation": "pipeline:thumbnail",
            "params": {"input": "https://x/v.mp4"},
            "dependsOn": [f"j{i - 1}"],
        }
        for i in range(1, MAX_JOBS)
    ]
    assert len(validate_submission(plan(*chain), providers=PROVIDERS).jobs) == MAX_JOBS
