"""RetentionWorkflow, and the daily Temporal schedule that runs it.

The workflow only runs the retention activity; `ensure_retention_schedule` (called by the
worker at start-up, outside any workflow) creates or updates the schedule that starts it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.retention import PurgeInput, RetentionActivities
    from reelflow.retention import PurgeReport

__all__ = [
    "RETENTION_SCHEDULE_ID",
    "RetentionWorkflow",
    "ensure_retention_schedule",
    "retention_schedule",
]

logger = logging.getLogger(__name__)

RETENTION_SCHEDULE_ID = "reelflow-retention"
"""Id of the schedule, and prefix of the workflow ids it starts (Temporal appends the time)."""

# Every batch commits on its own, so a retry only has the rest of the backlog to do.
_PURGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=30),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=5,
    non_retryable_error_types=["InvalidRetention", "StorageMisconfigured"],
)


@workflow.defn
class RetentionWorkflow:
    """Deletes finished executions past the retention age (and their outputs, if asked)."""

    @workflow.run
    async def run(self, purge: PurgeInput) -> PurgeReport:
        """Run the retention activity once and return what it deleted."""
        return await workflow.execute_activity_method(
            RetentionActivities.purge_finished_executions,
            purge,
            # A large backlog takes a while; the heartbeat per batch says it is still going.
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(minutes=2),
            # Done well within a day, so a stuck run never makes the schedule skip the next one.
            schedule_to_close_timeout=timedelta(hours=6),
            retry_policy=_PURGE_RETRY,
        )


def retention_schedule(*, task_queue: str, older_than: timedelta, delete_objects: bool) -> Schedule:
    """The schedule `ensure_retention_schedule` keeps: RetentionWorkflow daily at 03:00 UTC.

    Args:
        task_queue: Task queue of the worker that runs RetentionWorkflow and its activity.
        older_than: Retention age: executions that finished longer ago are deleted.
        delete_objects: Whether their stored outputs are deleted too.
    """
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RetentionWorkflow.run,
            PurgeInput(older_than_s=older_than.total_seconds(), delete_objects=delete_objects),
            id=RETENTION_SCHEDULE_ID,
            task_queue=task_queue,
            execution_timeout=timedelta(hours=12),
        ),
        spec=ScheduleSpec(
            # Every day since the epoch, offset by 3 h: 03:00 UTC, a quiet hour for most users.
            intervals=[ScheduleIntervalSpec(every=timedelta(days=1), offset=timedelta(hours=3))]
        ),
        # A run still going when the next is due makes that one skip; after an outage, a run
        # missed within the last day is made up.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=1)),
        state=ScheduleState(note="Managed by the reelflow worker (RETENTION_DAYS)."),
    )


async def ensure_retention_schedule(
    client: Client, *, task_queue: str, older_than: timedelta, delete_objects: bool
) -> None:
    """Create the daily retention schedule, or bring an existing one up to date.

    Idempotent: when the schedule already matches, nothing is written. An update keeps the
    schedule's state, so a schedule an operator paused stays paused. Safe to call from several
    workers starting at once.

    Args:
        client: Temporal client.
        task_queue: Task queue of the worker that runs RetentionWorkflow and its activity.
        older_than: Retention age: executions that finished longer ago are deleted.
        delete_objects: Whether their stored outputs are deleted too.
    """
    desired = retention_schedule(
        task_queue=task_queue, older_than=older_than, delete_objects=delete_objects
    )
    try:
        await client.create_schedule(RETENTION_SCHEDULE_ID, desired)
    except ScheduleAlreadyRunningError:
        pass
    else:
        logger.info("Created schedule %s (retention %s)", RETENTION_SCHEDULE_ID, older_than)
        return

    async def update(current: ScheduleUpdateInput) -> ScheduleUpdate | None:
        schedule = current.description.schedule
        if await _matches(client, schedule, desired):
            return None
        logger.info("Updating schedule %s (retention %s)", RETENTION_SCHEDULE_ID, older_than)
        return ScheduleUpdate(schedule=replace(desired, state=schedule.state))

    await client.get_schedule_handle(RETENTION_SCHEDULE_ID).update(update)


async def _matches(client: Client, current: Schedule, desired: Schedule) -> bool:
    """Whether the existing schedule's action, spec and policy are the desired ones."""
    action, wanted = current.action, desired.action
    if not isinstance(action, ScheduleActionStartWorkflow):
        return False
    assert isinstance(wanted, ScheduleActionStartWorkflow)
    same_action = (
        action.workflow,
        action.id,
        action.task_queue,
        action.execution_timeout,
        len(action.args),
    ) == (wanted.workflow, wanted.id, wanted.task_queue, wanted.execution_timeout, 1)
    if not same_action:
        return False
    # A described schedule carries its arguments as payloads, still encoded.
    try:
        [current_input] = await client.data_converter.decode(list(action.args), [PurgeInput])
    except Exception:
        # Written by another version of reelflow, say: replace it.
        return False
    return (
        current_input == wanted.args[0]
        and list(current.spec.intervals) == list(desired.spec.intervals)
        and not current.spec.calendars
        and not current.spec.cron_expressions
        and current.policy.overlap == desired.policy.overlap
        and current.policy.catchup_window == desired.policy.catchup_window
    )
