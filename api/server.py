"""Running the service: ``serve`` in the foreground, ``running`` in a background thread.

With ``workers`` > 1, ``serve`` runs that many server processes on the one
port (uvicorn's supervisor starts them and restarts one that dies).  Each has
its own sequencer on the shared store: one batch at a time is written (the
store's lock), and a sequencer catches up with the others' appends before
its next batch (see ledger.ledger).  Nonces, proposals and parties are read
from the store, so every worker refuses what any other has seen.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import multiprocessing.process
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.settings import Settings
from api.setup import ensure_genesis, load_or_init
from encd.collector import long_running
from encd.errors import Error
from ledger.ledger import Ledger
from ledger.sequencer import SequencerServer

SETTINGS_ENV = "ENCD_SERVE_SETTINGS"  # how the settings reach the worker processes


def serve(
    settings: Settings, host: str, port: int, workers: int = 1, log_level: str = "info"
) -> None:
    """Serve until interrupted (``encd serve``), in ``workers`` processes."""
    if workers <= 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)
        return
    try:
        prepare(settings)
    except Exception as exc:  # before any worker: say why, without a traceback
        reason = exc.message if isinstance(exc, Error) else str(getattr(exc, "orig", exc))
        raise WorkerFailed(f"cannot open the ledger: {reason}") from None
    with tempfile.TemporaryDirectory(prefix="encd-") as private:  # mode 0700
        settings = dataclasses.replace(settings, sequencer=os.path.join(private, "sequencer.sock"))
        os.environ[SETTINGS_ENV] = json.dumps(settings.to_json())
        run_workers(
            "api.server:worker_app",
            host,
            port,
            workers,
            log_level,
            first=(_sequencer, (os.environ[SETTINGS_ENV],)),
        )


def run_workers(
    factory: str,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    first: tuple[Callable[..., None], tuple[Any, ...]] | None = None,
) -> None:
    """Serve the app ``factory`` ("module:function") in ``workers`` processes until SIGINT or
    SIGTERM, after starting ``first`` (a function and its arguments: the sequencer) in a
    process of its own.  A process that dies is started again, unless it dies within
    ``WORKER_MIN_LIFE`` seconds of starting (it cannot start: the store is unreachable,
    say): then every process is stopped and ``WorkerFailed`` raised.

    Each worker listens on a socket of its own, bound to the one port with SO_REUSEPORT,
    and the kernel spreads new connections over them.  (uvicorn's own supervisor hands
    every worker the one socket: whichever wakes first accepts every waiting connection,
    and 32 clients connecting at once all went to one worker while the other idled.)
    The sockets set TCP_NODELAY: a response written in two pieces (head, then body)
    must not wait for the client's delayed ACK.
    """
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def start(
        target: Callable[..., None], args: tuple[Any, ...]
    ) -> tuple[multiprocessing.process.BaseProcess, float]:
        process = context.Process(target=target, args=args, name="encd-worker")
        process.start()
        return process, time.monotonic()

    def stop(signum: int, _frame: object) -> None:
        stopping.set()

    # The port (port 0: a free one, chosen here) is held by a bound socket that does not
    # listen, so no other program takes it while the workers start; only listening
    # sockets are given connections.
    if port:  # taken by anything else, even another server sharing ports: refuse
        probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
        except OSError as exc:
            raise WorkerFailed(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        finally:
            probe.close()
    try:
        reserved = _socket(host, port)
    except OSError as exc:
        raise WorkerFailed(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    port = reserved.getsockname()[1]
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    specs = [first] if first is not None else []
    specs += [(_worker, (factory, host, port, log_level))] * workers
    procs = [start(*spec) for spec in specs]
    shown = f"[{host}]" if ":" in host else host
    _say(f"running on http://{shown}:{port} in {workers} worker processes")
    failed = ""
    try:
        while not failed and not stopping.wait(0.5):
            for i, (proc, started) in enumerate(procs):
                if proc.is_alive() or stopping.is_set():
                    continue
                if time.monotonic() - started < WORKER_MIN_LIFE:
                    failed = (
                        f"process {proc.pid} exited (code {proc.exitcode}) as it started"
                        " (its own output above says why)"
                    )
                    break
                _say(f"process {proc.pid} exited (code {proc.exitcode}): starting another")
                procs[i] = start(*specs[i])
    finally:
        for proc, _ in procs:
            if proc.is_alive():
                os.kill(proc.pid or 0, signal.SIGTERM)
        for proc, _ in procs:
            proc.join(timeout=30)
            if proc.is_alive():  # pragma: no cover - a worker that does not stop
                proc.kill()
                proc.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reserved.close()
    if failed:
        raise WorkerFailed(failed)


WORKER_MIN_LIFE = 5.0  # seconds


class WorkerFailed(RuntimeError):
    """A worker of ``run_workers`` could not start."""


def _say(line: str) -> None:
    print(f"encd: {line}", file=sys.stderr, flush=True)


def _socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT (so the workers' sockets can
    share the port) and TCP_NODELAY (inherited by the sockets it accepts)."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    family, kind, proto, _, address = info[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _sequencer(settings_json: str) -> None:  # pragma: no cover - runs in its own process
    """The sequencer process of ``serve`` with workers: appends what the workers hand it."""
    settings = Settings.from_json(json.loads(settings_json))
    assert settings.sequencer is not None
    service = load_or_init(settings.data_dir, settings.origin)
    with Ledger(settings.url, service.log_key, clock=settings.clock) as ledger:
        server = SequencerServer(ledger, settings.sequencer)

        def stop(signum: int, _frame: object) -> None:
            server.close()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        with long_running():  # its document cache, out of the collector's way
            server.serve_forever()


def _worker(factory: str, host: str, port: int, log_level: str) -> None:  # pragma: no cover
    """One worker process (run_workers): its own listening socket, one uvicorn server."""
    sock = _socket(host, port)
    sock.listen(2048)
    config = uvicorn.Config(factory, factory=True, host=host, port=port, log_level=log_level)
    uvicorn.Server(config).run(sockets=[sock])


def prepare(settings: Settings) -> None:
    """Keys, schema and the genesis registration, once, before several workers start (they
    would otherwise race to create them)."""
    service = load_or_init(settings.data_dir, settings.origin)
    with Ledger(settings.url, service.log_key, clock=settings.clock) as ledger:
        ensure_genesis(ledger, service, settings.clock())


def worker_app() -> FastAPI:
    """The app of one worker process of ``serve`` (uvicorn calls this in each)."""
    return create_app(Settings.from_json(json.loads(os.environ[SETTINGS_ENV])))


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
