"""Chaos harness: nothing is lost or billed twice under provider faults and process crashes.

`python -m tests.chaos --executions 100 --worker-kills 3 --api-kills 2 [--seed N] [--timeout 900]`
starts the real system on free ports and a fresh state directory (the Temporal dev server,
PostgreSQL, the emulator, one `python -m reelflow worker` and one `python -m reelflow api`),
turns on every emulator fault (webhooks dropped, duplicated, delayed and reordered, 429s and 5xxs
on creation and status reads, jittered generation, 5 % of jobs failed by the provider), submits a
mix of single-job and DAG executions over every provider and waiting strategy, SIGKILLs the worker
and the API at seeded random moments (restarting each after a short pause), waits until every
execution is over, and then checks from PostgreSQL, the emulator's statistics and the storage
directory that:

- every accepted execution reached a final status (none lost, none stuck), and none was recorded
  twice for one `Idempotency-Key`;
- no job failed except where the provider decided it;
- the providers created exactly one job per job record (or the extra ones were cancelled);
- each recorded output is exactly one stored object, with the recorded size and SHA-256.

It prints one table of these checks and exits non-zero if any fails. The seed fixes the plans and
the kill schedule; the emulator draws its faults from its own randomness, so two runs with the same
seed meet different faults. On failure the state directory (component logs under `logs/`, the
Temporal database, the stored objects) is kept and its path printed.

`tests/test_chaos.py` runs a small instance of it inside the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import hashlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from rich.console import Console
from rich.table import Table

from reelflow.config import Settings
from reelflow.db.migrate import apply_migrations
from reelflow.embedded import start_temporal_dev_server
from reelflow.stack import emulator_settings

__all__ = [
    "ChaosOptions",
    "ChaosReport",
    "Check",
    "EMULATOR_FAULTS",
    "main",
    "print_report",
    "run_chaos",
]

ROOT = Path(__file__).resolve().parents[1]

SEEDANCE = "bytedance/seedance-1-lite"
HAILUO = "fal-ai/minimax/hailuo-02/standard/text-to-video"
VEO = "veo-3.0-fast-generate-001"

# (model, waiting strategy) pairs each provider offers; Veo polls only.
CLIP_KINDS: tuple[tuple[str, str], ...] = (
    (SEEDANCE, "webhook"),
    (SEEDANCE, "polling"),
    (HAILUO, "webhook"),
    (HAILUO, "polling"),
    (VEO, "polling"),
)

EMULATOR_FAULTS: dict[str, Any] = {
    "generation_seconds": 2.0,
    "generation_jitter_seconds": 1.0,
    "failure_rate": 0.05,
    "webhook_drop_rate": 0.3,
    "webhook_duplicate_rate": 0.3,
    "webhook_delay_seconds": 2.0,
    "webhook_reorder_rate": 0.3,
    "create_429_rate": 0.1,
    "create_5xx_rate": 0.1,
    "status_429_rate": 0.1,
    "status_5xx_rate": 0.1,
}
"""The knobs set on every provider of the emulator (`all`) for a chaos run."""

TERMINAL_EXECUTION = frozenset({"completed", "failed", "canceled"})
UNFINISHED_JOB = ("pending", "queued", "processing")

# Fraction of executions that are a small DAG (two clips, then their concatenation).
DAG_SHARE = 0.3
# Time between two submissions: spreads them out so that API kills can land among them.
SUBMIT_INTERVAL_S = 0.2
# Kills happen while executions run: up to this long after the last submission.
KILL_TAIL_S = 10.0
# A killed process stays down for a uniformly random time in this range before its restart.
RESTART_PAUSE_S = (0.5, 3.0)
# How long one submission keeps retrying (the API may be down for a while).
SUBMIT_PATIENCE_S = 120.0


@dataclass(frozen=True)
class ChaosOptions:
    """What a chaos run does."""

    executions: int = 100
    """Executions to submit."""
    worker_kills: int = 3
    """SIGKILLs of the worker process, each followed by a restart."""
    api_kills: int = 2
    """SIGKILLs of the API process, each followed by a restart on the same port."""
    seed: int | None = None
    """Seed of the plans and kill schedule; None draws one (printed, to replay the run)."""
    timeout_s: float = 900.0
    """Longest wait, from the first submission, for every execution to end."""
    keep_state: bool = False
    """Keep the state directory even when every check passes."""


@dataclass(frozen=True)
class Check:
    """One row of the report."""

    name: str
    """What is checked."""
    value: str
    """What was measured."""
    expected: str
    """What it must be (empty for a row that only informs)."""
    ok: bool | None
    """True: pass; False: fail; None: information only."""
    detail: str = ""
    """Evidence: the ids or numbers behind a failure."""


@dataclass
class ChaosReport:
    """The outcome of a run: its checks, the numbers behind them, and how long things took."""

    seed: int
    """Seed of the plans and kill schedule."""
    state_dir: Path
    """Where logs, the Temporal database and stored objects were (removed unless kept)."""
    checks: list[Check] = field(default_factory=list)
    """The table's rows."""
    counts: dict[str, int] = field(default_factory=dict)
    """Numbers behind the checks, by name (`submitted`, `lost`, `duplicate_provider_jobs`, ...)."""
    durations: dict[str, float] = field(default_factory=dict)
    """Seconds spent per phase, and execution latencies."""
    kills: list[str] = field(default_factory=list)
    """What was killed and when, in order."""
    state_kept: bool = False
    """Whether `state_dir` still exists."""

    @property
    def passed(self) -> bool:
        """Whether every check that can fail passed."""
        return bool(self.checks) and all(check.ok is not False for check in self.checks)

    def failures(self) -> list[Check]:
        """The checks that failed."""
        return [check for check in self.checks if check.ok is False]


