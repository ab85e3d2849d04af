"""Running the service: ``serve`` in the foreground, ``running`` in a background thread.

With ``workers`` > 1, ``serve`` runs that many server processes on the one
port (uvicorn's supervisor starts them and restarts one that dies).  Each has
its own sequencer on the shared store: one batch at a time is written (the
store's lock), and a sequencer catches up with the others' appends before
its next batch (see ledger.ledger).  Nonces, proposals and parties are read
from the store, so every worker refuses what any other has seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import logging.config
import multiprocessing
import multiprocessing.process
import os
import resource
import selectors
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
from asyncio import constants as asyncio_constants
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.app import Stopping, create_app, witness_pusher
from api.head import MAX_HEAD
from api.problems import MEDIA_TYPE as PROBLEM_TYPE
from api.problems import TITLES
from api.settings import Settings
from api.setup import (
    MarkKeeper,
    Service,
    ensure_genesis,
    first_start,
    load_or_init,
    missing_ledger,
    new_sqlite_files,
    undo,
)
from encd.collector import long_running
from encd.errors import Error, InvalidInput
from ledger.ledger import Ledger
from ledger.sequencer import SequencerServer

SETTINGS_ENV = "ENCD_SERVE_SETTINGS"  # how the settings reach the worker processes

#: Seconds a client has, by default, to send a whole request (its request line, headers and
#: body) from the moment the service is ready for it: the connection's start, or the end of
#: the answer before on a kept-alive connection.
REQUEST_TIMEOUT = 30.0


#: Seconds a stopping server waits for the answers under way (an export, say) before it
#: cancels them; event streams end at once (their clients resume with Last-Event-ID).
GRACE = 30


#: Seconds a TLS connection being closed waits for the client's close_notify (asyncio's
#: default, 30, kept a stopping service waiting that long for every idle kept-alive
#: client, a browser say, that does not read its connection).
TLS_CLOSE = 2.0


#: How long a connection refused as malformed is read (and dropped) after its answer.
LINGER = 2.0


@dataclasses.dataclass(frozen=True)
class Tls:
    """HTTPS: the server's certificate chain and its private key, PEM files (``encd serve
    --tls-cert --tls-key``).  Every server process reads them as it starts, so a worker
    started after the files were renewed serves the new ones.  TLS 1.2 at least.
    ``checked``: the files' (size, mtime) when ``load_tls`` checked them; a process that
    finds them changed checks them again, and says why it cannot serve them."""

    cert: Path
    key: Path
    checked: tuple[tuple[int, int], ...] = ()

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        return context

    def stamp(self) -> tuple[tuple[int, int], ...]:
        try:
            found = (self.cert.stat(), self.key.stat())
        except OSError:
            return ()
        return tuple((f.st_size, f.st_mtime_ns) for f in found)

    def factory(self, _config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]) -> Any:
        """For ``uvicorn.Config(ssl_context_factory=...)``, in each server process as it
        starts: files that cannot be served stop it with one line saying why (a worker
        started after they were replaced, say), not a traceback."""
        log = logging.getLogger("uvicorn.error")
        try:
            if self.stamp() != self.checked:  # replaced since encd serve checked them
                _, warnings = load_tls(self.cert, self.key)
                for warning in warnings:
                    log.warning("%s; clients will refuse it", warning)
            return self.context()
        except (InvalidInput, ssl.SSLError, OSError) as exc:
            reason = exc.message if isinstance(exc, InvalidInput) else str(exc)
            log.error("cannot serve HTTPS, this process stops: %s", reason)
            raise SystemExit(1) from None


def _tls_options(tls: Tls | None) -> dict[str, Any]:
    """uvicorn.Config's options for ``tls``: none for plain HTTP (``ssl_context_factory``
    is uvicorn 0.47's; an older one, serving plain HTTP, is not given it)."""
    return {"ssl_context_factory": tls.factory} if tls is not None else {}


