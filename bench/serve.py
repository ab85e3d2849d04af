"""A server in a process of its own, on 127.0.0.1 at a free port, until its stdin closes.

    python -m bench.serve encd <workers> <data dir>   the encd service (``encd serve``)
    python -m bench.serve hello <workers>             a FastAPI hello-world POST, the HTTP limit

It prints ``http://127.0.0.1:<port>`` on one line once it accepts connections.
Both run the same way: uvicorn with its defaults and the same log level, in one
process (``running``, a thread) or, with more than one worker, as uvicorn's
supervisor of that many worker processes sharing the port (``encd serve --workers``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

HOST = "127.0.0.1"


def hello_app() -> FastAPI:
    app = FastAPI()

    @app.post("/hello")
    async def hello(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"ok": True, "bytes": len(body)}, status_code=201)

    return app


@contextmanager
def _hello() -> Iterator[str]:
    from api.server import running_app

    with running_app(hello_app(), HOST) as url:
        yield url


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _supervise(run: Callable[[int], None]) -> None:
    """Run ``run(port)`` (a uvicorn supervisor: it must have the main thread) and print the
    URL once the port answers; SIGINT to ourselves (a clean shutdown) when stdin closes."""
    port = _free_port()

    def announce() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            time.sleep(1.0)  # every worker has started (each takes well under a second)
            print(f"http://{HOST}:{port}", flush=True)
            sys.stdin.read()
            break
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=announce, daemon=True).start()
    run(port)


def main(argv: list[str]) -> None:
    kind, workers = argv[0], int(argv[1])
    settings = None
    if kind == "encd":
        from api.settings import Settings
        from bench.workloads import ORIGIN

        data_dir = Path(argv[2])
        settings = Settings(
            data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'ledger.db'}", origin=ORIGIN
        )
    elif kind != "hello":
        raise SystemExit(f"unknown server {kind!r}: expected encd or hello")
    if workers > 1:
        from api.server import run_workers, serve

        if settings is None:
            _supervise(
                lambda port: run_workers("bench.serve:hello_app", HOST, port, workers, "warning")
            )
        else:
            quiet = settings
            _supervise(lambda port: serve(quiet, HOST, port, workers, log_level="warning"))
        return
    if settings is None:
        context = _hello()
    else:
        from api.server import running

        context = running(settings, HOST)
    with context as url:
        print(url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


class Server:
    """A ``bench.serve`` child process; ``url`` once it listens, ``pid`` for a profiler."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.serve", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"bench.serve {' '.join(args)} did not start")
        self.url = line
        self.port = int(line.rsplit(":", 1)[1])
        self.pid = self.process.pid

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
