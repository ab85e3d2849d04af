"""Health, readiness, metrics, the OpenAPI description, and the data directory's keys."""

from __future__ import annotations

import logging
import re
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import create_engine

from api.app import create_app
from api.client import Client, ProblemError
from api.server import running
from api.settings import Settings
from api.setup import load_or_init
from encd.checkpoint import open_checkpoint
from encd.keys import PublicKey, SigningKey
from ledger.db import DirectReads
from ledger.ledger import Ledger
from tests.api.conftest import World
from tests.conftest import ROOT

MILESTONE = {
    "kind": "gate_in",
    "location": {"locode": "CNCKG", "name": "Luoqi"},
    "at": "2026-05-01T10:00:00Z",
}


def metrics(url: str) -> dict[str, float]:
    """The Prometheus text exposition, as {series: value} (comments checked, then dropped)."""
    response = httpx.get(url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values: dict[str, float] = {}
    for line in response.text.splitlines():
        if line.startswith("#"):
            assert re.fullmatch(r"# (HELP|TYPE) encd_\w+ .+", line), line
            continue
        series, value = line.rsplit(" ", 1)
        values[series] = float(value)
    return values


def test_health_and_readiness(world: World) -> None:
    health = httpx.get(world.url + "/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = httpx.get(world.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "log_size": 8}


def test_metrics(world: World, doc_id: str) -> None:
    before = metrics(world.url)
    size = world.operator.service()["log_size"]
    assert before["encd_log_size"] == size == 9
    # the registrations and the issue went through the API (the genesis event did not)
    assert before["encd_appends_total"] == size - 1
    assert before['encd_append_seconds_bucket{le="+Inf"}'] == before["encd_append_seconds_count"]
    assert before["encd_append_seconds_count"] == size - 1
    assert before["encd_batch_events_count"] >= 1
    assert before["encd_batch_events_sum"] == size - 1

    carrier = world.client("carrier")
    carrier.submit(carrier.next_event(doc_id, "milestone", MILESTONE))
    stale = carrier.next_event(doc_id, "milestone", MILESTONE)
    carrier.submit(carrier.next_event(doc_id, "milestone", dict(MILESTONE, kind="other")))
    try:
        carrier.submit(stale)
    except ProblemError as exc:
        assert exc.status == 409
    after = metrics(world.url)
    assert after["encd_log_size"] == size + 2
    assert after["encd_appends_total"] == before["encd_appends_total"] + 2
    assert after["encd_rejected_total"] == before["encd_rejected_total"] + 1
    assert after["encd_append_seconds_count"] == before["encd_append_seconds_count"] + 3
    assert after["encd_batch_events_sum"] == before["encd_batch_events_sum"] + 2
    buckets = [v for k, v in after.items() if k.startswith("encd_append_seconds_bucket")]
    assert buckets == sorted(buckets), "histogram buckets are cumulative"
    assert any(k.startswith("encd_batch_events_bucket{") for k in after)


def test_openapi_lists_every_route(world: World) -> None:
    spec = httpx.get(world.url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert spec["info"]["title"] == "encd"
    expected = {
        "/healthz": {"get"},
        "/readyz": {"get"},
        "/metrics": {"get"},
        "/v1/service": {"get"},
        "/v1/parties": {"post"},
        "/v1/parties/{party_id}": {"get"},
        "/v1/parties/{party_id}/events": {"post"},
        "/v1/events": {"post"},
        "/v1/events/{event_id}/receipt": {"get"},
        "/v1/proposals": {"get", "post"},
        "/v1/proposals/{proposal_id}": {"get"},
        "/v1/proposals/{proposal_id}/signatures": {"post"},
        "/v1/documents/{doc_id}": {"get"},
        "/v1/documents/{doc_id}/events": {"get"},
        "/v1/documents/{doc_id}/title": {"get"},
        "/v1/documents/{doc_id}/bundle": {"get"},
        "/v1/export": {"get"},
        "/log/checkpoint": {"get"},
        "/log/tile/{path}": {"get"},
        "/v1/log/inclusion": {"get"},
        "/v1/log/consistency": {"get"},
        "/v1/stream": {"get"},
    }
    assert {path: set(ops) for path, ops in spec["paths"].items()} == expected
    for path in ("/v1/events", "/v1/parties", "/v1/proposals"):
        body = spec["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        assert set(body["content"]) == {"application/vnd.encd.event"}


def test_docs_page(world: World) -> None:
    page = httpx.get(world.url + "/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "swagger" in page.text.lower() and "/openapi.json" in page.text


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_fresh_data_dir_and_restart(settings: Settings) -> None:
    data = settings.data_dir
    assert not data.exists()
    with running(settings) as url:
        first = httpx.get(url + "/v1/service").json()
        assert first["log_size"] == 1  # the operator's own registration
        assert mode(data) == 0o700
        assert mode(data / "log.key") == 0o600
        assert mode(data / "operator.key") == 0o600
        log_key = SigningKey.load(first["origin"], data / "log.key")
        operator_key = SigningKey.load(first["operator"], data / "operator.key")
        assert log_key.public.vkey == first["log_key"]
        assert operator_key.public.vkey == first["operator_key"]
        with Client(url, operator_key) as operator:
            me = operator.party(first["operator"])
            assert me["roles"] == ["operator"] and me["keys"][0]["vkey"] == first["operator_key"]
        checkpoint_before = httpx.get(url + "/log/checkpoint").content

    with running(settings) as url:  # the same data directory and database
        again = httpx.get(url + "/v1/service").json()
        assert again == first  # same log key, same operator, no second genesis event
        checkpoint = httpx.get(url + "/log/checkpoint").content
        assert checkpoint == checkpoint_before
        assert open_checkpoint(checkpoint, PublicKey.from_vkey(again["log_key"])).size == 1
        with Client(url, SigningKey.load(again["operator"], data / "operator.key")) as operator:
            assert operator.party(again["operator"])["seq"] == 0  # the operator still signs in


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` on uvicorn on loopback (conftest's ``running``, for an app built here)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_a_store_that_does_not_answer_is_503_not_500(settings: Settings, tmp_path: Path) -> None:
    service = load_or_init(settings.data_dir, settings.origin)
    ledger = Ledger(settings.url, service.log_key)
    try:
        with serving(create_app(settings, ledger)) as url:
            assert httpx.get(url + "/readyz").status_code == 200
            nowhere = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'ledger.db'}"
            working, ledger.reader = ledger.reader, create_engine(nowhere)
            direct, ledger.reads = ledger.reads, DirectReads(ledger.reader)
            try:
                for path in ("/readyz", "/v1/service", "/log/checkpoint", "/metrics"):
                    response = httpx.get(url + path)
                    assert response.status_code == 503, (path, response.text)
                    assert response.headers["content-type"] == "application/problem+json"
                    assert response.json()["type"] == "urn:encd:problem:unavailable"
            finally:
                ledger.reads.close()
                ledger.reader.dispose()
                ledger.reader, ledger.reads = working, direct
            assert httpx.get(url + "/readyz").status_code == 200
    finally:
        ledger.close()


def test_a_signed_request_while_the_store_is_down_is_503_and_keeps_its_connection(
    settings: Settings, tmp_path: Path
) -> None:
    """The party read of a signed request fails: 503 problem, one WARNING line and no
    traceback, and the client's kept-alive connection serves its next request (it was
    closed, and the next request on it reset)."""
    service = load_or_init(settings.data_dir, settings.origin)
    ledger = Ledger(settings.url, service.log_key)
    assert service.operator_key is not None
    logged: list[logging.LogRecord] = []
    log = logging.getLogger("uvicorn.error")  # (uvicorn's loggers do not reach the root's)
    keep = logging.Handler()
    keep.emit = logged.append  # type: ignore[method-assign]
    try:
        with serving(create_app(settings, ledger)) as url, Client(url, service.operator_key) as op:
            log.addHandler(keep)  # once uvicorn has set its loggers up
            assert op.party(service.operator_id)["id"] == service.operator_id
            nowhere = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'ledger.db'}"
            working, ledger.reader = ledger.reader, create_engine(nowhere)
            direct, ledger.reads = ledger.reads, DirectReads(ledger.reader)
            try:
                for _ in range(2):
                    with pytest.raises(ProblemError) as down:
                        op.party(service.operator_id)
                    assert down.value.status == 503
                    assert down.value.problem["detail"] == "the store is not answering; try again"
            finally:
                ledger.reads.close()
                ledger.reader.dispose()
                ledger.reader, ledger.reads = working, direct
            assert op.party(service.operator_id)["id"] == service.operator_id
    finally:
        ledger.close()
        log.removeHandler(keep)
    assert any("the store is not answering" in r.getMessage() for r in logged), logged
    assert not any(r.exc_info for r in logged), "a traceback was logged"


def test_the_walkthrough_in_docs_api_md_runs(settings: Settings) -> None:
    """docs/api.md §2's Python blocks, run in order against a fresh service: the newcomer's
    walkthrough stays true to the code."""
    text = (ROOT / "docs" / "api.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))
    substitutions = {
        'Path("encd-data")': f"Path({str(settings.data_dir)!r})",
        'Path("tests/data/corridor-document.json")': f"Path({str(ROOT / 'tests/data/corridor-document.json')!r})",
    }
    with running(settings) as url:
        substitutions['"http://127.0.0.1:8080"'] = repr(url)
        for placeholder, actual in substitutions.items():
            assert placeholder in code, placeholder
            code = code.replace(placeholder, actual)
        namespace: dict[str, object] = {"__name__": "docs_api_md"}
        try:
            exec(compile(code, "docs/api.md", "exec"), namespace)
        finally:
            for value in namespace.values():
                if isinstance(value, Client):
                    value.close()
        assert namespace["answer"]["holder"] == namespace["EXPORTER"]  # type: ignore[index]


def test_a_second_registration_is_refused_by_the_party_rules(world: World) -> None:
    """The refusal's title names the rules it broke: a party's, not a title's."""
    from datetime import timedelta

    from encd.events import make_event
    from tests.kit import T0

    carrier = world.actors["carrier"]
    again = make_event(
        [world.operator.key],
        type="register",
        party=carrier.id,
        seq=0,
        prev=None,
        time=T0 + timedelta(seconds=1),  # not the same bytes: not an idempotent retry
        body={"name": "Another", "roles": ["carrier"], "keys": [carrier.key.public.vkey]},
    )
    try:
        world.operator.register(again)
    except ProblemError as refused:
        assert refused.status == 422, refused.problem
        assert refused.problem["title"] == "The title or party rules forbid this event"
        assert f"party {carrier.id} is already registered" in refused.problem["detail"]
    else:
        raise AssertionError("a party registered twice")
