"""Run one measurement in a fresh Python process, optionally pinned to some cores.

    python -m bench.child <function in bench.measures> '<json keyword arguments>' [cpus]

The process pins itself first (``os.sched_setaffinity``: every thread it
starts afterwards inherits the mask), sets the garbage collector as encd's
long-running processes do (``encd.collector``), then calls the function and prints
its JSON result on the last line of stdout after ``RESULT``.  ``call`` is
the parent's side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

MARK = "RESULT "
ROOT = Path(__file__).resolve().parent.parent  # the repository: bench, encd, tests importable


def call(function: str, cpus: set[int] | None = None, **kwargs: Any) -> dict[str, Any]:
    """``bench.measures.<function>(**kwargs)`` in a child process; its result."""
    args = [sys.executable, "-m", "bench.child", function, json.dumps(kwargs)]
    if cpus is not None:
        args.append(",".join(str(c) for c in sorted(cpus)))
    done = subprocess.run(args, stdout=subprocess.PIPE, text=True, check=False, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"bench.measures.{function} failed (exit {done.returncode})")
    result: dict[str, Any] = json.loads(lines[-1][len(MARK) :])
    return result


def main(argv: list[str]) -> None:
    function, kwargs = argv[0], json.loads(argv[1])
    if len(argv) > 2:
        os.sched_setaffinity(0, {int(c) for c in argv[2].split(",")})
    from bench import measures
    from encd.collector import long_running

    # the collector set as encd's own long-running processes set it (the service, the
    # sequencer, `encd audit`): the in-process figures are those processes' figures
    with long_running():
        result = getattr(measures, function)(**kwargs)
    if len(argv) > 2:
        result["cpus"] = sorted(os.sched_getaffinity(0))
    print(MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