# ---------------------------------------------------------------------------------------------
# Processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ManagedProcess:
    """A `python -m reelflow <command>` child in a process group of its own.

    Its own session keeps a Ctrl-C in the terminal away from it (the harness stops it in
    order), and lets a kill reach anything it spawned.
    """

    def __init__(self, command: str, *, env: dict[str, str], log_path: Path) -> None:
        self.command = command
        self._env = env
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._killed = False
        self.starts = 0

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def crashed(self) -> bool:
        """Whether it exited without being killed by the harness."""
        return self._process is not None and self._process.poll() is not None and not self._killed

    def start(self) -> None:
        """Start (or restart) the process, appending to its log."""
        self.starts += 1
        self._killed = False
        with self._log_path.open("ab") as log:
            log.write(f"\n===== chaos: start #{self.starts} of {self.command} =====\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                [sys.executable, "-m", "reelflow", self.command],
                env=self._env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL the whole group: no graceful shutdown, as when a machine dies."""
        if self._process is None:
            return
        self._killed = True
        with self._log_path.open("ab") as log:
            log.write(f"\n===== chaos: SIGKILL {self.command} =====\n".encode())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL it if it lingers."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        # Anything left in the group (the leader may be gone already) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def _with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


class Cluster:
    """Every component of one chaos run, and their teardown (also run at exit)."""

    def __init__(self, state_dir: Path, *, api_key: str) -> None:
        self.state_dir = state_dir
        self.log_dir = state_dir / "logs"
        self.files_dir = state_dir / "files"
        self.api_key = api_key
        self.api_port = _free_port()
        self.emulator_port = _free_port()
        self.temporal_port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.emulator_url = f"http://127.0.0.1:{self.emulator_port}"
        self.dsn = ""
        self.env: dict[str, str] = {}
        self.emulator: ManagedProcess | None = None
        self.worker: ManagedProcess | None = None
        self.api: ManagedProcess | None = None
        self._temporal: subprocess.Popen[bytes] | None = None
        self._pgserver: Any = None
        self._server_dsn = ""
        self._database = ""
        self._stopped = False
        atexit.register(self.stop)

    async def start(self) -> None:
        """Start Temporal, the database, the emulator, the worker and the API; wait for them."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.files_dir.mkdir(parents=True, exist_ok=True)
        temporal_dir = self.state_dir / "temporal"
        self._temporal = await asyncio.to_thread(
            start_temporal_dev_server,
            state_dir=temporal_dir,
            port=self.temporal_port,
            ui_port=_free_port(),
            log_path=self.log_dir / "temporal.log",
        )
        self.dsn = await self._create_database()
        await apply_migrations(self.dsn)
        self.env = self._child_env()
        self.emulator = ManagedProcess(
            "emulator", env=self.env, log_path=self.log_dir / "emulator.log"
        )
        self.worker = ManagedProcess("worker", env=self.env, log_path=self.log_dir / "worker.log")
        self.api = ManagedProcess("api", env=self.env, log_path=self.log_dir / "api.log")
        self.emulator.start()
        await wait_healthy(self.emulator_url, self.emulator, timeout_s=60)
        self.worker.start()
        self.api.start()
        await wait_healthy(self.api_url, self.api, timeout_s=90)

    async def _create_database(self) -> str:
        server_dsn = Settings(_env_file=None).database_url  # type: ignore[call-arg]
        if server_dsn is None:
            # Imported here: only needed without DATABASE_URL.
            with warnings.catch_warnings():
                # platformdirs warns that XDG_RUNTIME_DIR is unset on servers; harmless here.
                warnings.simplefilter("ignore")
                from pgserver.postgres_server import get_server

            pg_dir = self.state_dir / "pg"
            pg_dir.mkdir(parents=True, exist_ok=True)
            self._pgserver = await asyncio.to_thread(get_server, str(pg_dir), cleanup_mode="stop")
            server_dsn = str(self._pgserver.get_uri())
        self._server_dsn = server_dsn
        self._database = f"reelflow_chaos_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{self._database}"')
        finally:
            await admin.close()
        return _with_database(server_dsn, self._database)

    def _child_env(self) -> dict[str, str]:
        # Nothing of the caller's reelflow settings leaks in: every one is set here or unset.
        env = {
            key: value
            for key, value in os.environ.items()
            if key.lower() not in Settings.model_fields
        }
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": "INFO",
                "STATE_DIR": str(self.state_dir),
                "STORAGE_DIR": str(self.files_dir),
                "DATABASE_URL": self.dsn,
                "TEMPORAL_ADDRESS": f"127.0.0.1:{self.temporal_port}",
                "TEMPORAL_NAMESPACE": "default",
                "TASK_QUEUE": f"reelflow-chaos-{uuid.uuid4().hex[:8]}",
                "API_HOST": "127.0.0.1",
                "API_PORT": str(self.api_port),
                "API_BASE_URL": self.api_url,
                "EMULATOR_HOST": "127.0.0.1",
                "EMULATOR_PORT": str(self.emulator_port),
                "EMULATOR_GENERATION_SECONDS": str(EMULATOR_FAULTS["generation_seconds"]),
                "WEBHOOK_SAFETY_POLL_S": "3",
                "POLL_INITIAL_BACKOFF_S": "0.5",
                "POLL_MAX_INTERVAL_S": "2",
                "REPLICATE_ACTIVITIES_PER_SECOND": "100",
                "FAL_ACTIVITIES_PER_SECOND": "100",
                "VEO_ACTIVITIES_PER_SECOND": "100",
                "REELFLOW_API_KEYS": f"chaos:{self.api_key}",
                **emulator_settings(self.emulator_url),
            }
        )
        return env

    @property
    def temporal_running(self) -> bool:
        """Whether the Temporal dev server is alive."""
        return self._temporal is not None and self._temporal.poll() is None

    def crashed(self) -> list[str]:
        """Components that exited on their own (a harness kill does not count)."""
        dead = [] if self.temporal_running else ["temporal"]
        for process in (self.emulator, self.worker, self.api):
            if process is not None and process.crashed:
                dead.append(process.command)
        return dead

    def stop(self) -> None:
        """Stop every process (API first, Temporal last) and drop the database. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for process in (self.api, self.worker, self.emulator):
            if process is not None:
                process.stop()
        if self._temporal is not None and self._temporal.poll() is None:
            self._temporal.terminate()
            try:
                self._temporal.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._temporal.kill()
                self._temporal.wait()
        # Blocking, with an event loop of its own: call from a thread or outside any loop.
        if self._database and not _loop_running():
            with contextlib.suppress(Exception):
                asyncio.run(self._drop_database())
        if self._pgserver is not None:
            with contextlib.suppress(Exception):
                self._pgserver.cleanup()
        atexit.unregister(self.stop)

    async def _drop_database(self) -> None:
        admin = await asyncpg.connect(self._server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self._database}" WITH (FORCE)')
        finally:
            await admin.close()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def wait_healthy(url: str, process: ManagedProcess, *, timeout_s: float) -> None:
    """Wait until `GET {url}/healthz` answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            if not process.running:
                raise RuntimeError(f"the {process.command} exited while starting; see its log")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {process.command} was not healthy after {timeout_s} s")
            await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# Plans and submissions


