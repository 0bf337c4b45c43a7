"""An execution's change feed: its state, then every change, resumable from an opaque cursor.

This is what `GET /api/executions/{id}/events` streams. It reads PostgreSQL only (no Temporal
query per client): every `poll_interval_s`, one query returns the execution row and the job rows
the client does not have yet (`repository.read_execution_changes`). Each change is the row's
full current state, so a client that skipped intermediate versions (two progress updates between
reads, or a whole disconnection) loses nothing by receiving only the latest.

Why the cursor is an MVCC snapshot, not `updated_at`
    A timestamp cursor ("send rows whose updated_at is newer than the last one sent") loses
    changes: `updated_at` comes from the writer's clock before its transaction commits, so a
    row stamped T1 can become visible after a row stamped T2 > T1 was read and sent; a client
    resuming after T2 never gets T1. Waiting for stamps to "settle" before sending them does not
    work either: a job polled every half second is never still for a whole settle window.

    PostgreSQL already knows exactly what a reader has seen. Each read runs in one statement
    whose snapshot, `pg_current_snapshot()` (`xmin:xmax:in-progress ids`), says which
    transactions' writes it saw, and every row version records the transaction that wrote it
    (`xmin`). "Has the client got the current version of this row?" is then "is that version's
    transaction visible in the snapshot of the read that sent it?"
    (`pg_visible_in_snapshot`). That is exact whatever the clocks, the commit order or the
    frequency of updates, and it catches any write to the rows, whether or not it sets
    `updated_at`.

Cursor (the SSE event id)
    A list of `(snapshot, rank)` pairs separated by `/`: for each pair, the client has every
    row of rank <= rank as it was in that snapshot; a pair without a rank covers every row.
    Ranks order the rows of a read: 0 for the execution, `position + 1` for a job. The rows the
    client lacks are those no pair covers. Examples:

    - `7412:7415:7413` - the client has everything as of that snapshot (the last event of a
      read; the usual id);
    - `7412:7415:7413-3` - it has the rows of rank <= 3 as of that snapshot (an event in the
      middle of a read: the execution and the first jobs);
    - `7400:7402:/7412:7415:7413-3` - both (it resumed, then dropped again mid-read).

    Resuming with an id sends exactly the rows the client lacks, in their current state, and
    the next complete read collapses the cursor back to one snapshot. Pairs a later pair makes
    redundant are dropped; a cursor PostgreSQL cannot interpret (a snapshot newer than the
    database, say after a restore) is read as "has nothing", which re-sends the full state.

Limits
    Row transaction ids are 32 bits; they are widened with the epoch of the reading snapshot,
    which is right for rows written within the last 2**32 transactions (a row untouched for
    longer may once be taken for a recent one and sent again), and cursor snapshots more than
    2**31 transactions old are dropped. Subtransactions (SAVEPOINT) would defeat
    `pg_visible_in_snapshot`; reelflow's writes use none. Each connected client costs one
    indexed query per `poll_interval_s`.

Order, fresh stream, end
    Within a read, the execution comes first, then jobs in plan order. With no cursor, the
    first read returns every row - so a client needs nothing else. After the read in which the
    execution is seen completed, failed or canceled, the feed yields `ExecutionEnd` and stops:
    the workflow records every job's final state before the execution's, so that read (or an
    earlier one) had them all.

`ExecutionChange` is yielded when the execution's row changes (status, error, completion); its
`cost_usd` is the sum of its jobs' costs at that read, and each job's own cost is in its row.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

from reelflow.db import repository
from reelflow.db.engine import Database
from reelflow.db.models import Execution, ExecutionJob

__all__ = [
    "CURSOR_PATTERN",
    "Change",
    "Cursor",
    "ExecutionChange",
    "ExecutionEnd",
    "InvalidCursor",
    "JobChange",
    "Snapshot",
    "TERMINAL_EXECUTION_STATUSES",
    "follow_execution",
]

TERMINAL_EXECUTION_STATUSES = frozenset({"completed", "failed", "canceled"})

_XID = r"[0-9]{1,19}"
_SNAPSHOT = rf"{_XID}:{_XID}:(?:{_XID}(?:,{_XID})*)?"
_PAIR = rf"{_SNAPSHOT}(?:-[0-9]{{1,9}})?"
_MAX_PAIRS = 8
CURSOR_PATTERN = rf"^{_PAIR}(?:/{_PAIR}){{0,{_MAX_PAIRS - 1}}}$"
"""What an event id looks like (the API checks `Last-Event-ID` against it)."""

_MAX_XID8 = 2**63 - 1
# Row xids are widened from 32 bits with the reading snapshot's epoch (see the docstring).
_XID_HORIZON = 2**31


class InvalidCursor(ValueError):
    """A string that is not a cursor this module wrote."""


@dataclass(frozen=True)
class Snapshot:
    """A PostgreSQL MVCC snapshot (`pg_snapshot`): which transactions' writes it sees."""

    xmin: int
    """Every transaction below this one had finished."""
    xmax: int
    """No transaction from this one on had finished."""
    in_progress: tuple[int, ...]
    """Transactions between the two still running, in ascending order."""

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        """Read `xmin:xmax:xip,...`, with the rules PostgreSQL's `pg_snapshot_in` applies.

        Raises:
            InvalidCursor: it is not a snapshot.
        """
        if not re.fullmatch(_SNAPSHOT, text):
            raise InvalidCursor(f"not a snapshot: {text!r}")
        xmin, xmax, listed = text.split(":")
        snapshot = cls(int(xmin), int(xmax), tuple(int(x) for x in listed.split(",") if x))
        ids = snapshot.in_progress
        if not (
            0 < snapshot.xmin <= snapshot.xmax <= _MAX_XID8
            and all(snapshot.xmin <= x < snapshot.xmax for x in ids)
            and list(ids) == sorted(set(ids))
        ):
            raise InvalidCursor(f"not a snapshot: {text!r}")
        return snapshot

    def sees(self, other: Snapshot) -> bool:
        """Whether this snapshot sees every write `other` sees (it is the same or later)."""
        unseen_by_other = set(other.in_progress)
        return self.xmax >= other.xmax and all(
            x in unseen_by_other for x in self.in_progress if x < other.xmax
        )

    def __str__(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(map(str, self.in_progress))}"


