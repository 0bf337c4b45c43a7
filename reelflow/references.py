"""References between jobs: `"{{jobs.<id>.output}}"` and `"{{jobs.<id>.outputs}}"` in params.

A reference is a whole string param of exactly that form, anywhere in a job's params (nested
too). `.output` stands for the referenced job's first output URL, `.outputs` for the list of
them; inside a list, `.outputs` is spliced in place. Pure functions: used by plan validation and
by ExecutionWorkflow, so nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Reference",
    "find_references",
    "parse_reference",
    "resolve_references",
    "with_placeholders",
]

_REFERENCE = re.compile(r"\{\{jobs\.([A-Za-z0-9_.-]+?)\.(output|outputs)\}\}")

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Reference:
    """A parsed reference."""

    job_id: str
    """The referenced job."""
    many: bool
    """True for `.outputs` (every output), False for `.output` (the first)."""

    def __str__(self) -> str:
        return f"{{{{jobs.{self.job_id}.{'outputs' if self.many else 'output'}}}}}"


def parse_reference(value: Any) -> Reference | None:
    """The reference `value` is, if it is one."""
    if not isinstance(value, str):
        return None
    # fullmatch: `$` would also match before a trailing newline.
    match = _REFERENCE.fullmatch(value)
    if match is None:
        return None
    return Reference(match.group(1), match.group(2) == "outputs")


def find_references(value: Any, path: Path = ()) -> Iterator[tuple[Path, Reference]]:
    """Every reference in a params tree, with its path."""
    reference = parse_reference(value)
    if reference is not None:
        yield path, reference
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from find_references(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from find_references(item, (*path, index))


def resolve_references(value: Any, outputs: Mapping[str, list[str]]) -> Any:
    """Replace each reference by the referenced job's output URL(s).

    Raises:
        KeyError: a referenced job has no outputs recorded.
        ValueError: a `.output` reference to a job that produced no output.
    """

    def one(reference: Reference) -> str:
        urls = outputs[reference.job_id]
        if not urls:
            raise ValueError(f"job {reference.job_id!r} produced no output")
        return urls[0]

    return _substitute(value, one, lambda reference: list(outputs[reference.job_id]))


def _substitute(
    value: Any,
    one: Callable[[Reference], Any],
    many: Callable[[Reference], list[Any]],
) -> Any:
    reference = parse_reference(value)
    if reference is not None:
        return many(reference) if reference.many else one(reference)
    if isinstance(value, dict):
        return {key: _substitute(item, one, many) for key, item in value.items()}
    if isinstance(value, list):
        result: list[Any] = []
        for item in value:
            item_reference = parse_reference(item)
            if item_reference is not None and item_reference.many:
                result.extend(many(item_reference))
            else:
                result.append(_substitute(item, one, many))
        return result
    return value


def with_placeholders(value: Any) -> Any:
    """The params with each reference replaced by a placeholder URL, for validation."""

    def url(reference: Reference) -> str:
        return f"https://reference.invalid/{reference.job_id}"

    return _substitute(value, url, lambda reference: [url(reference)])
