"""docker-compose.temporal.yml: the services users rely on exist and every image is pinned."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.temporal.yml"


def test_compose_has_temporal_on_postgres_with_ui_and_admin_tools() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"temporal", "temporal-postgresql", "temporal-ui", "temporal-admin-tools"} <= set(
        services
    )
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert "7233:7233" in services["temporal"]["ports"]


def test_every_image_is_pinned_to_a_version() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, service in services.items():
        image, _, tag = service["image"].partition(":")
        assert tag and tag != "latest" and any(c.isdigit() for c in tag), (name, image)
