"""Figures, targets, medians across runs, the table and the JSON file."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

__all__ = [
    "Figure",
    "Summary",
    "Target",
    "machine",
    "percentile",
    "print_table",
    "summarise",
    "write_json",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` percentile of `values` by linear interpolation (NaN when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Target:
    """What a figure must be: at most/least a limit, or a factor of its floor/baseline."""

    kind: Literal["at_most", "at_least", "ratio_at_most", "ratio_at_least"]
    """How `limit` applies."""
    limit: float
    """The bound, or the factor of the floor."""

    def describe(self, unit: str) -> str:
        """E.g. `≤ 1.5× floor`, `≤ 400 MB`."""
        sign = "≤" if self.kind in ("at_most", "ratio_at_most") else "≥"
        if self.kind.startswith("ratio"):
            return f"{sign} {self.limit:g}× floor"
        return f"{sign} {self.limit:g} {unit}"

    def met(self, value: float, floor: float | None) -> bool | None:
        """Whether `value` meets it; None when it cannot be told."""
        if math.isnan(value):
            return None
        if self.kind == "at_most":
            return value <= self.limit
        if self.kind == "at_least":
            return value >= self.limit
        if floor is None or math.isnan(floor) or floor == 0:
            return None
        if self.kind == "ratio_at_most":
            return value <= self.limit * floor
        return value >= self.limit * floor


@dataclass
class Figure:
    """One measured figure of one run."""

    scenario: str
    """Which scenario."""
    name: str
    """What it is, e.g. `p50 @ 1 in flight`."""
    unit: str
    """ms, /s, MB, %, calls/min, …"""
    value: float
    """reelflow's figure (NaN when it could not be measured)."""
    floor: float | None = None
    """The floor's (or the baseline's) figure for the same thing."""
    target: Target | None = None
    """What it must be."""
    note: str = ""
    """How it was measured or what the floor is, shown under the table."""


@dataclass
class Summary:
    """A figure's median over the runs, and its verdict."""

    scenario: str
    name: str
    unit: str
    value: float
    floor: float | None
    ratio: float | None
    target: str
    met: bool | None
    runs: list[float]
    floor_runs: list[float]
    note: str = ""


def _median(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def summarise(runs: list[list[Figure]]) -> list[Summary]:
    """Medians over runs of every figure, scenario by scenario (a scenario's figures in the
    order they were produced, whichever run produced them first)."""
    order: list[tuple[str, str]] = []
    grouped: dict[tuple[str, str], list[Figure]] = {}
    for figures in runs:
        for figure in figures:
            key = (figure.scenario, figure.name)
            if key not in grouped:
                order.append(key)
                grouped[key] = []
            grouped[key].append(figure)
    scenarios: list[str] = []
    for scenario, _ in order:
        if scenario not in scenarios:
            scenarios.append(scenario)
    order.sort(key=lambda key: scenarios.index(key[0]))
    summaries = []
    for key in order:
        figures = grouped[key]
        first = figures[0]
        value = _median([f.value for f in figures])
        floor_values = [f.floor for f in figures if f.floor is not None]
        floor = _median(floor_values) if floor_values else None
        ratio = value / floor if floor and not math.isnan(floor) and floor != 0 else None
        summaries.append(
            Summary(
                scenario=first.scenario,
                name=first.name,
                unit=first.unit,
                value=value,
                floor=floor,
                ratio=ratio,
                target=first.target.describe(first.unit) if first.target else "",
                met=first.target.met(value, floor) if first.target else None,
                runs=[f.value for f in figures],
                floor_runs=floor_values,
                note=first.note,
            )
        )
    return summaries


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_table(
    summaries: list[Summary], *, console: Console, title: str, notes: list[str]
) -> None:
    """One table of every figure, then the notes."""
    table = Table(title=title, show_lines=False)
    for column, justify in (
        ("scenario", "left"),
        ("figure", "left"),
        ("reelflow", "right"),
        ("floor", "right"),
        ("ratio", "right"),
        ("unit", "left"),
        ("target", "left"),
        ("", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    previous = ""
    for summary in summaries:
        verdict = {True: "[green]met[/]", False: "[bold red]missed[/]", None: ""}[summary.met]
        table.add_row(
            summary.scenario if summary.scenario != previous else "",
            summary.name,
            _number(summary.value),
            _number(summary.floor),
            f"{summary.ratio:.2f}×" if summary.ratio is not None else "",
            summary.unit,
            summary.target,
            verdict,
            end_section=False,
        )
        previous = summary.scenario
    console.print(table)
    for note in notes:
        console.print(f"  {note}", highlight=False)


def machine() -> dict[str, Any]:
    """The machine the figures come from."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(memory / 1e9, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


@dataclass
class Report:
    """Everything written to the JSON file."""

    started_at: str
    options: dict[str, Any]
    machine: dict[str, Any]
    summaries: list[Summary]
    runs: list[list[Figure]]
    extras: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def write_json(report: Report, path: Path | None = None) -> Path:
    """Write the report to `path` (default `bench/results/<timestamp>.json`)."""
    if path is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS_DIR / f"{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)

    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(asdict(report)), indent=1, default=str))
    return path


__all__ += ["RESULTS_DIR", "Report"]
