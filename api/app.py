"""The FastAPI application: ``create_app(settings)`` builds it, ``encd serve`` runs it."""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import SIGNED_METHOD
from api.head import check_head
from api.lookups import Lookups, StoredParties
from api.metrics import Metrics
from api.problems import (
    from_error,
    handle_disconnect,
    handle_error,
    handle_http,
    handle_store_down,
    handle_validation,
    problem,
    went_away,
)
from api.settings import Settings
from api.setup import MarkKeeper, Service, ensure_genesis, load_or_init, missing_ledger
from api.submitter import Submitter
from api.witnessing import WitnessPusher, parse_witnesses
from encd.collector import long_running
from encd.errors import Error, InvalidInput
from encd.events import Event
from ledger.ledger import Ledger
from ledger.nonces import NonceStore
from ledger.sequencer import RemoteSequencer

VERSION = "0.1.0"


class Stopping:
    """Whether the server on this event loop has begun to stop, for the answers that would
    otherwise never end (event streams): ``here()`` is the loop's; each such answer adds
    the event it waits on to ``wakes``, and the server calls ``stop()`` as it stops."""

    _loops: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Stopping]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        self.stopped = False
        self.wakes: set[asyncio.Event] = set()

    @classmethod
    def here(cls) -> Stopping:
        """The running event loop's."""
        return cls._loops.setdefault(asyncio.get_running_loop(), cls())

    def stop(self) -> None:
        self.stopped = True
        for wake in list(self.wakes):
            wake.set()


@dataclass
class State:
    """What every request handler needs, on ``app.state.encd``."""

    settings: Settings
    service: Service
    ledger: Ledger
    nonces: NonceStore
    metrics: Metrics
    lookups: Lookups
    submitter: Submitter
    waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=set)

    def notify(self, appended: list[tuple[int, Event]]) -> None:
        """Wake every open event stream (called from the sequencer thread)."""
        for loop, event in list(self.waiters):
            loop.call_soon_threadsafe(event.set)

    def wake(self, _size: int) -> None:
        """Wake every open event stream: the log grew to ``_size`` (a sequencer process's
        notice, whichever worker submitted the events)."""
        self.notify([])


class StoreWatch:
    """Wakes this process's event streams when the store's log grows by another process's
    appends: while a stream is open, reads the log size every ``interval`` seconds.  The
    workers of ``encd serve --workers`` hear of each other's batches at once from their
    sequencer process (``State.wake``); this is for any other process sharing the store,
    and for a worker whose connection to the sequencer is being opened again."""

    def __init__(self, state: State, interval: float) -> None:
        self.state = state
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="encd-store-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seen: int | None = None
        while not self._stop.wait(self.interval):
            if not self.state.waiters:
                seen = None  # nobody listens: read afresh when somebody does
                continue
            try:
                size = self.state.ledger.size()
            except Exception:  # the store is away: the streams' own polls report it
                continue
            if seen is not None and size > seen:
                self.state.notify([])
            seen = size

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class BodyLimit:
    """413 for a request body over ``limit`` bytes, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _declared_over(scope, self.limit):
            await _too_large(self.limit)(scope, receive, send)
            return
        try:
            await self.app(scope, _limited(receive, self.limit), send)
        except _TooLarge:
            await _too_large(self.limit)(scope, receive, send)


class _TooLarge(Exception):
    pass


def _declared_over(scope: Scope, limit: int) -> bool:
    """Whether the request declares a body over ``limit`` bytes (or a Content-Length that
    is no number)."""
    declared = dict(scope["headers"]).get(b"content-length")
    return declared is not None and (not declared.isdigit() or int(declared) > limit)


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive``, raising _TooLarge once the body it has given passes ``limit`` bytes."""
    seen = 0

    async def limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge
        return message

    return limited