@dataclass(frozen=True)
class _Received:
    snapshot: Snapshot
    rank: int | None  # None: every rank

    def covers(self, other: _Received) -> bool:
        ranks = self.rank is None or (other.rank is not None and other.rank <= self.rank)
        return ranks and self.snapshot.sees(other.snapshot)

    def __str__(self) -> str:
        return str(self.snapshot) if self.rank is None else f"{self.snapshot}-{self.rank}"


@dataclass(frozen=True)
class Cursor:
    """What a client has of an execution's rows: see the module docstring."""

    received: tuple[_Received, ...] = ()
    """(snapshot, rank) pairs, oldest first; empty: the client has nothing."""

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """Read an event id.

        Raises:
            InvalidCursor: it is not one.
        """
        if not re.fullmatch(CURSOR_PATTERN, text):
            raise InvalidCursor(f"not an event id: {text!r}")
        pairs = []
        for item in text.split("/"):
            snapshot, _, rank = item.partition("-")
            pairs.append(_Received(Snapshot.parse(snapshot), int(rank) if rank else None))
        return cls(tuple(pairs))

    @classmethod
    def at(cls, snapshot: Snapshot) -> Cursor:
        """Every row as of `snapshot`."""
        return cls((_Received(snapshot, None),))

    def and_rows_up_to(self, snapshot: Snapshot, rank: int) -> Cursor:
        """This, plus the rows of rank <= `rank` as of `snapshot`."""
        added = _Received(snapshot, rank)
        kept = [pair for pair in self.received if not added.covers(pair)]
        return Cursor((*kept[-(_MAX_PAIRS - 1) :], added))

    def pairs(self) -> list[tuple[str, int | None]]:
        """The pairs as the repository takes them."""
        return [(str(pair.snapshot), pair.rank) for pair in self.received]

    def within(self, current: Snapshot) -> Cursor:
        """Without the pairs `current` cannot judge: newer than it, or too old for its xids."""
        return Cursor(
            tuple(
                pair
                for pair in self.received
                if pair.snapshot.xmax <= current.xmax
                and current.xmax - pair.snapshot.xmax < _XID_HORIZON
            )
        )

    def __str__(self) -> str:
        return "/".join(map(str, self.received))


