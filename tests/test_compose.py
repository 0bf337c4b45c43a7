"""docker-compose.temporal.yml and the Dockerfile: what the README names exists, images are pinned,
services are healthchecked, workers scale, and reelflow's containers get real settings.

Docker is not needed: the files are parsed, and checked against the code they describe (Settings,
the API's routes, the workflows' search attributes, the project version).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import SecretStr

from api.routes.health import router as health_router
from reelflow.config import Settings
from workflows.execution import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.temporal.yml"
DOCKERFILE = ROOT / "Dockerfile"
README = ROOT / "README.md"

REELFLOW_SERVICES = ("reelflow-api", "reelflow-worker")


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return compose


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _compose_names_in(section: str) -> set[str]:
    """Compose services and volumes a README section names: kebab-case words in inline code
    (`reelflow-worker`) and the targets of `--scale NAME=N` in its commands."""
    prose = re.sub(r"```.*?```", "", section, flags=re.DOTALL)
    spans = {" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)}
    names = {span for span in spans if re.fullmatch(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)+", span)}
    return names | set(re.findall(r"--scale\s+([a-z0-9-]+)=", section))


def _tag_is_pinned(image: str) -> bool:
    """An explicit version: a digest, or a tag with a digit that is not `latest`."""
    if "@sha256:" in image:
        return True
    _, _, tag = image.rpartition("/")[2].partition(":")
    return bool(tag) and tag != "latest" and any(c.isdigit() for c in tag)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def _interpolated(value: str) -> str:
    """A value as Compose would give it with no variable set: `${X:-default}` is the default."""
    value = re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)
    return value.replace("$$", "$")


def _settings_env_names() -> set[str]:
    prefix = Settings.model_config.get("env_prefix", "")
    return {
        (prefix + (field.validation_alias if isinstance(field.validation_alias, str) else name))
        .upper()
        .strip()
        for name, field in Settings.model_fields.items()
    }


def test_compose_has_temporal_on_postgres_with_ui_and_admin_tools() -> None:
    services = _services()
    assert {"temporal", "temporal-postgresql", "temporal-ui", "temporal-admin-tools"} <= set(
        services
    )
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert "7233:7233" in services["temporal"]["ports"]


def test_every_image_is_pinned_to_a_version() -> None:
    for name, service in _services().items():
        assert "image" in service, f"{name} has no image: tag"
        assert _tag_is_pinned(service["image"]), (name, service["image"])


def test_pin_check_rejects_latest_and_untagged_images() -> None:
    assert not _tag_is_pinned("postgres")
    assert not _tag_is_pinned("temporalio/ui:latest")
    assert not _tag_is_pinned("localhost:5000/reelflow")
    assert _tag_is_pinned("localhost:5000/reelflow:0.1.0")
    assert _tag_is_pinned("postgres@sha256:" + "0" * 64)


def test_reelflow_image_is_built_here_and_tagged_with_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name in REELFLOW_SERVICES:
        service = _services()[name]
        assert service["build"] == "."
        assert service["image"] == f"reelflow:{version}", name


def test_dockerfile_base_image_is_pinned_to_a_patch_version() -> None:
    stages: set[str] = set()
    froms = re.findall(r"^FROM\s+(.+)$", DOCKERFILE.read_text(), flags=re.MULTILINE | re.I)
    assert froms
    for line in froms:
        words = [word for word in line.split() if not word.startswith("--")]
        image = words[0]
        if len(words) >= 3 and words[1].lower() == "as":
            stages.add(words[2])
        if image in stages:
            continue
        assert "$" not in image, f"FROM {image}: pin it here, not in a build argument"
        tag = image.rpartition("/")[2].partition(":")[2]
        assert "@sha256:" in image or re.match(r"\d+\.\d+\.\d+", tag), f"FROM {image}"


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".git", ".venv", ".reelflow"} <= ignored


def test_every_service_the_production_section_names_exists() -> None:
    named = _compose_names_in(_readme_section("Running in production"))
    assert set(REELFLOW_SERVICES) <= named, "the README should name reelflow's services"
    compose = _compose()
    declared = set(compose["services"]) | set(compose.get("volumes") or {})
    assert named <= declared, (
        f"named in the README, missing from the compose file: {named - declared}"
    )


def test_readme_extraction_finds_services_in_code_spans_and_scale_flags() -> None:
    section = (
        "Start `reelflow-api` and `temporal-ui`, not `reelflow api` or `<TASK_QUEUE>-media`.\n"
        "```sh\ndocker compose up --scale reelflow-worker=4\n```\n"
    )
    assert _compose_names_in(section) == {"reelflow-api", "temporal-ui", "reelflow-worker"}


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in _services().items():
        if service.get("restart") == "no":  # a one-shot set-up step
            continue
        test = (service.get("healthcheck") or {}).get("test")
        assert test and test != ["NONE"], f"{name} has no healthcheck"


def test_dependencies_and_volumes_are_declared() -> None:
    compose = _compose()
    services, volumes = compose["services"], set(compose.get("volumes") or {})
    for name, service in services.items():
        for target in service.get("depends_on") or {}:
            assert target in services, f"{name} depends on unknown service {target}"
        for mount in service.get("volumes") or []:
            source = mount["source"] if isinstance(mount, dict) else mount.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name} mounts undeclared volume {source}"


def test_reelflow_services_wait_for_their_database_and_search_attributes() -> None:
    for name in REELFLOW_SERVICES:
        depends = _services()[name]["depends_on"]
        assert depends["reelflow-postgresql"]["condition"] == "service_healthy", name
        assert depends["temporal-admin-tools"]["condition"] == "service_healthy", name


def test_worker_service_can_be_scaled() -> None:
    worker = _services()["reelflow-worker"]
    assert "container_name" not in worker
    for port in worker.get("ports") or []:
        published = port.get("published") if isinstance(port, dict) else ":" in str(port)
        assert not published, f"reelflow-worker publishes a fixed host port: {port}"


def test_reelflow_services_set_only_settings_fields() -> None:
    fields = _settings_env_names()
    assert {"DATABASE_URL", "TEMPORAL_ADDRESS", "OTEL_EXPORTER_OTLP_ENDPOINT"} <= fields
    for name in REELFLOW_SERVICES:
        env = _environment(_services()[name])
        assert env, name
        unknown = set(env) - fields
        assert not unknown, f"{name} sets variables reelflow does not read: {unknown}"


def test_compose_file_holds_no_secret_settings() -> None:
    secrets = {
        name.upper()
        for name, field in Settings.model_fields.items()
        if SecretStr in getattr(field.annotation, "__args__", (field.annotation,))
    }
    assert {"REELFLOW_API_KEYS", "FAL_KEY", "S3_SECRET_KEY"} <= secrets
    for name in REELFLOW_SERVICES:
        assert not secrets & set(_environment(_services()[name])), f"{name}: secrets go in .env"


@pytest.mark.parametrize("name", REELFLOW_SERVICES)
def test_reelflow_environment_is_valid_settings_that_reach_the_other_services(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = _services()
    service = services[name]
    for key in list(os.environ):
        if key.upper() in _settings_env_names():
            monkeypatch.delenv(key)
    for key, value in _environment(service).items():
        monkeypatch.setenv(key, _interpolated(value))
    settings = Settings(_env_file=None)

    assert settings.temporal_address.rpartition(":")[0] in services
    assert settings.database_url is not None
    assert urlsplit(settings.database_url).hostname in services
    # The local store is on a named volume that every reelflow service mounts at STATE_DIR.
    mounts = {mount.split(":")[1]: mount.split(":")[0] for mount in service["volumes"]}
    assert mounts[str(settings.state_dir)] in _compose()["volumes"]
    assert mounts == {
        m.split(":")[1]: m.split(":")[0] for m in services["reelflow-worker"]["volumes"]
    }
    # Unset API_BASE_URL (an empty value) means polling, not a webhook URL of "".
    assert settings.api_base_url is None
    assert settings.cdn_base_url == "http://localhost:3000/files"


def test_healthchecks_probe_the_api_health_route_and_the_worker_metrics_port() -> None:
    services = _services()
    api_check = " ".join(services["reelflow-api"]["healthcheck"]["test"])
    routes = {getattr(route, "path", "") for route in health_router.routes}
    probed = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", api_check)
    assert probed and probed.group(2) in routes
    assert probed.group(1) == _environment(services["reelflow-api"])["API_PORT"]
    assert _environment(services["reelflow-api"])["API_HOST"] == "0.0.0.0"
    assert [f"{probed.group(1)}:{probed.group(1)}"] == services["reelflow-api"]["ports"]

    worker_env = _environment(services["reelflow-worker"])
    worker_check = " ".join(services["reelflow-worker"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{worker_env['WORKER_METRICS_PORT']}/metrics" in worker_check


def test_admin_tools_register_every_search_attribute() -> None:
    command = " ".join(_services()["temporal-admin-tools"]["command"])
    assert "temporal operator search-attribute create" in command
    assert "--type Keyword" in command
    assert "already exists" in command  # idempotent: a second start is not an error
    for key in SEARCH_ATTRIBUTES:
        assert re.search(rf"\b{key.name}\b", command), key.name
