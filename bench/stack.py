"""The system under test, on free ports and a fresh state directory, plus the floor's worker
and the payload file server.

Temporal, PostgreSQL, the emulator, the worker and the API are started by the chaos harness's
`Cluster` (tests/chaos.py) with the embedded defaults restored where the chaos run shortens them
(safety-net and polling intervals) and with no faults. Provider rate limits are lifted: they are
the provider's quota (8 calls/s for Replicate by default), not the orchestrator's cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.payloads import PAYLOAD_DIR
from bench.procs import children
from reelflow.embedded import wait_for_port
from tests.chaos import Cluster

__all__ = ["BenchStack", "ChildProcess", "StackOptions", "free_port"]

ROOT = Path(__file__).resolve().parents[1]

# Chaos shortens these so that its faults heal quickly; the benchmark runs on the defaults.
_CHAOS_ONLY = ("WEBHOOK_SAFETY_POLL_S", "POLL_INITIAL_BACKOFF_S", "POLL_MAX_INTERVAL_S")


@dataclass(frozen=True)
class StackOptions:
    """How the stack is configured."""

    webhook_safety_poll_s: float | None = None
    """`WEBHOOK_SAFETY_POLL_S`; None keeps reelflow's default (300 s)."""
    keep_state: bool = False
    """Keep the state directory (logs, database, stored files) after the run."""


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _BenchCluster(Cluster):
    """The chaos harness's cluster with the benchmark's environment."""

    def __init__(self, state_dir: Path, *, api_key: str, extra_env: dict[str, str]) -> None:
        super().__init__(state_dir, api_key=api_key)
        self._extra_env = extra_env

    def _child_env(self) -> dict[str, str]:
        env = super()._child_env()
        for key in _CHAOS_ONLY:
            env.pop(key, None)
        env.update(self._extra_env)
        # The emulator's outputs and the payload server's are both downloadable.
        env["DOWNLOAD_ALLOWED_ORIGINS"] = f"{self.emulator_url},{self._extra_env['BENCH_FILES']}"
        return env


class ChildProcess:
    """A Python module run as a child process in a session of its own, logging to a file."""

    def __init__(self, name: str, argv: list[str], *, log_path: Path) -> None:
        self.name = name
        self._argv = argv
        self._log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> None:
        """Start it."""
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *self._argv],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """Its process id."""
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


class BenchStack:
    """Everything one benchmark run needs, started and stopped together."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.state_dir = Path(tempfile.mkdtemp(prefix="reelflow-bench-"))
        self.api_key = uuid.uuid4().hex
        self.files_port = free_port()
        self.files_url = f"http://127.0.0.1:{self.files_port}"
        self.floor_queue = f"bench-floor-{uuid.uuid4().hex[:8]}"
        extra = {
            "EMULATOR_GENERATION_SECONDS": "0",
            "REPLICATE_ACTIVITIES_PER_SECOND": "1000",
            "FAL_ACTIVITIES_PER_SECOND": "1000",
            "VEO_ACTIVITIES_PER_SECOND": "1000",
            "REELFLOW_API_KEYS": f"bench:{self.api_key}",
            "BENCH_FILES": self.files_url,
        }
        if options.webhook_safety_poll_s is not None:
            extra["WEBHOOK_SAFETY_POLL_S"] = str(options.webhook_safety_poll_s)
        self.cluster = _BenchCluster(self.state_dir, api_key=self.api_key, extra_env=extra)
        logs = self.state_dir / "logs"
        self.files = ChildProcess(
            "fileserver",
            ["-m", "bench.fileserver", str(PAYLOAD_DIR), str(self.files_port)],
            log_path=logs / "fileserver.log",
        )
        self.floor: ChildProcess | None = None
        self._log_dir = logs
        self.pids: dict[str, int] = {}

    @property
    def api_url(self) -> str:
        """The API's base URL."""
        return self.cluster.api_url

    @property
    def emulator_url(self) -> str:
        """The emulator's base URL."""
        return self.cluster.emulator_url

    @property
    def temporal_address(self) -> str:
        """The Temporal frontend."""
        return f"127.0.0.1:{self.cluster.temporal_port}"

    @property
    def dsn(self) -> str:
        """The run's database."""
        return self.cluster.dsn

    async def start(self) -> None:
        """Start the file server, the reelflow stack and the floor's worker."""
        self.files.start()
        await asyncio.to_thread(wait_for_port, "127.0.0.1", self.files_port, 30)
        await self.cluster.start()
        self.floor = ChildProcess(
            "floor",
            [
                "-m",
                "bench.floor.worker",
                "--address",
                self.temporal_address,
                "--task-queue",
                self.floor_queue,
            ],
            log_path=self._log_dir / "floor.log",
        )
        self.floor.start(env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.pids = self._find_pids()

    def _find_pids(self) -> dict[str, int]:
        """Process ids by component: the chaos harness's children are found by command line."""
        pids: dict[str, int] = {}
        for child in children(os.getpid()):
            line = " ".join(child.cmdline)
            for name in ("worker", "api", "emulator"):
                if line.endswith(f"-m reelflow {name}"):
                    pids[name] = child.pid
            if "start-dev" in child.cmdline:
                pids["temporal"] = child.pid
        assert self.floor is not None
        pids["floor"] = self.floor.pid
        postmaster = self.state_dir / "pg" / "postmaster.pid"
        if postmaster.is_file():
            pids["postgres"] = int(postmaster.read_text().split()[0])
        pids["bench"] = os.getpid()
        missing = {"worker", "api", "emulator", "temporal"} - set(pids)
        if missing:
            raise RuntimeError(f"could not find the processes of {sorted(missing)}")
        return pids

    def crashed(self) -> list[str]:
        """Components that exited on their own."""
        dead = self.cluster.crashed()
        for process in (self.floor, self.files):
            if process is not None and process.process is not None:
                if process.process.poll() is not None:
                    dead.append(process.name)
        return dead

    async def healthy(self) -> bool:
        """Whether the API answers."""
        async with httpx.AsyncClient(timeout=5) as client:
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get(f"{self.api_url}/healthz")).status_code == 200
        return False

    def stop(self, *, keep_state: bool = False) -> None:
        """Stop everything; remove the state directory unless asked to keep it (here or in
        the options)."""
        if self.floor is not None:
            self.floor.stop()
        self.cluster.stop()
        self.files.stop()
        if not (keep_state or self.options.keep_state):
            shutil.rmtree(self.state_dir, ignore_errors=True)
