"""Optional profiles (`--profile`): py-spy records the worker and the API during each scenario.

py-spy (PyPI `py-spy`, a dev dependency) samples a running process from outside, only while a
thread holds the GIL (`--gil`), so the samples approximate where Python CPU time goes. Each
recording is written as collapsed stacks (`<scenario>-<component>.txt`, readable by speedscope
or flamegraph.pl) beside a summary of the hottest functions (`.summary.txt`).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

__all__ = ["profiled", "summarise_stacks"]

_RATE_HZ = 100


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def profiled(pids: dict[str, int], directory: Path, label: str) -> Iterator[None]:
    """Record each process in `pids` while the block runs (nothing if py-spy is missing)."""
    binary = _py_spy()
    if binary is None:
        raise RuntimeError("--profile needs py-spy: pip install py-spy")
    directory.mkdir(parents=True, exist_ok=True)
    recorders = []
    for name, pid in pids.items():
        output = directory / f"{label}-{name}.txt"
        recorders.append(
            (
                output,
                subprocess.Popen(
                    [binary, "record", "--pid", str(pid), "--gil", "--nonblocking"]
                    + ["--rate", str(_RATE_HZ), "--format", "raw", "--output", str(output)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                ),
            )
        )
    try:
        yield
    finally:
        for _, recorder in recorders:
            recorder.send_signal(signal.SIGINT)
        for output, recorder in recorders:
            try:
                recorder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                recorder.kill()
            if output.is_file():
                summary = "\n".join(summarise_stacks(output))
                output.with_suffix(".summary.txt").write_text(summary + "\n")


def summarise_stacks(path: Path, top: int = 40) -> list[str]:
    """The functions with the most samples in a collapsed-stacks file: self, then inclusive."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return ["no samples"]
    lines = [f"{total} samples at {_RATE_HZ} Hz with the GIL held", "", "self:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return lines
