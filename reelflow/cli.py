"""The `reelflow` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Table

from reelflow.client import ApiError, ReelflowClient
from reelflow.config import get_settings
from reelflow.logs import configure_logging

__all__ = ["app"]

# Locals may hold secrets (tokens, keys): never print them in a traceback.
app = typer.Typer(
    help="Asynchronous AI video generation as durable Temporal workflows.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console()
error_console = Console(stderr=True)

_EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _api_url(api: str | None) -> str:
    settings = get_settings()
    return api or f"http://{settings.api_host}:{settings.api_port}"


@app.command()
def worker() -> None:
    """Run a Temporal worker for reelflow's workflows and activities."""
    from worker import main

    main()


@app.command()
def api() -> None:
    """Run the HTTP API."""
    import uvicorn

    from api.app import create_app
    from reelflow.serving import server_config

    configure_logging()
    settings = get_settings()
    asgi = create_app(settings)
    server = server_config(
        asgi, settings.api_host, settings.api_port, keepalive_s=settings.http_keepalive_s
    )
    uvicorn.Server(server).run()


@app.command()
def emulator() -> None:
    """Run the provider emulator (Replicate's API, with real MP4 outputs and signed webhooks)."""
    import uvicorn

    from reelflow.emulator import EmulatorConfig, create_app
    from reelflow.serving import server_config

    configure_logging()
    settings = get_settings()
    config = EmulatorConfig.uniform(
        public_url=f"http://{settings.emulator_host}:{settings.emulator_port}",
        generation_seconds=settings.emulator_generation_seconds,
    )
    asgi = create_app(config)
    server = server_config(
        asgi,
        settings.emulator_host,
        settings.emulator_port,
        keepalive_s=settings.http_keepalive_s,
    )
    uvicorn.Server(server).run()


@app.command()
def migrate() -> None:
    """Apply pending database migrations."""
    from reelflow.db.migrate import apply_migrations
    from reelflow.embedded import database_url

    configure_logging()
    applied = asyncio.run(apply_migrations(database_url(get_settings())))
    console.print(f"applied {len(applied)} migration(s)" if applied else "up to date")


@app.command()
def cleanup(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Delete executions that finished longer ago than this: e.g. 30d, 12h or 90m",
        ),
    ],
    delete_objects: Annotated[
        bool, typer.Option("--delete-objects", help="Also delete their stored outputs")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Executions deleted per transaction")
    ] = 500,
) -> None:
    """Delete finished executions past an age, with their jobs (and outputs, if asked)."""
    from reelflow.db.engine import Database
    from reelflow.embedded import database_url
    from reelflow.retention import (
        InvalidDuration,
        PurgeReport,
        parse_duration,
        purge_finished_executions,
    )
    from reelflow.storage import StorageError, create_store

    try:
        age = parse_duration(older_than)
    except InvalidDuration as error:
        raise typer.BadParameter(str(error), param_hint="'--older-than'") from error
    configure_logging()
    settings = get_settings()

    async def purge() -> PurgeReport:
        db = Database(database_url(settings), pool_size=1)
        try:
            return await purge_finished_executions(
                db=db,
                store=create_store(settings),
                older_than=age,
                delete_objects=delete_objects,
                dry_run=dry_run,
                batch_size=batch_size,
            )
        finally:
            await db.close()

    try:
        report = asyncio.run(purge())
    except StorageError as error:
        console.print(f"[red]{error}[/] (executions whose outputs remain were kept)")
        raise typer.Exit(1) from error
    objects = str(report.objects) if delete_objects else "kept (see --delete-objects)"
    deliveries = "no table" if report.webhook_deliveries is None else report.webhook_deliveries
    console.print(
        f"{'would delete' if dry_run else 'deleted'} "
        f"(finished before {report.cutoff:%Y-%m-%d %H:%M:%S} UTC, {report.batches} batch(es))\n"
        f"  executions          {report.executions}\n"
        f"  jobs                {report.jobs}\n"
        f"  objects             {objects}\n"
        f"  webhook deliveries  {deliveries}"
    )


