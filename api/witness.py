"""A witness service (c2sp.org/tlog-witness) that a bank or any other party runs.

``encd witness init <dir>`` creates::

    <dir>/              mode 0700
        witness.key     the witness's Ed25519 cosigning key (PKCS#8 PEM, 0600)
        witness.conf    its name, then one ``log <verifier key>`` line per log it witnesses
        witness.db      per log, the size and root last cosigned (ledger.witnessdb)

``encd witness serve <dir>`` answers::

    POST /add-checkpoint    a log's new checkpoint and consistency proof -> a cosignature
    GET  /                  text/plain: the witness's cosigner key and the logs it witnesses

The add-checkpoint answers are the spec's: 200 with the cosignature line,
409 ``text/x.tlog.size`` with the size last cosigned, and 400, 403, 404 and
422 as RFC 9457 problems naming the fault (see ``encd.witness``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from api.app import BodyLimit
from api.head import check_head
from api.problems import handle_disconnect, handle_error, handle_http, handle_validation, problem
from encd.checkpoint import CosignerKey
from encd.errors import Error, InvalidInput
from encd.keys import PublicKey, SigningKey, check_key_name
from encd.validation import show
from encd.witness import MAX_BODY, SIZE_MEDIA_TYPE, Refused, Witness
from ledger.witnessdb import WitnessDB

KEY, CONF, DB = "witness.key", "witness.conf", "witness.db"
_PROBLEMS = {
    400: "invalid-input",
    403: "forbidden",
    404: "not-found",
    409: "fork",  # the same size with another root (a stale old size is text/x.tlog.size)
    422: "verification-failed",
}


@dataclass(frozen=True)
class WitnessDir:
    """A witness's directory: its name, key and the logs it witnesses."""

    path: Path
    key: SigningKey
    logs: tuple[PublicKey, ...]

    @property
    def cosigner(self) -> CosignerKey:
        return CosignerKey.of(self.key)

    def open_state(self) -> WitnessDB:
        """The witness's state (what it cosigned last, per log); InvalidInput if the file
        is missing or is not one (``encd witness serve`` checks before it listens)."""
        return WitnessDB(self.path / DB)

    def describe(self) -> str:
        """The witness as an auditor's policy and a log's witnesses file name it."""
        lines = [f"witness {self.cosigner.vkey}"]
        lines += [f"log {log.vkey}" for log in self.logs]
        return "".join(line + "\n" for line in lines)


def init_witness(path: Path, name: str, logs: list[str]) -> WitnessDir:
    """Create the witness directory ``path`` (which must not hold a witness already)."""
    check_key_name(name, "name")
    if "://" in name:
        raise InvalidInput(
            "name", f"a witness's name is a URL without its scheme, got {show(name)}"
        )
    keys = _logs([(f"--log {i + 1}", vkey) for i, vkey in enumerate(logs)])
    if not keys:
        raise InvalidInput("log", "name at least one log to witness (--log <log verifier key>)")
    try:
        held = [name for name in (CONF, KEY, DB) if (path / name).exists()]
        made = not path.exists()
    except OSError as exc:  # a directory on the way that may not be searched, say
        raise InvalidInput("dir", f"cannot look at {path}: {exc.strerror}") from None
    if CONF in held:
        raise InvalidInput("dir", f"{path} already holds a witness; `encd witness serve {path}`")
    if held:
        raise InvalidInput(
            "dir",
            f"{path} holds a {KEY} or a {DB} but no {CONF}: an init that did not finish, or "
            "a witness whose configuration was lost; move them away (never reuse the key of "
            "a witness that lost its state) and init again",
        )
    if path.exists() and not path.is_dir():
        raise InvalidInput("dir", f"{path} is not a directory")
    key = SigningKey.generate(name)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if made:  # (one that exists keeps its mode, as encd init's data directory does)
            os.chmod(path, 0o700)
        key.save(path / KEY)
        WitnessDB(path / DB, create=True).close()
        partial = path / (CONF + ".partial")
        partial.write_text(f"name {name}\n" + "".join(f"log {k.vkey}\n" for k in keys))
        os.replace(partial, path / CONF)
    except OSError as exc:
        raise InvalidInput("dir", f"cannot create {exc.filename or path}: {exc.strerror}") from None
    return WitnessDir(path, key, tuple(keys))


