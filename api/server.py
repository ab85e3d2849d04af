"""Running the service: ``serve`` in the foreground, ``running`` in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from api.app import create_app
from api.settings import Settings


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve until interrupted (``encd serve``)."""
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


@contextmanager
def running(settings: Settings, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``create_app(settings)`` on ``host`` at a free port; yields the base URL."""
    with running_app(create_app(settings), host) as url:
        yield url


@contextmanager
def running_app(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve any ASGI ``app`` on ``host`` at a free port in a thread; yields the base URL."""
    config = uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="encd-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the encd service did not start (see the log above)")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
