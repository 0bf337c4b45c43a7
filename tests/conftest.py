"""Shared fixtures: a real PostgreSQL database, Temporal dev server, emulator, worker and API.

Every session gets a database of its own (created on `DATABASE_URL`'s server, or on an embedded
pgserver when it is unset) and a task queue of its own, so runs never see each other's state.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from reelflow.config import Settings
from reelflow.db.engine import Database
from reelflow.db.migrate import apply_migrations
from reelflow.embedded import database_url, temporal_binary
from reelflow.emulator import EmulatorConfig
from reelflow.emulator import create_app as create_emulator_app
from reelflow.serving import server_config
from reelflow.stack import EMULATOR_CREDENTIALS, emulator_settings
from tests.factories import ALICE_KEY, BOB_KEY, KEEPALIVE_S, WEBHOOK_SECRET
from tests.provider_http import Handler, MockHttp
from workflows.execution import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reelflow")


SECRETS = [*EMULATOR_CREDENTIALS.values(), WEBHOOK_SECRET, ALICE_KEY, BOB_KEY]


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log(state_dir: Path) -> Iterator[None]:
    """Every log line of the session, this process's and the worker's, at DEBUG level, is
    searched for provider keys, API keys and the webhook secret when the session ends."""
    path = state_dir / "session.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield
    root.removeHandler(handler)
    root.setLevel(previous)
    handler.close()
    leaks = [
        f"{log.name}: {secret[:4]}…"
        for log in state_dir.glob("*.log")
        for secret in SECRETS
        if secret in log.read_text(errors="replace")
    ]
    assert not leaks, f"secrets found in logs: {leaks}"


@pytest.fixture(scope="session")
async def dsn(state_dir: Path) -> AsyncIterator[str]:
    """A fresh, migrated database for this test session."""
    server_dsn = database_url(Settings(_env_file=None, state_dir=state_dir))  # type: ignore[call-arg]
    name = f"reelflow_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    test_dsn = _with_database(server_dsn, name)
    await apply_migrations(test_dsn)
    yield test_dsn
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def db(dsn: str) -> AsyncIterator[Database]:
    database = Database(dsn, pool_size=2)
    yield database
    await database.close()


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        dev_server_log_level="error",
        search_attributes=SEARCH_ATTRIBUTES,
    )
    yield env
    await env.shutdown()


async def serve(app: object, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Run an ASGI app on a real port in this event loop."""
    config = server_config(
        app, "127.0.0.1", port, keepalive_s=KEEPALIVE_S, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    return server, task


async def stop(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await task


@asynccontextmanager
async def keyed_api(settings: Settings, api_keys: str) -> AsyncIterator[str]:
    """A second API on the shared worker that requires `api_keys` (`tenant:key,…`); its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server, task = await serve(
        create_app(
            settings.model_copy(
                update={
                    "api_port": port,
                    "api_base_url": url,
                    "reelflow_api_keys": SecretStr(api_keys),
                }
            )
        ),
        port,
    )
    try:
        yield url
    finally:
        await stop(server, task)


@pytest.fixture(scope="session")
async def emulator_url() -> AsyncIterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server, task = await serve(
        create_emulator_app(EmulatorConfig.uniform(public_url=url, generation_seconds=1.5)), port
    )
    yield url
    await stop(server, task)


@pytest.fixture
async def emulator(emulator_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the emulator's admin API; knobs changed by a test are reset after it."""
    async with httpx.AsyncClient(base_url=emulator_url) as client:
        original = (await client.get("/_emulator/config")).json()
        yield client
        await client.patch("/_emulator/config", json=original)


@pytest.fixture(scope="session")
async def settings(
    dsn: str, temporal_env: WorkflowEnvironment, emulator_url: str, state_dir: Path
) -> Settings:
    api_port = free_port()
    emulator = {key.lower(): value for key, value in emulator_settings(emulator_url).items()}
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        state_dir=state_dir,
        database_url=dsn,
        temporal_address=temporal_env.client.service_client.config.target_host,
        task_queue=f"reelflow-test-{uuid.uuid4().hex[:8]}",
        api_port=api_port,
        api_base_url=f"http://127.0.0.1:{api_port}",
        poll_initial_backoff_s=0.5,
        poll_backoff_multiplier=1.5,
        poll_max_interval_s=1.0,
        # Long enough that webhook tests prove the webhook, not the safety net, finished them.
        webhook_safety_poll_s=60,
        webhook_token_secret=WEBHOOK_SECRET,
        worker_metrics_port=free_port(),
        # Rate limits are the provider's business; tests push hundreds of jobs through.
        replicate_activities_per_second=100,
        fal_activities_per_second=100,
        veo_activities_per_second=100,
        **emulator,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process these settings."""
    env = {key: value for key, value in os.environ.items() if key not in Settings.model_fields}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[name.upper()] = str(value)
    env["LOG_LEVEL"] = "DEBUG"
    return env


class WorkerProcess:
    """The real worker (`python -m reelflow worker`) as a child process that tests can kill."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self._settings = settings
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "reelflow", "worker"],
            env=settings_env(self._settings),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a machine dies."""
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        self._process.wait()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def log(self) -> str:
        return self._log_path.read_text(errors="replace")


@dataclass
class ApiCommand:
    """`python -m reelflow api` as a child process, as deployments run it."""

    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
async def api_command(settings: Settings, state_dir: Path) -> AsyncIterator[ApiCommand]:
    port = free_port()
    command = ApiCommand(f"http://127.0.0.1:{port}", state_dir / f"api-{port}.log")
    env = settings_env(settings.model_copy(update={"api_port": port}))
    with command.log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "reelflow", "api"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(base_url=command.url) as client:
            while True:
                assert process.poll() is None, command.log()
                assert time.monotonic() < deadline, command.log()
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        yield command
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="session")
def worker(settings: Settings, state_dir: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings, state_dir / "worker.log")
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
async def api_url(settings: Settings, worker: WorkerProcess) -> AsyncIterator[str]:
    server, task = await serve(create_app(settings), settings.api_port)
    yield f"http://127.0.0.1:{settings.api_port}"
    await stop(server, task)


@pytest.fixture
async def api(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        yield client


@pytest.fixture
async def mock_http() -> AsyncIterator[MockHttp]:
    """httpx clients whose requests go to a handler (tests.provider_http); closed after the
    test."""
    clients: list[httpx.AsyncClient] = []

    def client(handler: Handler) -> httpx.AsyncClient:
        clients.append(httpx.AsyncClient(transport=httpx.MockTransport(handler)))
        return clients[-1]

    yield client
    for client_ in clients:
        await client_.aclose()
