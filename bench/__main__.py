"""`python -m bench [--scenarios webhook polling ...] [--runs 3] [--quick]`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from rich.console import Console

from bench.runner import Options, run_bench
from bench.scenarios import SCENARIOS

__all__ = ["main"]


def _parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark reelflow against the floor of its engine on this machine.",
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=list(SCENARIOS),
        default=list(SCENARIOS),
        metavar="NAME",
        help=f"which scenarios, of: {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs to take the median of")
    parser.add_argument(
        "--quick", action="store_true", help="a reduced version of everything (~3 min a run)"
    )
    parser.add_argument("--keep-state", action="store_true", help="keep each run's state dir")
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the worker and the API in each scenario"
    )
    args = parser.parse_args(argv)
    chosen = set(args.scenarios)
    return Options(
        scenarios=tuple(name for name in SCENARIOS if name in chosen),
        runs=max(1, args.runs),
        quick=args.quick,
        keep_state=args.keep_state,
        output=args.output,
        profile=args.profile,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when the harness ran (targets missed or not)."""
    options = _parse(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    # A SIGTERM tears down like a Ctrl-C: through the `finally` blocks.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return asyncio.run(run_bench(options, console))
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]; processes stopped")
        return 130


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The Temporal runtime can abort the interpreter while it finalises (sdk-python #300).
    os._exit(code)
