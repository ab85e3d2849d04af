"""A server in a process of its own, on 127.0.0.1 at a free port, until its stdin closes.

    python -m bench.serve encd <data dir>     the encd service (api.server.running)
    python -m bench.serve hello               a FastAPI hello-world POST, the HTTP limit

It prints ``http://127.0.0.1:<port>`` on one line once it accepts connections.
Both run the same way: one uvicorn server, its defaults, the same log level.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
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


def main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "hello":
        context = _hello()
    elif kind == "encd":
        from api.server import running
        from api.settings import Settings
        from bench.workloads import ORIGIN

        data_dir = Path(argv[1])
        settings = Settings(
            data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'ledger.db'}", origin=ORIGIN
        )
        context = running(settings, HOST)
    else:
        raise SystemExit(f"unknown server {kind!r}: expected encd or hello")
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