def _start_stack(log_dir: Path | None) -> Any:
    from reelflow.stack import LocalStack, StackError

    stack = LocalStack(get_settings(), log_dir=log_dir)
    try:
        stack.start()
    except (StackError, TimeoutError) as error:
        stack.stop()
        console.print(f"[red]could not start reelflow:[/] {error}")
        raise typer.Exit(1) from error
    return stack


@app.command()
def dev() -> None:
    """Start everything on embedded defaults (Temporal, PostgreSQL, emulator, worker, API)."""
    configure_logging()
    stack = _start_stack(log_dir=None)
    providers = (
        f"emulator on port {stack.settings.emulator_port}" if stack.uses_emulator else "real APIs"
    )
    console.print(
        f"[bold green]reelflow is up[/]\n"
        f"  API            {stack.api_url}  (try: reelflow submit examples/sunset.json --wait)\n"
        f"  Temporal UI    http://127.0.0.1:8233\n"
        f"  providers      {providers}\n"
        "Press Ctrl-C to stop."
    )
    # Ctrl-C reaches the whole process group; the children stop on their own, then we reap.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            stack.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        stack.stop()


# The API's client commands: submit, watch, list, cancel, status. Each takes `--api` and
# `--api-key`, and `--json` for scripts (JSON on stdout only; errors go to stderr).

_STATUS_STYLES = {
    "completed": "green",
    "failed": "red",
    "canceled": "yellow",
    "skipped": "yellow",
    "processing": "cyan",
    "running": "cyan",
}


def _styled(status: str) -> str:
    return f"[{_STATUS_STYLES.get(status, 'default')}]{escape(status)}[/]"


def _fail(error: Exception) -> typer.Exit:
    """Report an error on stderr; the command exits with status 1."""
    error_console.print(f"[red]{escape(str(error))}[/]")
    return typer.Exit(1)


def _when(value: str | None) -> str:
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _job_table(status: dict[str, Any]) -> Table:
    table = Table(title=f"execution {status['executionId']}: {status['status']}")
    for column in ("job", "model", "status", "strategy", "polls", "progress", "output / error"):
        table.add_column(column)
    for job in status["jobs"]:
        outputs = ", ".join(output["url"] for output in job["outputs"])
        progress = f"{job['progress'] * 100:.0f}%" if job["progress"] is not None else ""
        table.add_row(
            escape(job["id"]),
            job["modelId"] or "",
            _styled(job["status"]),
            job["waitingStrategy"] or "",
            str(job["pollAttempts"]),
            progress,
            escape(outputs or job["error"] or ""),
        )
    return table