@dataclass
class Submission:
    """One execution as the harness submitted it."""

    index: int
    """Its position in the run."""
    idempotency_key: str
    """The key every attempt carried."""
    body: dict[str, Any]
    """The request body."""
    kind: str
    """A short description: the clips' providers and strategies, and whether it is a DAG."""
    execution_id: str | None = None
    """The id of the first 2xx answer."""
    attempts: int = 0
    """POSTs sent (more than one when the API was down or answered 5xx)."""
    rejection: str | None = None
    """Why it never got a 2xx, if it did not."""
    final_status: str | None = None
    """The last status the API reported."""


def _clip(rng: random.Random, job_id: str) -> tuple[dict[str, Any], str]:
    model, strategy = rng.choice(CLIP_KINDS)
    job = {
        "id": job_id,
        "operation": "pipeline:generate",
        "params": {
            "modelId": model,
            "prompt": f"chaos clip {job_id} #{rng.randrange(10**6)}",
            "waitingStrategy": strategy,
        },
    }
    return job, f"{model.split('/')[0]}:{strategy}"


def build_submissions(rng: random.Random, count: int, run_id: str) -> list[Submission]:
    """`count` executions: single clips over every provider and strategy, and small DAGs."""
    submissions = []
    for index in range(count):
        if rng.random() < DAG_SHARE:
            first, first_kind = _clip(rng, "a")
            second, second_kind = _clip(rng, "b")
            joined = {
                "id": "joined",
                "operation": "pipeline:concat",
                "params": {"inputs": ["{{jobs.a.output}}", "{{jobs.b.output}}"]},
            }
            jobs = [first, second, joined]
            kind = f"dag({first_kind}+{second_kind})"
        else:
            clip, kind = _clip(rng, "clip")
            jobs = [clip]
        submissions.append(
            Submission(
                index=index,
                idempotency_key=f"chaos-{run_id}-{index}",
                body={"executionPlan": {"jobs": jobs}, "metadata": {"chaos": run_id}},
                kind=kind,
            )
        )
    return submissions


