"""The `reelflow` command."""

from __future__ import annotations

import asyncio
import json
import signal
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
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

_EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ApiOption = Annotated[
    str | None, typer.Option("--api", help="API base URL (default: the local API)")
]


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

    configure_logging()
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port)


@app.command()
def emulator() -> None:
    """Run the provider emulator (Replicate's API, with real MP4 outputs and signed webhooks)."""
    import uvicorn

    from reelflow.emulator import EmulatorConfig, create_app

    configure_logging()
    settings = get_settings()
    config = EmulatorConfig.uniform(
        public_url=f"http://{settings.emulator_host}:{settings.emulator_port}",
        generation_seconds=settings.emulator_generation_seconds,
    )
    uvicorn.run(create_app(config), host=settings.emulator_host, port=settings.emulator_port)


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


def _job_table(status: dict[str, Any]) -> Table:
    table = Table(title=f"execution {status['executionId']}: {status['status']}")
    for column in ("job", "model", "status", "strategy", "polls", "progress", "output / error"):
        table.add_column(column)
    for job in status["jobs"]:
        outputs = ", ".join(output["url"] for output in job["outputs"])
        progress = f"{job['progress'] * 100:.0f}%" if job["progress"] is not None else ""
        table.add_row(
            job["id"],
            job["modelId"] or "",
            job["status"],
            job["waitingStrategy"] or "",
            str(job["pollAttempts"]),
            progress,
            outputs or job["error"] or "",
        )
    return table


async def _submit(file: Path, api: str, wait: bool, as_json: bool) -> dict[str, Any]:
    async with ReelflowClient(api) as client:
        accepted = await client.submit(file)
        if not wait:
            return accepted
        if not as_json:
            console.print(f"submitted execution {accepted['executionId']}")
        last: list[str] = []

        def show(status: dict[str, Any]) -> None:
            line = [f"{job['id']}={job['status']}" for job in status["jobs"]]
            if line != last and not as_json:
                console.print("  " + "  ".join(line))
                last[:] = line

        return await client.wait(accepted["executionId"], on_update=show)


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Plan JSON file")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the execution ends")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    api: ApiOption = None,
) -> None:
    """Submit an execution plan."""
    try:
        result = asyncio.run(_submit(file, _api_url(api), wait, as_json))
    except (ApiError, httpx.HTTPError) as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from error
    if as_json:
        print(json.dumps(result, indent=2))
    elif wait:
        console.print(_job_table(result))
    else:
        console.print(
            f"execution {result['executionId']} {result['status']}: {result['statusUrl']}"
        )
    if wait and result["status"] != "completed":
        raise typer.Exit(1)


@app.command()
def status(
    execution_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    api: ApiOption = None,
) -> None:
    """Show an execution and its jobs."""

    async def fetch() -> dict[str, Any]:
        async with ReelflowClient(_api_url(api)) as client:
            return await client.status(execution_id)

    try:
        result = asyncio.run(fetch())
    except (ApiError, httpx.HTTPError) as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from error
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