@dataclass(frozen=True)
class ExecutionChange:
    """The execution's row changed (or, on a fresh stream, its current state)."""

    execution: Execution
    """The execution row."""
    cost_usd: Decimal
    """Sum of its jobs' costs at that read."""
    cursor: Cursor
    """The event id."""


@dataclass(frozen=True)
class JobChange:
    """A job's row changed (or, on a fresh stream, its current state)."""

    job: ExecutionJob
    """The job row."""
    cursor: Cursor
    """The event id."""


@dataclass(frozen=True)
class ExecutionEnd:
    """The execution is over and the client has every row in its final state."""

    execution: Execution
    """The execution row, in its final state."""
    cost_usd: Decimal
    """Sum of its jobs' costs."""
    cursor: Cursor
    """The event id."""


Change = ExecutionChange | JobChange | ExecutionEnd


async def _read(
    db: Database, execution_id: str, cursor: Cursor
) -> tuple[repository.ExecutionChanges, Snapshot] | None:
    async with db.session() as session:
        changes = await repository.read_execution_changes(
            session=session, execution_id=execution_id, received=cursor.pairs()
        )
    if changes is None:
        return None
    snapshot = Snapshot.parse(changes.snapshot)
    usable = cursor.within(snapshot)
    if usable != cursor:
        # Rare: judge again with the pairs this database can interpret.
        return await _read(db, execution_id, usable)
    return changes, snapshot


async def follow_execution(
    *,
    db: Database,
    execution_id: str,
    after: Cursor | None,
    stop: Callable[[], Awaitable[bool]],
    poll_interval_s: float = 0.25,
    max_duration_s: float = 3600.0,
) -> AsyncIterator[Change]:
    """The execution's rows the client lacks after `after` (all of them if None), then each
    change, until the execution ends.

    Also ends, without `ExecutionEnd`, when `stop()` is true (the client left), when the
    execution no longer exists (deleted by retention) and after `max_duration_s`, when the
    client is expected to reconnect with the last id it received.

    The caller checks that the execution exists and that its client may read it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_duration_s
    cursor = after or Cursor()
    while True:
        read = await _read(db, execution_id, cursor)
        if read is None:
            return
        changes, snapshot = read
        execution = changes.execution
        rows: list[Execution | ExecutionJob] = [execution] if changes.execution_changed else []
        rows += changes.jobs
        for index, row in enumerate(rows):
            last = index == len(rows) - 1
            rank = row.position + 1 if isinstance(row, ExecutionJob) else 0
            event_id = Cursor.at(snapshot) if last else cursor.and_rows_up_to(snapshot, rank)
            if isinstance(row, ExecutionJob):
                yield JobChange(row, event_id)
            else:
                yield ExecutionChange(row, changes.cost_usd, event_id)
        cursor = Cursor.at(snapshot)
        if execution.status in TERMINAL_EXECUTION_STATUSES:
            yield ExecutionEnd(execution, changes.cost_usd, cursor)
            return
        await asyncio.sleep(poll_interval_s)
        if loop.time() >= deadline or await stop():
            return
