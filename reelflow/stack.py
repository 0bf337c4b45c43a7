"""The whole system on one machine: what `reelflow dev` and `reelflow demo` start and stop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

from reelflow.config import Settings
from reelflow.db.migrate import apply_migrations
from reelflow.embedded import database_url, start_temporal_dev_server, wait_for_port

__all__ = ["EMULATOR_CREDENTIALS", "LocalStack", "StackError", "emulator_settings"]

logger = logging.getLogger(__name__)

# The emulator's default credentials; real ones never get here.
EMULATOR_CREDENTIALS = {
    "REPLICATE_API_TOKEN": "r8_emulator",
    "FAL_KEY": "emulator-key-id:emulator-key-secret",
    "GEMINI_API_KEY": "emulator-gemini-key",
}


def emulator_settings(emulator_url: str) -> dict[str, str]:
    """Environment pointing every provider at an emulator on `emulator_url`."""
    return {
        **EMULATOR_CREDENTIALS,
        "REPLICATE_API_BASE": f"{emulator_url}/replicate",
        "FAL_QUEUE_BASE": f"{emulator_url}/fal",
        "FAL_JWKS_URL": f"{emulator_url}/fal/.well-known/jwks.json",
        "GEMINI_API_BASE": f"{emulator_url}/gemini",
        # The emulator serves outputs over http on a loopback address: allowed explicitly.
        "DOWNLOAD_ALLOWED_ORIGINS": emulator_url,
    }


class StackError(Exception):
    """A component could not start."""


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) != 0


class LocalStack:
    """Starts Temporal, PostgreSQL, the emulator, the worker and the API as needed.

    Components the settings already point elsewhere (a `TEMPORAL_ADDRESS`, a `DATABASE_URL`,
    a provider token) are used as they are, not started.
    """

    def __init__(self, settings: Settings, *, log_dir: Path | None = None) -> None:
        self.settings = settings
        self._log_dir = log_dir
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.env: dict[str, str] = {}
        self.uses_emulator = (
            settings.replicate_api_token is None
            and settings.fal_key is None
            and settings.gemini_api_key is None
        )

    @property
    def api_url(self) -> str:
        """Where the API listens."""
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def start(self) -> None:
        """Start every component and wait until the API answers."""
        settings = self.settings
        for name, needed_port in (("API", settings.api_port), ("emulator", settings.emulator_port)):
            if (name == "API" or self.uses_emulator) and not _port_free("127.0.0.1", needed_port):
                raise StackError(
                    f"port {needed_port} for the {name} is in use; is reelflow already up?"
                )
        env = dict(os.environ)
        if "temporal_address" not in settings.model_fields_set:
            host, _, port = settings.temporal_address.partition(":")
            if not _port_free(host, int(port)):
                raise StackError(f"port {port} for Temporal is in use; set TEMPORAL_ADDRESS")
            self._processes.append(
                ("temporal", start_temporal_dev_server(state_dir=settings.state_dir.resolve()))
            )
        env["DATABASE_URL"] = database_url(settings)
        asyncio.run(apply_migrations(env["DATABASE_URL"]))
        if self.uses_emulator:
            emulator_url = f"http://{settings.emulator_host}:{settings.emulator_port}"
            env.update(emulator_settings(emulator_url))
            env.setdefault("API_BASE_URL", self.api_url)
            self._spawn("emulator", env)
            wait_for_port(settings.emulator_host, settings.emulator_port, timeout_s=30)
        self._spawn("worker", env)
        self._spawn("api", env)
        wait_for_port(settings.api_host, settings.api_port, timeout_s=60)
        self.env = env

    def _spawn(self, command: str, env: dict[str, str]) -> None:
        output: IO[bytes] | None = None
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            output = (self._log_dir / f"{command}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "reelflow", command],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
        )
        self._processes.append((command, process))

    def check_alive(self) -> None:
        """Raise if a component has exited."""
        for name, process in self._processes:
            if process.poll() is not None:
                raise StackError(f"the {name} exited with status {process.returncode}")

    def stop(self) -> None:
        """Stop the components in reverse order of start, politely first."""
        for name, process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                logger.warning("The %s did not stop in time; killing it", name)
                process.kill()
                process.wait()
        self._processes.clear()