def load_witness(path: Path) -> WitnessDir:
    """Open the witness directory ``path``; InvalidInput names the file and the fault."""
    conf = path / CONF
    try:
        text = conf.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(
            "dir", f"{path} holds no {CONF}: create it with `encd witness init`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise InvalidInput(CONF, f"cannot read {conf}: {reason}") from None
    name = ""
    logs: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        word, _, value = line.strip().partition(" ")
        where = f"{conf} line {number}"
        if not word or word.startswith("#"):
            continue
        if word == "name" and not name:
            name = check_key_name(value.strip(), where)
        elif word == "log":
            logs.append((where, value.strip()))
        else:
            raise InvalidInput(
                where, f"expected 'name <witness name>' once, or 'log <vkey>', got {show(word)}"
            )
    if not name:
        raise InvalidInput(
            CONF, f"{conf} names no witness: its first line is 'name <witness name>'"
        )
    keys = _logs(logs)
    if not keys:
        raise InvalidInput(CONF, f"{conf} names no log to witness: add 'log <log verifier key>'")
    try:
        key = SigningKey.load(name, path / KEY)
    except OSError as exc:
        raise InvalidInput(KEY, f"cannot read {path / KEY}: {exc.strerror}") from None
    except InvalidInput as exc:
        raise InvalidInput(KEY, f"{path / KEY}: {exc.reason}") from None
    return WitnessDir(path, key, tuple(keys))


def _logs(given: list[tuple[str, str]]) -> list[PublicKey]:
    keys: dict[str, PublicKey] = {}
    for where, vkey in given:
        try:
            key = PublicKey.from_vkey(vkey)
        except InvalidInput as exc:
            raise InvalidInput(where, f"not a log verifier key: {exc.message}") from None
        if key.name in keys:
            raise InvalidInput(where, f"a second key for the log {key.name!r}: one key per log")
        keys[key.name] = key
    return list(keys.values())


class WitnessApp(FastAPI):
    """FastAPI, with the request line and head checked first as the service checks them
    (api.head: 505 for another HTTP version, 431, the absolute form, ``OPTIONS *``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            checked = check_head(scope)
            if isinstance(checked, Response):
                await checked(scope, receive, send)
                return
            scope = checked
        await super().__call__(scope, receive, send)


def create_witness_app(witness_dir: WitnessDir) -> FastAPI:
    """The witness's HTTP service over its directory's key, logs and state."""
    state: dict[str, Witness] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = witness_dir.open_state()
        state["witness"] = Witness(witness_dir.key, witness_dir.logs, db)
        try:
            yield
        finally:
            db.close()

    app = WitnessApp(title="encd witness", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_exception_handler(Error, handle_error)
    app.add_exception_handler(RequestValidationError, handle_validation)
    app.add_exception_handler(StarletteHTTPException, handle_http)
    app.add_exception_handler(ClientDisconnect, handle_disconnect)
    app.add_exception_handler(Exception, handle_error)
    app.add_middleware(BodyLimit, limit=MAX_BODY)

    @app.get("/", response_class=PlainTextResponse)
    def describe() -> str:
        return witness_dir.describe()

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> Response:
        body = await request.body()
        try:
            line = await run_in_threadpool(state["witness"].add_checkpoint, body)
        except Refused as exc:
            if exc.status == 409 and exc.size is not None:  # this media type, no charset
                return Response(
                    f"{exc.size}\n".encode(),
                    status_code=409,
                    headers={"content-type": SIZE_MEDIA_TYPE, "x-encd-detail": exc.message},
                )
            return problem(exc.status, _PROBLEMS[exc.status], exc.message, request)
        return Response(line, media_type="text/plain; charset=utf-8")

    return app


__all__ = ["WitnessDir", "create_witness_app", "init_witness", "load_witness"]