def load_tls(cert: Path, key: Path, now: datetime | None = None) -> tuple[Tls, list[str]]:
    """The two files checked as a server would use them: the certificate chain parses,
    the key is an unencrypted private key, and it is the first certificate's; returns
    them and warnings (a certificate not valid now).  ``InvalidInput`` names the file
    (``field`` ``--tls-cert`` or ``--tls-key``) and what is wrong with it."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    stamp = Tls(cert, key).stamp()  # (before reading: a change after it is seen later)

    def read(path: Path, field: str) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise InvalidInput(field, f"cannot read {path}: {exc.strerror}") from None

    try:
        chain = x509.load_pem_x509_certificates(read(cert, "--tls-cert"))
    except ValueError:
        raise InvalidInput(
            "--tls-cert", f"{cert} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ) from None
    try:
        private = serialization.load_pem_private_key(read(key, "--tls-key"), password=None)
    except TypeError:
        raise InvalidInput(
            "--tls-key", f"{key} is encrypted with a password; give the key unencrypted"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidInput("--tls-key", f"{key} holds no PEM private key") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if private.public_key().public_bytes(der, public) != chain[0].public_key().public_bytes(
        der, public
    ):
        raise InvalidInput("--tls-key", f"{key} is not the key of the certificate in {cert}")
    tls = Tls(cert, key, stamp)
    try:
        tls.context()
    except ssl.SSLError as exc:  # (what cryptography reads, OpenSSL may still refuse)
        raise InvalidInput("--tls-cert", f"OpenSSL refuses {cert} with {key}: {exc}") from None
    warnings = []
    when = now or datetime.now(UTC)
    first = chain[0]
    if when < first.not_valid_before_utc:
        warnings.append(
            f"the certificate in {cert} is not valid before {first.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    if when > first.not_valid_after_utc:
        warnings.append(
            f"the certificate in {cert} expired at {first.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    return tls, warnings


class EncdH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, with a deadline for receiving each request, and a
    problem (RFC 9457) for bytes that are not one.

    uvicorn times out only a kept-alive connection idle after an answer (5 s), and only
    until its next byte: a connection that sends nothing, or half a request (a header line,
    part of a body), would be held open for ever, one file descriptor and one protocol
    object each.  Here every request must have arrived whole ``request_timeout`` seconds
    after the service was ready for it, or the connection is closed, unanswered.  Once a
    request has arrived there is no deadline: an event stream stays open as long as it
    lasts.  ``http_protocol`` gives the class for another number of seconds.

    uvicorn answers a request h11 cannot parse (a bad request line or header, two
    Content-Length or Host headers, a head over h11's limit) with a text/plain 400 saying
    only "Invalid HTTP request received."; here it is the problem every other refusal is,
    naming h11's reason, and the connection is closed after it as before.  It is closed
    so that the answer is not lost: the service sends its half of the close (FIN), then
    reads and drops what the client still sends for up to ``LINGER`` seconds.  Closing at
    once, with the rest of an oversized head unread, makes the kernel reset the connection,
    and a client that had not yet read the answer would never see it."""

    request_timeout: float = REQUEST_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None
    _draining: bool = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._draining:  # after a refusal: what is left of the request is dropped
            return
        super().data_received(data)

    def on_response_complete(self) -> None:
        self._arm()  # first: the call below may take in a next request, already whole
        super().on_response_complete()

    def handle_events(self) -> None:
        super().handle_events()
        # IDLE: no request yet, or part of its head; SEND_BODY: part of its body.  Anything
        # else: the request has arrived whole, or the connection is ending.
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()

    def send_400_response(self, msg: str) -> None:
        # (uvicorn calls this only while handling h11's RemoteProtocolError: it is the
        # exception being handled)
        refused = sys.exc_info()[1]
        reason = str(refused) if isinstance(refused, h11.RemoteProtocolError) else msg
        status = int(getattr(refused, "error_status_hint", 400))
        name, detail = {
            431: ("too-large", f"the request line and headers are over {MAX_HEAD} bytes"),
            501: ("not-implemented", f"this service does not implement it: {reason}"),
        }.get(status, ("invalid-input", f"not a well-formed HTTP/1.1 request: {reason}"))
        body = json.dumps(
            {
                "type": f"urn:encd:problem:{name}",
                "title": TITLES[name],
                "status": status,
                "detail": detail,
            }
        ).encode()
        headers = [
            (b"content-type", PROBLEM_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self._linger()

    def _linger(self) -> None:
        """Close after an answer the client may not have read yet (see the class)."""
        self._disarm()
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self._draining = True
        self.transport.write_eof()
        self.loop.call_later(LINGER, self.transport.close)  # (a no-op once it is closed)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            # (an app waiting for the rest of a body hears the client disconnect)
            self.transport.close()


def http_protocol(request_timeout: float) -> type[EncdH11Protocol]:
    """``EncdH11Protocol`` with a deadline of ``request_timeout`` seconds."""
    if request_timeout == EncdH11Protocol.request_timeout:
        return EncdH11Protocol
    return type("EncdH11Protocol", (EncdH11Protocol,), {"request_timeout": request_timeout})


def serve(
    settings: Settings,
    host: str,
    port: int,
    workers: int = 1,
    log_level: str = "info",
    request_timeout: float = REQUEST_TIMEOUT,
    service: Service | None = None,
    tls: Tls | None = None,
) -> None:
    """Serve until interrupted (``encd serve``), in ``workers`` processes; a connection that
    has not sent a whole request ``request_timeout`` seconds after the service was ready for
    one is closed (``EncdH11Protocol``); with ``tls``, over HTTPS.  ``WorkerFailed`` says why the service could not
    start: the ledger cannot be opened, the port cannot be listened on, a worker died."""
    prepare(settings, service)
    if workers <= 1:
        serve_app(create_app(settings), host, port, log_level, request_timeout, tls=tls)
        return
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
            request_timeout=request_timeout,
            tls=tls,
        )


def serve_app(
    app: FastAPI,
    host: str,
    port: int,
    log_level: str = "info",
    request_timeout: float = REQUEST_TIMEOUT,
    pages: bool = True,
    tls: Tls | None = None,
) -> None:
    """Serve ``app`` in this process until interrupted; ``WorkerFailed`` if it cannot start.
    ``pages``: it serves encd's web pages, and says where once it listens.  ``tls``: over
    HTTPS."""
    try:
        listener = _socket(host, port)
        listener.listen(2048)
    except OSError as exc:
        raise WorkerFailed(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    config = uvicorn.Config(
        app,
        log_level=log_level,
        http=http_protocol(request_timeout),
        lifespan="on",
        timeout_graceful_shutdown=GRACE,
        **_tls_options(tls),
    )
    if tls is not None:  # (uvicorn's create_server leaves both to asyncio's defaults)
        setattr(asyncio_constants, "SSL_SHUTDOWN_TIMEOUT", TLS_CLOSE)  # noqa: B010
        setattr(asyncio_constants, "SSL_HANDSHAKE_TIMEOUT", request_timeout)  # noqa: B010
    server = _SaysWhere(config)
    server.pages = pages
    with listener:
        server.run(sockets=[listener])
    if not server.started:  # its lifespan failed: uvicorn has logged why
        raise WorkerFailed("the service did not start (its output above says why)")


def _say_pages(scheme: str, shown: str, port: int) -> None:
    _say(f"web pages: {scheme}://{shown}:{port}/ (the log, checking a title, signing an event)")


class Server(uvicorn.Server):
    """uvicorn's server, which ends the open event streams as it begins to stop (uvicorn
    waits for every answer under way to end, and a stream's never would)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        Stopping.here().stop()
        await super().shutdown(sockets)


class _SaysWhere(Server):
    """A uvicorn server given its listening socket, which says where it listens once it
    has started (uvicorn says so only for the sockets it opens itself)."""

    pages = True  # and where encd's web pages are (a witness has none)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and sockets:
            host, port = sockets[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            scheme = "https" if self.config.is_ssl else "http"
            _say(f"running on {scheme}://{shown}:{port} (CTRL+C to stop)")
            if self.pages:
                _say_pages(scheme, shown, port)


def run_workers(
    factory: str,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    first: tuple[Callable[..., None], tuple[Any, ...]] | None = None,
    request_timeout: float = REQUEST_TIMEOUT,
    tls: Tls | None = None,
) -> None:
    """Serve the app ``factory`` ("module:function") in ``workers`` processes until SIGINT or
    SIGTERM, after starting ``first`` (a function and its arguments: the sequencer) in a
    process of its own; ``first`` is also given, last, a socket that reads end-of-file
    when this process is gone.  A process that dies is started again, unless it dies within
    ``WORKER_MIN_LIFE`` seconds of the service's start (it cannot start: the store is
    unreachable, say): then every process is stopped and ``WorkerFailed`` raised.  A
    replacement that dies so is tried again after 2, 4, ... up to 30 seconds.  On SIGINT
    or SIGTERM the workers are stopped first, then ``first``.

    This process listens and accepts; each connection it accepts goes, over a Unix socket
    (SCM_RIGHTS), to the worker holding the fewest open connections (``Dispatcher``).
    (The kernel's ways of spreading connections leave workers uneven: one socket shared
    by the workers gives a burst of connections to whichever wakes first, and
    SO_REUSEPORT hashes them, 12 against 20 of 32 in a benchmark; a keep-alive
    connection then stays on the busier worker.)  The socket sets TCP_NODELAY: a response
    written in two pieces (head, then body) must not wait for the client's delayed ACK.
    """
    context = multiprocessing.get_context("spawn")
    # The signals that asked to stop.  A plain list, not a threading.Event: the handler
    # runs on the main thread, which may hold the Event's lock inside its own wait(); an
    # Event.set() there never returned, and the service ignored every SIGTERM after.
    stopping: list[int] = []
    # connections handed to workers and not yet taken count against this user's open
    # files (a non-root user): the soft limit is raised to the hard one for a burst
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    try:
        listener = _socket(host, port)
        listener.listen(2048)
    except OSError as exc:
        raise WorkerFailed(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    port = listener.getsockname()[1]
    dispatcher = Dispatcher(listener, workers)
    lifelines: list[socket.socket] = []  # ``first``'s: it stops when this process is gone

    def start(i: int, again: bool) -> tuple[multiprocessing.process.BaseProcess, float]:
        """Process ``i``: ``first`` if there is one, then the workers, each with its end of
        a new channel to the dispatcher; ``again`` when it replaces one that died."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if first is not None and i == 0:
            target, args = first[0], (*first[1], theirs)
        else:
            target, args = _worker, (factory, theirs, log_level, request_timeout, tls)
        process = context.Process(target=target, args=args, name="encd-worker")
        try:
            process.start()
        finally:
            theirs.close()
        if target is _worker:
            dispatcher.attach(i - (first is not None), mine, ready=not again)
        else:
            lifelines.append(mine)
        return process, time.monotonic()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: list[tuple[multiprocessing.process.BaseProcess, float]] = []
    replaced: set[int] = set()  # the processes that are replacements, not first starts
    quick: dict[int, int] = {}  # replacements that died as they started, in a row
    due: dict[int, float] = {}  # when each such one is started again
    failed = ""
    try:
        procs = [start(i, again=False) for i in range(workers + (first is not None))]
        dispatcher.start()
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if tls else "http"
        _say(f"running on {scheme}://{shown}:{port} in {workers} worker processes")
        _say_pages(scheme, shown, port)
        while not failed and not stopping:
            time.sleep(0.5)  # (a signal's handler runs at once; the sleep then goes on)
            if stopping:
                break
            now = time.monotonic()
            for i, (proc, started) in enumerate(procs):
                if proc.is_alive() or stopping:
                    continue
                if i in due:
                    if now >= due[i]:
                        del due[i]
                        procs[i] = start(i, again=True)
                    continue
                if now - started >= WORKER_MIN_LIFE:
                    quick.pop(i, None)
                elif i not in replaced:  # the first start: it cannot start, say why
                    failed = (
                        f"process {proc.pid} exited (code {proc.exitcode}) as it started"
                        " (its own output above says why)"
                    )
                    break
                else:  # a replacement that cannot start yet (the store is down, say)
                    quick[i] = quick.get(i, 0) + 1
                    wait = min(RESTART_WAIT_MAX, 2.0 ** quick[i])
                    _say(
                        f"process {proc.pid} exited (code {proc.exitcode}) as it started: "
                        f"starting another in {wait:g} s"
                    )
                    due[i] = now + wait
                    continue
                _say(f"process {proc.pid} exited (code {proc.exitcode}): starting another")
                replaced.add(i)
                procs[i] = start(i, again=True)
    finally:
        dispatcher.close()  # no new connections from here on
        # The workers first, which finish the requests they hold (their submissions need the
        # sequencer), then the sequencer, which ignores SIGINT (a Ctrl-C reaches every process).
        behind = procs[:1] if first is not None else []
        _stop([proc for proc, _ in procs[len(behind) :]])
        for lifeline in lifelines:
            lifeline.close()
        _stop([proc for proc, _ in behind])
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed:
        raise WorkerFailed(failed)


def _stop(procs: list[multiprocessing.process.BaseProcess]) -> None:
    """SIGTERM to each process still running, then wait for them all (``GRACE`` and 10 s,
    then SIGKILL)."""
    for proc in procs:
        if proc.is_alive():
            os.kill(proc.pid or 0, signal.SIGTERM)
    deadline = time.monotonic() + GRACE + 10
    for proc in procs:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
        if proc.is_alive():  # pragma: no cover - a process that does not stop
            proc.kill()
            proc.join()


WORKER_MIN_LIFE = 5.0  # seconds
RESTART_WAIT_MAX = 30.0  # seconds between tries to start a replacement that cannot start


class WorkerFailed(RuntimeError):
    """A worker of ``run_workers`` could not start; ``refused`` when the ledger is not the
    data directory's (its ``encd`` command exits 2, as for any other refused data dir)."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


READY, CLOSED = b"R", b"C"  # a worker's messages to the dispatcher
ACCEPT_RETRY = 0.1  # seconds the dispatcher waits when the system has no descriptor to give
WAITING_RETRY = 0.01  # seconds between tries to hand a waiting connection to a worker


class Dispatcher:
    """Accepts connections on the listening socket, in a thread, and hands each to the
    worker that holds the fewest open connections (the earliest of those tied).

    A worker's channel is a Unix SOCK_SEQPACKET socket: the dispatcher sends one message
    a connection, a byte carrying the connection's descriptor (SCM_RIGHTS); the worker
    sends ``READY`` once it serves, then ``CLOSED`` each time a connection it was handed
    closes.  A worker that replaces one that died gets connections only once it is
    ready (or when no other can take them): its app takes a second or two to load.  The
    first workers get their share as the service starts, ready or not: a keep-alive
    connection opened then stays where it goes.  A worker whose channel fails or closes
    (it died) is given nothing until ``attach`` gives it a new one.

    A channel's queue is bounded (by its socket's buffer: ~280 connections here): in a
    burst of connections every worker may be behind at once.  The connection then waits here,
    and no more is accepted (they wait in the listening socket's backlog) until a channel
    can take it again; closing it instead reset real clients in a burst of idle ones.
    """

    def __init__(self, listener: socket.socket, workers: int) -> None:
        listener.setblocking(False)
        self.listener = listener
        self.channels: list[socket.socket | None] = [None] * workers
        self.held = [0] * workers  # connections handed to each worker and not yet closed
        self.ready = [False] * workers
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, -1)
        self._attached: list[tuple[int, socket.socket, bool]] = []  # from other threads
        self._waiting: socket.socket | None = None  # accepted, not yet handed (one at most)
        self._lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="encd-dispatch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def attach(self, worker: int, channel: socket.socket, *, ready: bool) -> None:
        """Worker ``worker`` (re)started with ``channel``: it holds no connection yet, and
        is given them before it says it is ready if ``ready``."""
        channel.setblocking(False)
        with self._lock:
            self._attached.append((worker, channel, ready))
        self._wake_w.send(b"\0")

    def close(self) -> None:
        """Stop accepting and close every socket (connections handed out stay open)."""
        self._closing = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for channel in self.channels:
            if channel is not None:
                channel.close()
        for _, channel, _ in self._attached:
            channel.close()
        if self._waiting is not None:
            self._waiting.close()
        self._selector.close()
        self.listener.close()
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        while not self._closing:
            # while a connection waits, every channel is tried again at short intervals
            # (a channel may refuse a descriptor while it looks writable: ETOOMANYREFS)
            events = self._selector.select(None if self._waiting is None else WAITING_RETRY)
            for key, _ in events:
                if key.data is None:
                    self._accept()
                elif key.data == -1:
                    self._wake_r.recv(4096)
                    self._take_attached()
                elif self.channels[key.data] is key.fileobj:  # (not detached meanwhile)
                    self._hear(key.data)
            self._hand_waiting()

    def _take_attached(self) -> None:
        with self._lock:
            attached, self._attached = self._attached, []
        for worker, channel, ready in attached:
            self._detach(worker)
            self.channels[worker], self.ready[worker] = channel, ready
            self._selector.register(channel, selectors.EVENT_READ, worker)

    def _accept(self) -> None:
        while self._waiting is None:
            try:
                connection, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    time.sleep(ACCEPT_RETRY)  # out of descriptors: accepting at once would spin
                    return
                continue  # ECONNABORTED and the like: that connection is lost, not the others
            if self._hand(connection):
                connection.close()  # (the worker holds its own descriptor now)
            else:  # kept until a channel has room; no more is accepted until then
                self._waiting = connection
                self._selector.unregister(self.listener)

    def _hand_waiting(self) -> None:
        if self._waiting is None or not self._hand(self._waiting):
            return
        self._waiting.close()
        self._waiting = None
        self._selector.register(self.listener, selectors.EVENT_READ, None)

    def _hand(self, connection: socket.socket) -> bool:
        """Hand ``connection`` to the worker holding fewest; False if none can take it now."""
        order = sorted(
            (not self.ready[worker], held, worker)
            for worker, held in enumerate(self.held)
            if self.channels[worker] is not None
        )
        for _, _, worker in order:
            channel = self.channels[worker]
            assert channel is not None
            try:
                socket.send_fds(channel, [b"\0"], [connection.fileno()], socket.MSG_DONTWAIT)
            except BlockingIOError:  # this worker is behind: try the next
                continue
            except OSError as exc:
                if exc.errno in (errno.ETOOMANYREFS, errno.ENOBUFS, errno.ENOMEM):
                    # descriptors in flight over the user's limit, or no memory: behind,
                    # not gone (detaching it would stop a healthy worker)
                    continue
                self._detach(worker)  # gone
                continue
            self.held[worker] += 1
            return True
        return False

    def _hear(self, worker: int) -> None:
        channel = self.channels[worker]
        assert channel is not None
        while True:
            try:
                message = channel.recv(16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message = b""
            if not message:  # the worker is gone
                self._detach(worker)
                return
            if message == READY:
                self.ready[worker] = True
            else:
                self.held[worker] = max(0, self.held[worker] - 1)

    def _detach(self, worker: int) -> None:
        channel, self.channels[worker] = self.channels[worker], None
        self.held[worker] = 0
        self.ready[worker] = False
        if channel is not None:
            self._selector.unregister(channel)
            channel.close()


def _say(line: str) -> None:
    print(f"encd: {line}", file=sys.stderr, flush=True)


def _socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), with TCP_NODELAY (inherited by the sockets it
    accepts).  Not SO_REUSEPORT: a port another server listens on is refused."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    family, kind, proto, _, address = info[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _sequencer(settings_json: str, lifeline: socket.socket) -> None:  # pragma: no cover
    """The sequencer process of ``serve`` with workers: appends what the workers hand it,
    until SIGTERM or until ``lifeline`` closes (the process that started it is gone)."""
    settings = Settings.from_json(json.loads(settings_json))
    assert settings.sequencer is not None
    # its witness pusher logs as the workers do (uvicorn's logging, which uvicorn sets up
    # in the processes it runs, not in this one)
    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)
    service = load_or_init(settings.data_dir, settings.origin)
    with Ledger(settings.url, service.log_key, clock=settings.clock) as ledger:
        server = SequencerServer(ledger, settings.sequencer)
        pusher = witness_pusher(settings, ledger)
        keeper = MarkKeeper(ledger, settings.data_dir)

        def stop(signum: int, _frame: object) -> None:
            # on a thread of its own: the handler runs on the main thread, which may hold
            # the server's lock (serve_forever), and close() takes it
            threading.Thread(target=server.close, name="encd-stop", daemon=True).start()

        def watch() -> None:
            with contextlib.suppress(OSError):
                while lifeline.recv(16):
                    pass
            server.close()

        signal.signal(signal.SIGTERM, stop)
        # a Ctrl-C reaches every process of the group: the workers stop first, finishing
        # what they hold, and then the process that started them sends SIGTERM here
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        threading.Thread(target=watch, name="encd-lifeline", daemon=True).start()
        try:
            with long_running():  # its document cache, out of the collector's way
                server.serve_forever()
        finally:
            if pusher is not None:
                pusher.close()
            keeper.close()


def _worker(
    factory: str, channel: socket.socket, log_level: str, request_timeout: float, tls: Tls | None
) -> None:  # pragma: no cover
    """One worker process (run_workers): serves the connections the dispatcher hands it."""
    config = uvicorn.Config(
        factory,
        factory=True,
        log_level=log_level,
        http=http_protocol(request_timeout),
        timeout_graceful_shutdown=GRACE,
        **_tls_options(tls),
    )
    HandedServer(config, channel).run()


class HandedServer(Server):
    """A uvicorn server with no listening socket of its own: it serves the connections that
    arrive on ``channel`` (see ``Dispatcher``), and says on it when each one closes.

    It stops, as on SIGTERM, when the channel closes (the process that listens is gone).
    """

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        channel.setblocking(False)
        self.channel = channel

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app's lifespan, and no listener
        if not self.started:  # pragma: no cover - uvicorn exits when the lifespan fails
            return
        loop = asyncio.get_running_loop()
        config, state, channel = self.config, self.server_state, self.channel
        base: Any = config.http_protocol_class
        timeout = getattr(base, "request_timeout", REQUEST_TIMEOUT)

        class Counted(base):  # type: ignore[misc]
            def connection_lost(self, exc: Exception | None) -> None:
                try:
                    super().connection_lost(exc)
                finally:
                    with contextlib.suppress(OSError):
                        channel.send(CLOSED)

        def protocol() -> asyncio.Protocol:
            made: asyncio.Protocol = Counted(
                config=config, server_state=state, app_state=self.lifespan.state
            )
            return made

        async def connect(sock: socket.socket) -> None:
            try:
                if config.ssl is None:
                    await loop.connect_accepted_socket(protocol, sock)
                else:  # (the handshake gets the time a request does)
                    await loop.connect_accepted_socket(
                        protocol,
                        sock,
                        ssl=config.ssl,
                        ssl_handshake_timeout=timeout,
                        ssl_shutdown_timeout=TLS_CLOSE,
                    )
            except OSError:  # the client left before it was served
                sock.close()
                with contextlib.suppress(OSError):
                    channel.send(CLOSED)

        connecting: set[asyncio.Task[None]] = set()

        def handed() -> None:
            while True:
                try:
                    message, fds, _, _ = socket.recv_fds(channel, 16, 16)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    message, fds = b"", []
                if not message:  # the listening process is gone: stop
                    loop.remove_reader(channel)
                    self.should_exit = True
                    return
                for fd in fds:
                    task = loop.create_task(connect(socket.socket(fileno=fd)))
                    connecting.add(task)
                    task.add_done_callback(connecting.discard)

        loop.add_reader(channel, handed)
        with contextlib.suppress(OSError):  # gone: handed() hears it and stops
            channel.send(READY)
        logging.getLogger("uvicorn.error").info(
            "Worker %d ready for the connections encd serve hands it", os.getpid()
        )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.channel)
        await super().shutdown(sockets)
        self.channel.close()


def prepare(settings: Settings, service: Service | None = None) -> None:
    """Keys, schema and the genesis registration, once, before several workers start (they
    would otherwise race to create them); ``WorkerFailed`` if the ledger cannot be opened or
    is not this data directory's.  A data directory ``service`` has just made (its
    ``created``) is taken away again if its ledger cannot be opened, interruption included,
    so a retry starts afresh; once the store holds its log key, the keys are kept."""
    try:
        service = service or load_or_init(settings.data_dir, settings.origin)
        with first_start(settings.data_dir):  # one start at a time makes the genesis
            if not service.created:  # (as the directory is now, after any other start)
                service = load_or_init(settings.data_dir, settings.origin)
            _open_or_undo(settings, service)
    except Exception as exc:  # before any worker: say why, without a traceback
        refused = isinstance(exc, InvalidInput) and exc.field == "ledger"
        if refused:
            reason = exc.reason  # type: ignore[attr-defined]
        else:
            reason = exc.message if isinstance(exc, Error) else str(getattr(exc, "orig", exc))
        shown = settings.redacted_url()
        with contextlib.suppress(Exception):  # (a URL it cannot read is not repeated)
            reason = reason.replace(settings.url, shown)
        verb = "refusing" if refused else "cannot open"
        raise WorkerFailed(f"{verb} the ledger {shown}: {reason.strip()}", refused) from None


def _open_or_undo(settings: Settings, service: Service) -> None:
    missing = missing_ledger(settings.url, service)
    if missing:
        raise InvalidInput("ledger", missing)
    made = new_sqlite_files(settings.url) if service.created else []
    bound = False  # the store holds the log key: a new key would never open it again
    try:
        with Ledger(settings.url, service.log_key, clock=settings.clock) as ledger:
            bound = True
            ensure_genesis(ledger, service, settings.clock())
    except BaseException:
        if service.created and not bound:
            for path in made:
                path.unlink(missing_ok=True)
            undo(service)
        raise


def worker_app() -> FastAPI:
    """The app of one worker process of ``serve`` (uvicorn calls this in each)."""
    return create_app(Settings.from_json(json.loads(os.environ[SETTINGS_ENV])))


@contextmanager
def running(
    settings: Settings, host: str = "127.0.0.1", request_timeout: float = REQUEST_TIMEOUT
) -> Iterator[str]:
    """Serve ``create_app(settings)`` on ``host`` at a free port; yields the base URL."""
    with running_app(create_app(settings), host, request_timeout) as url:
        yield url


@contextmanager
def running_app(
    app: Any, host: str = "127.0.0.1", request_timeout: float = REQUEST_TIMEOUT
) -> Iterator[str]:
    """Serve any ASGI ``app`` on ``host`` at a free port in a thread; yields the base URL."""
    config = uvicorn.Config(
        app,
        host=host,
        port=0,
        log_level="warning",
        lifespan="on",
        http=http_protocol(request_timeout),
        timeout_graceful_shutdown=GRACE,
    )
    server = Server(config)
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