async def submit(client: httpx.AsyncClient, submission: Submission) -> None:
    """POST until a 2xx, retrying with the same key on connection errors, 429 and 5xx."""
    deadline = time.monotonic() + SUBMIT_PATIENCE_S
    last = ""
    while True:
        submission.attempts += 1
        try:
            response = await client.post(
                "/api/execute",
                json=submission.body,
                headers={"Idempotency-Key": submission.idempotency_key},
            )
        except httpx.TransportError as error:
            last = f"{type(error).__name__}: {error}"
        else:
            if response.is_success:
                submission.execution_id = str(response.json()["executionId"])
                return
            last = f"{response.status_code} {response.text[:300]}"
            if response.status_code != 429 and response.status_code < 500:
                submission.rejection = last
                return
        if time.monotonic() > deadline:
            submission.rejection = f"gave up after {submission.attempts} attempts: {last}"
            return
        await asyncio.sleep(min(0.25 * submission.attempts, 2.0))


async def submit_all(
    client: httpx.AsyncClient, submissions: list[Submission], *, interval_s: float
) -> None:
    """Submit each at its slot in time, so submissions keep coming while the API is killed."""
    started = time.monotonic()

    async def at_slot(submission: Submission) -> None:
        await asyncio.sleep(max(0.0, started + submission.index * interval_s - time.monotonic()))
        await submit(client, submission)

    await asyncio.gather(*(at_slot(s) for s in submissions))


async def watch(
    client: httpx.AsyncClient,
    submissions: list[Submission],
    *,
    deadline: float,
    crashed: Callable[[], list[str]],
) -> list[str]:
    """Poll each execution's status until all are terminal or the deadline passes.

    The API may be down (killed) at any moment: a failed poll is simply tried again later.
    Gives up early when a component exits on its own (nothing would progress any more), and
    returns the names of such components.
    """
    pending = {s.execution_id: s for s in submissions if s.execution_id is not None}
    limit = asyncio.Semaphore(8)

    async def poll(execution_id: str) -> None:
        async with limit:
            try:
                response = await client.get(f"/api/status/{execution_id}")
            except httpx.HTTPError:
                return
        if response.status_code == 200:
            status = str(response.json()["status"])
            pending[execution_id].final_status = status
            if status in TERMINAL_EXECUTION:
                del pending[execution_id]

    while pending and time.monotonic() < deadline:
        dead = crashed()
        if dead:
            return dead
        await asyncio.gather(*(poll(execution_id) for execution_id in list(pending)))
        if pending:
            await asyncio.sleep(1.0)
    return crashed()


async def _unless_crashed(work: Awaitable[None], crashed: Callable[[], list[str]]) -> list[str]:
    """Run `work` to its end, unless a component exits on its own first (then cancel it).

    Returns the components that exited on their own.
    """
    task = asyncio.ensure_future(work)
    while not task.done():
        dead = crashed()
        if dead:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return dead
        await asyncio.wait({task}, timeout=0.5)
    task.result()
    return crashed()


# ---------------------------------------------------------------------------------------------
# Chaos


def kill_schedule(
    rng: random.Random, count: int, *, window_s: float, first_within_s: float | None = None
) -> list[float]:
    """`count` sorted moments in (0.5 s, window_s); the first before `first_within_s` if set."""
    times = [rng.uniform(0.5, max(window_s, 1.0)) for _ in range(count)]
    if times and first_within_s is not None:
        times[0] = rng.uniform(0.3, max(first_within_s, 0.5))
    return sorted(times)


async def chaos_monkey(
    process: ManagedProcess,
    schedule: list[float],
    pauses: list[float],
    *,
    started: float,
    health_url: str | None,
    events: list[str],
    console: Console,
) -> None:
    """Kill `process` at each moment of `schedule` (seconds after `started`) and restart it."""
    for at, pause in zip(schedule, pauses, strict=True):
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        moment = time.monotonic() - started
        process.kill()
        await asyncio.sleep(pause)
        process.start()
        if health_url is not None:
            await wait_healthy(health_url, process, timeout_s=90)
        back = time.monotonic() - started
        event = f"{moment:6.1f} s  SIGKILL {process.command}, restarted after {pause:.1f} s"
        event += f", healthy at {back:.1f} s" if health_url else ""
        events.append(event)
        console.print(f"[yellow]chaos[/] {event}")