def _outputs_table(execution: dict[str, Any], jobs: list[dict[str, Any]]) -> Table:
    cost = f", ${execution['costUsd']:.2f}" if execution.get("costUsd") else ""
    table = Table(
        title=f"execution {execution['executionId']}: {_styled(execution['status'])}{cost}"
    )
    table.add_column("job")
    table.add_column("content type")
    table.add_column("size", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("URL", overflow="fold")
    for job in jobs:
        for output in job["outputs"]:
            duration = output.get("durationSeconds")
            table.add_row(
                escape(job["id"]),
                output["contentType"],
                _size(output["bytes"]),
                f"{duration:.2f} s" if duration is not None else "",
                escape(output["url"]),
            )
        if not job["outputs"] and job["status"] != "completed":
            table.add_row(escape(job["id"]), _styled(job["status"]), "", "", "")
    return table


class _LiveView:
    """A progress bar per job (status, progress, provider, strategy, polls), fed by events."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[status]}"),
            TextColumn("{task.fields[detail]}"),
            console=console,
        )
        self._tasks: dict[str, TaskID] = {}
        self._status: str | None = None

    def execution(self, execution: dict[str, Any]) -> None:
        if execution["status"] != self._status:
            self._status = execution["status"]
            self.progress.console.print(
                f"execution {execution['executionId']}: {_styled(execution['status'])}"
            )

    def job(self, job: dict[str, Any]) -> None:
        # A bar without a total pulses: a job under way whose provider reports no progress.
        done: float | None = 0.0
        if job["status"] == "completed":
            done = 1.0
        elif job["progress"] is not None:
            done = job["progress"]
        elif job["status"] == "processing":
            done = None
        polls = f" · {job['pollAttempts']} poll(s)" if job["pollAttempts"] else ""
        detail = " · ".join(
            part for part in (job["provider"] or job["operation"], job["waitingStrategy"]) if part
        )
        error = f" · {job['error']}" if job["error"] else ""
        status = _styled(job["status"])
        detail_text = escape(f"{detail}{polls}{error}")
        task = self._tasks.get(job["jobRecordId"])
        if task is None:
            task = self.progress.add_task(escape(job["id"]), status="", detail="")
            self._tasks[job["jobRecordId"]] = task
        self.progress.update(
            task,
            total=None if done is None else 1.0,
            completed=done or 0.0,
            status=status,
            detail=detail_text,
        )


async def _follow(
    client: ReelflowClient, execution_id: str, *, live: bool, ndjson: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Follow the execution's events to the end: its final state and its jobs' last states."""
    view = _LiveView() if live else None
    execution: dict[str, Any] = {"executionId": execution_id, "status": "unknown"}
    jobs: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as display:
        async for event in client.events(execution_id):
            if ndjson:
                print(json.dumps({"event": event.event, "id": event.id, "data": event.data}))
            if view is not None and event.event == "job" and not jobs:
                # The bars appear with the first job (not before: the stream may be refused).
                display.enter_context(view.progress)
            if event.event == "job":
                jobs[event.data["jobRecordId"]] = event.data
                if view:
                    view.job(event.data)
            elif event.event in {"execution", "end"}:
                execution = event.data
                if view:
                    view.execution(event.data)
    return execution, list(jobs.values())


async def _submit(
    file: Path, api: str, wait: bool, as_json: bool, api_key: str | None = None
) -> dict[str, Any]:
    """Submit a plan; with `wait`, follow it live (unless `as_json`) and return its status."""
    async with ReelflowClient(api, api_key=api_key) as client:
        accepted = await client.submit(file)
        if not wait:
            return accepted
        if not as_json:
            console.print(f"submitted execution {accepted['executionId']}")
        await _follow(client, accepted["executionId"], live=not as_json, ndjson=False)
        return await client.status(accepted["executionId"])


ApiOption = Annotated[
    str | None,
    typer.Option("--api", envvar="REELFLOW_API_URL", help="API base URL (default: the local API)"),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="REELFLOW_API_KEY",
        help="API key, sent as `Authorization: Bearer`",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only")]


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Plan JSON file")],
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the execution live until it ends")
    ] = False,
    as_json: JsonOption = False,
    api: ApiOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Submit an execution plan; with --wait, exit 0 only if it completes."""
    try:
        result = asyncio.run(_submit(file, _api_url(api), wait, as_json, api_key))
    except (ApiError, httpx.HTTPError, ValueError) as error:
        raise _fail(error) from error
    except KeyboardInterrupt:
        error_console.print("stopped following; the execution goes on")
        raise typer.Exit(130) from None
    if as_json:
        print(json.dumps(result, indent=2))
    elif wait:
        console.print(_outputs_table(result, result["jobs"]))
        if result["error"]:
            console.print(f"[red]{escape(result['error'])}[/]")
    else:
        console.print(
            f"execution {result['executionId']} {result['status']}: {result['statusUrl']}"
        )
    if wait and result["status"] != "completed":
        raise typer.Exit(1)


@app.command()
def watch(
    execution_id: str,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each event as a JSON line only")
    ] = False,
    api: ApiOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Follow an execution live to its end; exit 0 only if it completes."""

    async def follow() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with ReelflowClient(_api_url(api), api_key=api_key) as client:
            return await _follow(client, execution_id, live=not as_json, ndjson=as_json)

    try:
        execution, jobs = asyncio.run(follow())
    except (ApiError, httpx.HTTPError) as error:
        raise _fail(error) from error
    except KeyboardInterrupt:
        error_console.print("stopped watching; the execution goes on")
        raise typer.Exit(130) from None
    if not as_json:
        console.print(_outputs_table(execution, jobs))
        if execution.get("error"):
            console.print(f"[red]{escape(execution['error'])}[/]")
    if execution["status"] != "completed":
        raise typer.Exit(1)


@app.command("list")
def list_executions(
    status_: Annotated[
        str | None,
        typer.Option("--status", help="Only executions in this status"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="Executions per page")] = 20,
    every: Annotated[
        bool, typer.Option("--all", help="Follow the pages to the last execution")
    ] = False,
    as_json: JsonOption = False,
    api: ApiOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List executions, newest first."""

    async def fetch() -> dict[str, Any]:
        async with ReelflowClient(_api_url(api), api_key=api_key) as client:
            page = await client.list_executions(status=status_, limit=limit)
            executions = list(page["executions"])
            while every and page["nextCursor"]:
                page = await client.list_executions(
                    status=status_, limit=limit, cursor=page["nextCursor"]
                )
                executions += page["executions"]
            return {"executions": executions, "nextCursor": page["nextCursor"]}

    try:
        result = asyncio.run(fetch())
    except (ApiError, httpx.HTTPError) as error:
        raise _fail(error) from error
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title="executions")
    for column in ("execution", "status", "jobs", "created", "finished", "error"):
        table.add_column(column, overflow="fold")
    for item in result["executions"]:
        table.add_row(
            item["executionId"],
            _styled(item["status"]),
            str(item["jobCount"]),
            _when(item["createdAt"]),
            _when(item["completedAt"]),
            escape(item["error"] or ""),
        )
    console.print(table)
    if result["nextCursor"]:
        console.print("more: use --all, or a larger --limit")


def _request(
    api: str | None,
    api_key: str | None,
    call: Callable[[ReelflowClient], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """One API call with the CLI's connection options; errors end the command."""

    async def run() -> dict[str, Any]:
        async with ReelflowClient(_api_url(api), api_key=api_key) as client:
            return await call(client)

    try:
        return asyncio.run(run())
    except (ApiError, httpx.HTTPError) as error:
        raise _fail(error) from error


@app.command()
def cancel(
    execution_id: str,
    as_json: JsonOption = False,
    api: ApiOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Cancel a running execution (its provider jobs are cancelled at the providers)."""

    result = _request(api, api_key, lambda client: client.cancel(execution_id))
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        console.print(f"execution {result['executionId']}: {result['status']}")


@app.command()
def status(
    execution_id: str,
    as_json: JsonOption = False,
    api: ApiOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Show an execution and its jobs."""

    result = _request(api, api_key, lambda client: client.status(execution_id))
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        console.print(_job_table(result))


@app.command()
def demo(
    plan: Annotated[Path, typer.Option(help="Plan to run")] = _EXAMPLES / "sunset.json",
) -> None:
    """Start everything, run an example plan to completion, print its outputs, stop."""
    from reelflow.media import probe

    configure_logging()
    settings = get_settings()
    log_dir = settings.state_dir / "logs"
    console.print(f"starting reelflow (component logs in {log_dir}/)…")
    stack = _start_stack(log_dir=log_dir)
    try:
        console.print(f"submitting {plan}")
        result = asyncio.run(_submit(plan, stack.api_url, wait=True, as_json=False))
        console.print(_job_table(result))
        if result["status"] != "completed":
            raise typer.Exit(1)
        for job in result["jobs"]:
            for output in job["outputs"]:
                with tempfile.NamedTemporaryFile(suffix=".mp4") as copy:
                    with httpx.stream("GET", output["url"]) as response:
                        response.raise_for_status()
                        for chunk in response.iter_bytes():
                            copy.write(chunk)
                    copy.flush()
                    info = probe(copy.name)
                console.print(
                    f"[bold green]{output['url']}[/]\n"
                    f"  {output['contentType']}, {output['bytes']} bytes, "
                    f"{info.duration_s:.2f} s, {info.video_streams} video stream(s), "
                    f"{info.width}x{info.height}"
                )
    except (ApiError, httpx.HTTPError) as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from error
    finally:
        stack.stop()
