"""``encd serve`` in a subprocess, as an operator runs it."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


class Served:
    """A running ``encd serve``: its URL, its output so far, its process."""

    def __init__(
        self, url: str, data_dir: Path, output: list[str], process: subprocess.Popen[str]
    ) -> None:
        self.url = url
        self.data_dir = data_dir
        self.output = output
        self.process = process

    def workers(self) -> list[int]:
        """The pids of the server's worker processes (``--workers``), from /proc."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        workers = []
        for pid in path.read_text().split():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:  # gone since
                continue
            if b"resource_tracker" not in command:  # multiprocessing's helper, not a worker
                workers.append(int(pid))
        return workers

    def sequencer(self) -> int:
        """The pid of the sequencer process (``--workers``): the first one started."""
        return min(self.workers(), key=_started)

    def answerers(self) -> list[int]:
        """The pids of the processes that answer requests (``--workers``)."""
        sequencer = self.sequencer()
        return [pid for pid in self.workers() if pid != sequencer]


def _started(pid: int) -> int:
    """When ``pid`` started, in clock ticks since boot (/proc/<pid>/stat, field 22)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


@contextmanager
def serve(
    data_dir: Path,
    database_url: str,
    *args: str,
    authority: str | None = None,
    verify: ssl.SSLContext | bool = True,
) -> Iterator[Served]:
    """``encd serve`` on a free port over ``data_dir`` and ``database_url``, with ``args``;
    yields once it answers ``/healthz`` (over HTTPS, checked with ``verify``), stops it
    (SIGTERM) afterwards."""
    env = {k: v for k, v in os.environ.items() if k != "ENCD_AUTHORITY"}
    if authority is not None:
        env["ENCD_AUTHORITY"] = authority
    command = ["serve", "--data-dir", str(data_dir), "--db", database_url, "--port", "0", *args]
    process = subprocess.Popen(
        [sys.executable, "-m", "encd.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    assert process.stdout is not None
    output = process.stdout
    seen: list[str] = []  # every line so far, appended as it comes

    def read() -> None:
        for line in output:
            seen.append(line)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not (started := re.search(r"running on (https?://\S+)", "".join(seen))):
            assert time.monotonic() < deadline, "encd serve did not start:\n" + "".join(seen)
            assert process.poll() is None or reader.is_alive(), "encd serve exited:\n" + "".join(
                seen
            )
            time.sleep(0.02)
        url = started.group(1)
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=5, verify=verify).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "encd serve does not answer:\n" + "".join(seen)
            time.sleep(0.05)
        yield Served(url, data_dir, seen, process)
    finally:
        process.terminate()
        process.wait(timeout=60)
        reader.join(timeout=30)