class EncdApp(FastAPI):
    """FastAPI, with its two busiest routes, ``POST /v1/events`` and ``GET
    /v1/documents/{doc_id}/title``, answered before the middleware and routing layers.

    Under load those layers (Starlette's error and exception middleware, FastAPI's own,
    the router's matching of ~19 route patterns, the response's send wrappers) cost the
    event loop about as much as a submission itself, and ~40% of a title request's time
    on it.  The route's own function does the work either way; here it gets the body
    limit (413) and the problem responses the layers would give it, and a failure no
    rule foresaw is logged and answered 500 as ``ServerErrorMiddleware`` would.  Both
    routes stay registered for the OpenAPI document, and any other method or path
    (a trailing slash, an empty or multi-segment document id) takes the layers.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        checked = check_head(scope)  # the request line and head (api.head)
        if isinstance(checked, Response):
            await checked(scope, receive, send)
            return
        scope = checked
        twice = _repeated(scope["query_string"]) if scope["query_string"] else None
        if twice is not None:
            error = InvalidInput(
                twice, "given more than once: this query parameter takes one value"
            )
            await from_error(error, Request(scope))(scope, receive, send)
            return
        if scope["method"] == "HEAD" and scope["path"] != STREAM:
            # HEAD is GET without the body (RFC 9110 §9.3.2): routed as GET, and uvicorn,
            # which saw HEAD, sends no body.  The signature covers the method sent.
            scope = {**scope, "method": "GET", SIGNED_METHOD: "HEAD"}
        route = _direct_route(scope)
        if route is not None:
            await self._answer(route, scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def _answer(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        state: State = self.state.encd
        limit = state.settings.max_body
        response: Response
        if _declared_over(scope, limit):
            response = _too_large(limit)
        else:
            request = Request(scope, _limited(receive, limit))
            try:
                response = await route(request)
            except _TooLarge:
                response = _too_large(limit)
            except ClientDisconnect:
                response = went_away(request)
            except Error as exc:
                response = from_error(exc, request)
            except Exception as exc:
                _log.error("Exception in ASGI application", exc_info=exc)
                response = from_error(exc, request)
        await response(scope, receive, send)


STREAM = "/v1/stream"  # a stream never ends: no HEAD for it


#: The query parameters a request may give more than once (each a value of a list).
REPEATABLE = frozenset({"witness"})


def _repeated(query: bytes) -> str | None:
    """A query parameter given twice that takes one value (``?index=1&index=2``: which one
    was meant?), decoded as the routes decode it; None if there is none."""
    names = [name for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)]
    seen: set[str] = set()
    for name in names:
        if name in seen and name not in REPEATABLE:
            return name
        seen.add(name)
    return None


Route = Callable[[Request], Awaitable[Response]]
_DOCUMENTS, _TITLE = "/v1/documents/", "/title"


def _direct_route(scope: Scope) -> Route | None:
    """The route function for a request ``EncdApp`` answers itself, None for the others."""
    from api.routes.documents import title
    from api.routes.events import submit_event

    path, method = scope["path"], scope["method"]
    if method == "POST" and path == "/v1/events":
        return submit_event
    if method == "GET" and path.startswith(_DOCUMENTS) and path.endswith(_TITLE):
        doc_id = path[len(_DOCUMENTS) : -len(_TITLE)]
        if doc_id and "/" not in doc_id:  # the route's {doc_id}: one non-empty segment
            return partial(title, doc_id)
    return None


_log = logging.getLogger("uvicorn.error")


def _too_large(limit: int) -> Response:
    return problem(413, "too-large", f"request body over {limit} bytes")


def witness_pusher(settings: Settings, ledger: Ledger) -> WitnessPusher | None:
    """The started sender of ``ledger``'s checkpoints to ``settings.witnesses``, if any."""
    if not settings.witnesses:
        return None
    witnesses = parse_witnesses("\n".join(settings.witnesses), "witnesses")
    return WitnessPusher(ledger, witnesses, interval=settings.witness_interval).start()


def create_app(settings: Settings, ledger: Ledger | None = None) -> FastAPI:
    """The service over ``settings.data_dir`` (keys) and ``settings.url`` (the ledger)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = load_or_init(settings.data_dir, settings.origin)
        missing = None if ledger else missing_ledger(settings.url, service)
        if missing:  # (before an SQLite file is made where the ledger should be)
            raise InvalidInput("ledger", missing)
        opened = ledger or Ledger(settings.url, service.log_key, clock=settings.clock)
        ensure_genesis(opened, service, settings.clock())
        nonces = NonceStore(settings.url, settings.signature_window)
        lookups = Lookups(opened)
        sequencer: Ledger | RemoteSequencer = opened
        if settings.sequencer is not None:
            sequencer = RemoteSequencer(settings.sequencer, StoredParties(lookups))
        submitter = Submitter(sequencer)
        state = State(settings, service, opened, nonces, Metrics(), lookups, submitter)
        sequencer.listeners.append(state.notify)
        sequencer.listeners.append(state.metrics.observe_batch)
        if isinstance(sequencer, RemoteSequencer):  # every batch, whichever worker's events
            sequencer.growth_listeners.append(state.wake)
            sequencer.connect_soon()
        watch = StoreWatch(state, settings.stream_watch) if settings.stream_watch > 0 else None
        # the appending process sends checkpoints to the witnesses (a sequencer process does)
        pusher = None if settings.sequencer is not None else witness_pusher(settings, opened)
        # and keeps the newest checkpoint in the data directory (see ensure_extends_mark)
        keeper = None if settings.sequencer is not None else MarkKeeper(opened, settings.data_dir)
        app.state.encd = state
        # What start-up built (the app, the models, SQLAlchemy's tables and caches) lives as
        # long as the service: out of the collector's way, so a full collection under load
        # walks only what requests made (~15 ms instead of ~100 ms, every thread stopped).
        # A request allocates a few hundred objects that die with it: a young-generation
        # pass far less often than every 700 allocations (see encd.collector).
        with long_running():
            try:
                yield
            finally:
                if pusher is not None:
                    pusher.close()
                if keeper is not None:
                    keeper.close()
                sequencer.listeners.remove(state.notify)
                sequencer.listeners.remove(state.metrics.observe_batch)
                if watch is not None:
                    watch.close()
                submitter.close()
                if isinstance(sequencer, RemoteSequencer):
                    sequencer.growth_listeners.remove(state.wake)
                    sequencer.close()
                nonces.close()
                if ledger is None:
                    opened.close()

    app = EncdApp(
        redirect_slashes=False,  # a path with a trailing slash is no path: 404, not a redirect
        title="encd",
        version=VERSION,
        summary="A ledger for electronic negotiable cargo documents, with transparency-log proofs",
        lifespan=lifespan,
    )
    app.add_exception_handler(Error, handle_error)
    app.add_exception_handler(RequestValidationError, handle_validation)
    app.add_exception_handler(StarletteHTTPException, handle_http)
    app.add_exception_handler(ClientDisconnect, handle_disconnect)
    app.add_exception_handler(OperationalError, handle_store_down)
    app.add_exception_handler(Exception, handle_error)
    app.add_middleware(BodyLimit, limit=settings.max_body)

    from api.routes import documents, events, log, parties, proposals, service, stream, web

    # Starlette tries the routes in order: submissions, the busiest, first (no paths overlap).
    for module in (events, service, parties, proposals, documents, log, stream, web):
        app.include_router(module.router)
    return app