# ---------------------------------------------------------------------------------------------
# Verification


@dataclass
class Evidence:
    """Everything the checks look at, gathered once the run is over."""

    executions: dict[str, asyncpg.Record]
    jobs: list[asyncpg.Record]
    stats: dict[str, Any]
    failure_messages: dict[str, str]
    files_dir: Path


async def gather_evidence(cluster: Cluster) -> Evidence:
    """Read the database, the emulator's statistics and config."""
    connection = await asyncpg.connect(cluster.dsn)
    try:
        executions = {
            row["id"]: row
            for row in await connection.fetch(
                "SELECT id, status, error, idempotency_key, created_at, completed_at"
                " FROM executions"
            )
        }
        jobs = await connection.fetch(
            "SELECT id, execution_id, job_id, operation, provider, status, error,"
            " provider_job_id, provider_job_status, outputs::text AS outputs FROM execution_jobs"
        )
    finally:
        await connection.close()
    async with httpx.AsyncClient(base_url=cluster.emulator_url, timeout=10) as client:
        stats = (await client.get("/_emulator/stats")).json()
        config = (await client.get("/_emulator/config")).json()
    messages = {provider: str(config[provider]["failure_message"]) for provider in PROVIDERS}
    return Evidence(executions, list(jobs), stats, messages, cluster.files_dir)


PROVIDERS: tuple[Literal["replicate", "fal", "veo"], ...] = ("replicate", "fal", "veo")


def save_evidence(state_dir: Path, submissions: list[Submission], evidence: Evidence) -> None:
    """Write what the checks saw into the state dir: the database is dropped at the end."""

    def rows(records: list[asyncpg.Record]) -> list[dict[str, Any]]:
        return [dict(record) for record in records]

    dump = {
        "submissions": [
            {k: v for k, v in vars(s).items() if k != "body"} | {"plan": s.body}
            for s in submissions
        ],
        "executions": rows(list(evidence.executions.values())),
        "jobs": rows(evidence.jobs),
        "emulator_stats": evidence.stats,
    }
    (state_dir / "evidence.json").write_text(json.dumps(dump, indent=1, default=str))


# fal's status and webhook carry no message for a failed request, only `Invalid status code: N`
# and an error type, which the adapter appends in parentheses: these types are fal's decisions.
FAL_FAILURE_TYPES = ("(content_policy_violation)", "(runner_server_error)")
# Adapters quote the provider's message after their own prefix and may truncate it.
MESSAGE_PREFIX_CHARS = 40


def _provider_decided(job: asyncpg.Record, messages: dict[str, str]) -> bool:
    """A failure the provider chose: its failure message (or, for fal, its failure type) in a
    job the provider reported on."""
    error = job["error"] or ""
    message = messages.get(job["provider"] or "", "")[:MESSAGE_PREFIX_CHARS]
    if message and job["provider_job_id"] is not None and message in error:
        return True
    return (
        job["provider"] == "fal"
        and job["provider_job_status"] is not None
        and any(error.endswith(kind) for kind in FAL_FAILURE_TYPES)
    )


def _short(ids: list[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return f"{shown} (+{len(ids) - limit} more)" if len(ids) > limit else shown


def verify(submissions: list[Submission], evidence: Evidence) -> tuple[list[Check], dict[str, int]]:
    """The checks of the report, and the numbers behind them."""
    checks: list[Check] = []
    counts: dict[str, int] = {}
    accepted = {s.execution_id: s for s in submissions if s.execution_id is not None}
    rejected = [s for s in submissions if s.execution_id is None]
    jobs_by_execution: dict[str, list[asyncpg.Record]] = {}
    for job in evidence.jobs:
        jobs_by_execution.setdefault(job["execution_id"], []).append(job)

    counts["submitted"] = len(accepted)
    checks.append(
        Check(
            "executions submitted (2xx)",
            f"{len(accepted)} / {len(submissions)}",
            f"{len(submissions)}",
            not rejected,
            "; ".join(f"#{s.index}: {s.rejection}" for s in rejected[:3]),
        )
    )
    retried = sum(1 for s in submissions if s.attempts > 1)
    counts["submissions_retried"] = retried
    checks.append(
        Check(
            "  of which retried with the same key",
            str(retried),
            "",
            None,
            f"{sum(s.attempts for s in submissions)} POSTs in all",
        )
    )

    completed, provider_failed, other_failed, lost = [], [], [], []
    for execution_id in accepted:
        row = evidence.executions.get(execution_id)
        if row is None or row["status"] not in TERMINAL_EXECUTION:
            lost.append(execution_id)
            continue
        if row["status"] == "completed":
            completed.append(execution_id)
            continue
        failed_jobs = [
            job
            for job in jobs_by_execution.get(execution_id, [])
            if job["status"] not in ("completed", "skipped")
        ]
        if failed_jobs and all(
            job["status"] == "failed" and _provider_decided(job, evidence.failure_messages)
            for job in failed_jobs
        ):
            provider_failed.append(execution_id)
        else:
            other_failed.append(execution_id)
    counts["completed"] = len(completed)
    counts["failed_by_provider"] = len(provider_failed)
    counts["failed_otherwise"] = len(other_failed)
    counts["lost"] = len(lost)
    checks.append(Check("executions completed", str(len(completed)), "", None))
    checks.append(Check("executions failed: provider decided", str(len(provider_failed)), "", None))
    other_detail = "; ".join(
        f"{execution_id}: {evidence.executions[execution_id]['error']}"
        for execution_id in other_failed[:3]
    )
    checks.append(
        Check(
            "executions failed otherwise",
            str(len(other_failed)),
            "0",
            not other_failed,
            other_detail,
        )
    )
    lost_detail = "; ".join(
        f"{execution_id}: "
        + (
            evidence.executions[execution_id]["status"]
            if execution_id in evidence.executions
            else "missing"
        )
        for execution_id in lost[:5]
    )
    checks.append(
        Check(
            "executions lost (not terminal or missing)",
            str(len(lost)),
            "0",
            not lost,
            lost_detail,
        )
    )
    unexpected = sorted(set(evidence.executions) - set(accepted))
    counts["unexpected_executions"] = len(unexpected)
    checks.append(
        Check(
            "executions recorded twice (idempotency)",
            str(len(unexpected)),
            "0",
            not unexpected,
            _short(unexpected),
        )
    )

    # Billing: one provider job per job record that reached a provider.
    created_total = int(evidence.stats["created"])
    canceled_total = int(evidence.stats["canceled"])
    recorded = Counter(job["provider"] for job in evidence.jobs if job["provider_job_id"])
    per_provider = []
    for provider in PROVIDERS:
        created = int(evidence.stats[provider]["created"])
        per_provider.append(f"{provider} {created}/{recorded.get(provider, 0)}")
    duplicates = created_total - sum(recorded.values())
    # Webhook URLs carry a per-job token: show only the job record id they end with.
    twice = sorted(
        urlsplit(url).path.rsplit("/", 1)[-1]
        for url, times in evidence.stats["created_per_webhook"].items()
        if times > 1
    )
    counts["provider_jobs_created"] = created_total
    counts["provider_jobs_recorded"] = sum(recorded.values())
    counts["duplicate_provider_jobs"] = duplicates
    counts["provider_jobs_canceled"] = canceled_total
    billing_ok = duplicates == 0 or (duplicates > 0 and canceled_total >= duplicates)
    checks.append(
        Check(
            "provider jobs created / job records at a provider",
            f"{created_total} / {sum(recorded.values())}",
            "equal, or extras canceled",
            billing_ok and duplicates >= 0,
            f"created/recorded: {', '.join(per_provider)}; extra {duplicates}, "
            f"canceled {canceled_total}"
            + (f"; created twice for job {_short(twice, 2)}" if twice else ""),
        )
    )

    # Storage: each recorded output is one object with the recorded size and digest.
    outputs_total, exact, problems = 0, 0, []
    expected_files: set[Path] = set()
    for job in evidence.jobs:
        outputs = json.loads(job["outputs"] or "[]")
        job_dir = evidence.files_dir / "executions" / job["execution_id"] / job["id"]
        for output in outputs:
            outputs_total += 1
            path = evidence.files_dir / output["key"]
            expected_files.add(path)
            if path.parent != job_dir or not path.is_file():
                problems.append(f"{job['id']}: no object {output['key']}")
                continue
            content = path.read_bytes()
            if len(content) != output["bytes"] or (
                hashlib.sha256(content).hexdigest() != output["sha256"]
            ):
                problems.append(f"{job['id']}: {output['key']} differs from its record")
                continue
            exact += 1
    executions_dir = evidence.files_dir / "executions"
    stored = (
        [p for p in executions_dir.rglob("*") if p.is_file()] if executions_dir.is_dir() else []
    )
    temp_files = [p for p in stored if p.name.startswith(".")]
    strays = [p for p in stored if not p.name.startswith(".") and p not in expected_files]
    problems += [f"stray object {p.relative_to(evidence.files_dir)}" for p in strays]
    counts["outputs"] = outputs_total
    counts["outputs_stored_once"] = exact
    counts["stray_objects"] = len(strays)
    checks.append(
        Check(
            "outputs stored as exactly 1 object each",
            f"{exact} / {outputs_total} (+{len(strays)} stray)",
            f"{outputs_total} (+0 stray)",
            exact == outputs_total and not strays,
            "; ".join(problems[:3]),
        )
    )
    counts["temp_files"] = len(temp_files)
    checks.append(
        Check(
            "  temp files left by killed writes",
            str(len(temp_files)),
            "",
            None,
            _short([str(p.relative_to(evidence.files_dir)) for p in temp_files], 2),
        )
    )

    stuck = [job for job in evidence.jobs if job["status"] in UNFINISHED_JOB]
    counts["stuck_jobs"] = len(stuck)
    checks.append(
        Check(
            "jobs stuck pending/queued/processing",
            str(len(stuck)),
            "0",
            not stuck,
            _short([f"{job['id']} ({job['status']})" for job in stuck]),
        )
    )

    faults = {
        name: sum(int(evidence.stats[p][name]) for p in PROVIDERS)
        for name in ("webhooks_dropped", "webhooks_duplicated", "injected_429s", "injected_5xxs")
    }
    counts.update(faults)
    checks.append(
        Check(
            "faults injected by the emulator",
            ", ".join(f"{value} {name.split('_', 1)[1]}" for name, value in faults.items()),
            "",
            None,
        )
    )
    return checks, counts


# ---------------------------------------------------------------------------------------------
# The run


async def run_chaos(options: ChaosOptions, console: Console | None = None) -> ChaosReport:
    """Start the system, submit, kill, wait, verify, tear down; return the report.

    The state directory is removed unless a check failed or `options.keep_state` is set.
    """
    console = console or Console(stderr=True)
    seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    rng = random.Random(seed)
    run_id = f"{seed}-{uuid.uuid4().hex[:6]}"
    state_dir = Path(tempfile.mkdtemp(prefix="reelflow-chaos-"))
    report = ChaosReport(seed=seed, state_dir=state_dir)
    cluster = Cluster(state_dir, api_key=secrets.token_urlsafe(24))
    begun = time.monotonic()
    console.print(f"[bold]chaos run[/] seed={seed}, state in {state_dir}")
    try:
        await cluster.start()
        report.durations["startup"] = time.monotonic() - begun
        console.print(
            f"up in {report.durations['startup']:.1f} s: API {cluster.api_url}, "
            f"emulator {cluster.emulator_url}, Temporal 127.0.0.1:{cluster.temporal_port}"
        )
        async with httpx.AsyncClient(base_url=cluster.emulator_url, timeout=10) as emulator:
            response = await emulator.patch("/_emulator/config", json={"all": EMULATOR_FAULTS})
            response.raise_for_status()

        submissions = build_submissions(rng, options.executions, run_id)
        submit_span = options.executions * SUBMIT_INTERVAL_S
        window = submit_span + KILL_TAIL_S
        worker_times = kill_schedule(rng, options.worker_kills, window_s=window)
        api_times = kill_schedule(
            rng, options.api_kills, window_s=window, first_within_s=submit_span
        )
        worker_pauses = [rng.uniform(*RESTART_PAUSE_S) for _ in worker_times]
        api_pauses = [rng.uniform(*RESTART_PAUSE_S) for _ in api_times]
        assert cluster.worker is not None and cluster.api is not None

        headers = {"Authorization": f"Bearer {cluster.api_key}"}
        async with httpx.AsyncClient(base_url=cluster.api_url, headers=headers, timeout=30) as api:
            started = time.monotonic()
            deadline = started + options.timeout_s
            monkeys = [
                asyncio.create_task(
                    chaos_monkey(
                        cluster.worker,
                        worker_times,
                        worker_pauses,
                        started=started,
                        health_url=None,
                        events=report.kills,
                        console=console,
                    )
                ),
                asyncio.create_task(
                    chaos_monkey(
                        cluster.api,
                        api_times,
                        api_pauses,
                        started=started,
                        health_url=cluster.api_url,
                        events=report.kills,
                        console=console,
                    )
                ),
            ]
            crashed: list[str] = []
            try:
                console.print(
                    f"submitting {len(submissions)} executions over {submit_span:.0f} s; "
                    f"{len(worker_times)} worker and {len(api_times)} API kill(s) within "
                    f"{window:.0f} s"
                )
                crashed = await _unless_crashed(
                    submit_all(api, submissions, interval_s=SUBMIT_INTERVAL_S), cluster.crashed
                )
                report.durations["submission"] = time.monotonic() - started
                accepted = sum(1 for s in submissions if s.execution_id)
                console.print(
                    f"{accepted} accepted in {report.durations['submission']:.1f} s; waiting"
                )
                if not crashed:
                    crashed = await watch(
                        api, submissions, deadline=deadline, crashed=cluster.crashed
                    )
                if not crashed:
                    # The schedule ends inside the window; its last restart must be over
                    # before the books are checked. A restart that fails shows as a crash.
                    await asyncio.wait(monkeys, timeout=max(1.0, deadline - time.monotonic()))
                    # Let an execution finished during the last restart be seen too.
                    crashed = await watch(
                        api, submissions, deadline=deadline, crashed=cluster.crashed
                    )
                if crashed:
                    console.print(f"[red]exited on their own:[/] {', '.join(crashed)}")
            finally:
                for monkey in monkeys:
                    monkey.cancel()
                outcomes = await asyncio.gather(*monkeys, return_exceptions=True)
            restart_errors = [
                f"{type(outcome).__name__}: {outcome}"
                for outcome in outcomes
                if isinstance(outcome, Exception)
            ]
            report.durations["until all terminal"] = time.monotonic() - started

        await asyncio.sleep(1.0)  # late cancels of duplicates reach the emulator's stats
        evidence = await gather_evidence(cluster)
        save_evidence(state_dir, submissions, evidence)
        report.checks, report.counts = verify(submissions, evidence)
        report.counts["worker_kills"] = cluster.worker.starts - 1
        report.counts["api_kills"] = cluster.api.starts - 1
        report.checks.append(
            Check(
                "processes SIGKILLed and restarted",
                f"worker {report.counts['worker_kills']}, API {report.counts['api_kills']}",
                f"worker {options.worker_kills}, API {options.api_kills}",
                report.counts["worker_kills"] == options.worker_kills
                and report.counts["api_kills"] == options.api_kills
                and not restart_errors,
                "; ".join(restart_errors),
            )
        )
        dead = sorted(set(crashed) | set(cluster.crashed()))
        report.checks.append(
            Check(
                "components that exited on their own",
                str(len(dead)),
                "0",
                not dead,
                f"{', '.join(dead)}: see logs/" if dead else "",
            )
        )
        latencies = [
            (row["completed_at"] - row["created_at"]).total_seconds()
            for row in evidence.executions.values()
            if isinstance(row["completed_at"], datetime)
        ]
        if latencies:
            report.durations["execution latency p50"] = statistics.median(latencies)
            report.durations["execution latency p95"] = _percentile(latencies, 0.95)
            report.durations["execution latency max"] = max(latencies)
    except Exception as error:
        # Reported as a failed check, so the table (and the kept logs) still come out.
        console.print_exception(show_locals=False)
        report.checks.append(
            Check("harness ran to the end", type(error).__name__, "yes", False, str(error)[:300])
        )
    finally:
        teardown = time.monotonic()
        await asyncio.to_thread(cluster.stop)
        report.durations["teardown"] = time.monotonic() - teardown
        report.durations["total"] = time.monotonic() - begun
        if report.passed and not options.keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)
        else:
            report.state_kept = True
    return report


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def print_report(report: ChaosReport, console: Console) -> None:
    """The checks as one table, then the kills and the durations."""
    table = Table(title=f"reelflow chaos run (seed {report.seed})")
    for column in ("check", "value", "expected", "result", "detail"):
        table.add_column(column, overflow="fold")
    for check in report.checks:
        result = {True: "[green]PASS[/]", False: "[bold red]FAIL[/]", None: ""}[check.ok]
        table.add_row(check.name, check.value, check.expected, result, check.detail)
    console.print(table)
    for event in sorted(report.kills):
        console.print(f"  {event}")
    console.print(
        "durations: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.durations.items())
    )
    if report.state_kept:
        console.print(f"state and logs kept in {report.state_dir} (logs/ holds each component's)")
    verdict = "[bold green]PASS[/]" if report.passed else "[bold red]FAIL[/]"
    console.print(f"chaos: {verdict}")


def _parse(argv: list[str] | None) -> ChaosOptions:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description="Run reelflow under provider faults and process kills; check nothing is "
        "lost, stuck, stored twice or billed twice.",
    )
    parser.add_argument("--executions", type=int, default=100)
    parser.add_argument("--worker-kills", type=int, default=3)
    parser.add_argument("--api-kills", type=int, default=2)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds")
    parser.add_argument("--keep-state", action="store_true", help="keep the state dir on PASS")
    args = parser.parse_args(argv)
    return ChaosOptions(
        executions=args.executions,
        worker_kills=args.worker_kills,
        api_kills=args.api_kills,
        seed=args.seed,
        timeout_s=args.timeout,
        keep_state=args.keep_state,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the harness from the command line; 0 when every check passed."""
    options = _parse(argv)
    console = Console()
    if not console.is_terminal:
        # Piped into a log: wide enough that the table's rows stay on one line each.
        console = Console(width=160)
    # A SIGTERM tears down like a Ctrl-C: through the `finally` blocks.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        report = asyncio.run(run_chaos(options, console))
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]; processes stopped")
        return 130
    print_report(report, console)
    return 0 if report.passed else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The Temporal runtime is not loaded here, but leave as tests/run.py does: with our status.
    os._exit(code)
