"""How ``encd serve`` treats connections that do not send a proper request.

``--request-timeout``: a connection must send each whole request in time.  Without a
deadline, a client that opens connections and sends nothing, or half a request,
holds each one open for ever (one file descriptor and one protocol object each) until the
service can take no more.  What must hold, with one worker and with two: such connections
are closed, changing nothing and logging no error; a slow but complete request within the
deadline is answered; and once a request has arrived it has no deadline, so an event
stream outlives it.

Bytes that are not an HTTP/1.1 request are answered with the same RFC 9457 problem as
every other refusal (uvicorn's own answer is a text/plain 400), naming what is wrong.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.client import Client
from api.media import EVENT_TYPE
from api.server import REQUEST_TIMEOUT
from encd.cli import serve as serve_command
from encd.events import event_id
from encd.keys import SigningKey
from tests.api.test_workers import close, corridor
from tests.serving import Served, serve

TIMEOUT = 1.0  # seconds: the deadline the servers below are started with


@pytest.fixture(params=[1, 2], ids=["one-worker", "two-workers"])
def served(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Iterator[Served]:
    args = ("--workers", str(request.param), "--request-timeout", str(TIMEOUT))
    with serve(tmp_path / "data", database_url, *args) as running:
        yield running
    # (one worker is uvicorn's own server, which ends by the SIGTERM it was stopped with)
    assert running.process.returncode in (0, -signal.SIGTERM), "".join(running.output)


def _connect(served: Served) -> tuple[socket.socket, str]:
    host, port = served.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(20 * TIMEOUT)  # far past the deadline: recv fails if nobody closes
    return sock, f"{host}:{port}"


def _closed_unanswered(sock: socket.socket) -> bool:
    """Whether the service closes ``sock`` without sending a byte (waiting for it to)."""
    with sock:
        try:
            return sock.recv(1024) == b""
        except ConnectionResetError:
            return True


def test_a_connection_that_sends_nothing_or_half_a_request_is_closed(served: Served) -> None:
    before = httpx.get(f"{served.url}/log/checkpoint").text
    silent, _ = _connect(served)
    half_head, authority = _connect(served)
    half_head.sendall(f"GET /v1/log HTTP/1.1\r\nhost: {authority}\r\n".encode())
    half_body, _ = _connect(served)
    half_body.sendall(
        f"POST /v1/events HTTP/1.1\r\nhost: {authority}\r\ncontent-type: {EVENT_TYPE}\r\n"
        "content-length: 1000\r\n\r\n".encode()
        + b"x" * 500
    )
    for sock in (silent, half_head, half_body):
        assert _closed_unanswered(sock)
    assert httpx.get(f"{served.url}/healthz").status_code == 200
    assert httpx.get(f"{served.url}/log/checkpoint").text == before
    logged = "".join(served.output)
    assert "Traceback" not in logged and "Exception in ASGI" not in logged, logged


def test_a_slow_request_within_the_deadline_is_answered(served: Served) -> None:
    sock, authority = _connect(served)
    with sock:
        for piece in ("GET /healthz HTTP/1.1\r\n", f"host: {authority}\r\n", "\r\n"):
            sock.sendall(piece.encode())
            time.sleep(TIMEOUT / 5)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_a_kept_alive_connection_has_a_deadline_for_its_next_request(served: Served) -> None:
    sock, authority = _connect(served)
    sock.sendall(f"GET /healthz HTTP/1.1\r\nhost: {authority}\r\n\r\n".encode())
    answer = b""
    while not answer.endswith(b'{"status":"ok"}'):  # the head and the body may come apart
        answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200 ")
    # uvicorn closes an idle kept-alive connection only until its next byte: one byte of
    # the next request, and only the service's deadline is left to close it
    sock.sendall(b"G")
    assert _closed_unanswered(sock)


def test_an_event_stream_outlives_the_deadline(served: Served) -> None:
    world, docs, heads = corridor(served, 1)
    size = int(Client(served.url, world.log_key).checkpoint().split(b"\n")[1])
    heard: list[str] = []
    listening = threading.Event()
    done = threading.Event()

    def listen() -> None:
        with Client(served.url, world.actors["bank"].key) as bank:
            listening.set()
            for message in bank.stream(last_event_id=size - 1, read_timeout=30):
                heard.append(message["event_id"])
                done.set()
                return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert listening.wait(30)
    time.sleep(3 * TIMEOUT)  # the stream's request arrived long ago
    raw, key = docs.transfer(heads[0])
    with Client(served.url, key) as client:
        client.submit(raw)
    assert done.wait(30), "the stream was closed before the event"
    assert heard == [event_id(raw)]
    close(world)


def test_stopping_ends_the_open_event_streams(served: Served) -> None:
    """SIGTERM with an event stream open: the stream ends cleanly, with a comment that
    says why (its client resumes with Last-Event-ID, on another host or after the
    restart), and the service stops.  Before, it waited for the stream to end, which it
    never does: one process for ever, a worker until it was killed 30 s later."""
    world, _, _ = corridor(served, 1)
    lines: list[str] = []
    listening = threading.Event()
    ended: list[str] = []

    def listen() -> None:
        with Client(served.url, world.actors["bank"].key) as bank:
            headers = bank.signed_headers("GET", "/v1/stream", "", b"")
            try:
                with bank.http.stream("GET", "/v1/stream", headers=headers) as response:
                    for line in response.iter_lines():
                        lines.append(line)
                        listening.set()
                ended.append("cleanly")
            except httpx.HTTPError as exc:
                ended.append(repr(exc))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert listening.wait(30)
    served.process.terminate()
    listener.join(timeout=60)
    assert ended == ["cleanly"], "".join(served.output)
    assert lines[-2:] == [": the service is stopping: resume with Last-Event-ID", ""], lines
    served.process.wait(timeout=60)
    assert "Cancel" not in "".join(served.output)  # uvicorn's words when a grace runs out


def test_the_command_line_default_is_the_services() -> None:
    import inspect

    default = inspect.signature(serve_command).parameters["request_timeout"].default
    assert default == REQUEST_TIMEOUT


def _answer(
    served: Served, request: bytes, pause: float = 0.0
) -> tuple[str, dict[str, str], dict[str, object]]:
    """The status line, headers and JSON body the service sends for ``request``, read until
    it closes the connection.  With a ``pause``, the request is sent in two halves that many
    seconds apart, and read that many seconds after."""
    sock, _ = _connect(served)
    with sock:
        if pause:
            half = len(request) // 2
            sock.sendall(request[:half])
            time.sleep(pause)
            sock.sendall(request[half:])
            time.sleep(pause)
        else:
            sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return status, headers, json.loads(body)


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (b"GARBAGE\r\n\r\n", "illegal request line"),
        (
            b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n"
            b"content-length: 4\r\n\r\nabc",
            "content-length",
        ),
        (b"GET /healthz HTTP/1.1\r\nhost: x\r\nhost: y\r\n\r\n", "host"),
        (b"GET /healthz HTTP/1.1\r\nbad header\r\n\r\n", "illegal header line"),
    ],
    ids=["request-line", "two-content-lengths", "two-hosts", "header-line"],
)
def test_malformed_http_is_answered_with_a_problem(
    served: Served, request_bytes: bytes, reason: str
) -> None:
    before = httpx.get(f"{served.url}/log/checkpoint").text
    status, headers, problem = _answer(served, request_bytes)
    assert status == "HTTP/1.1 400 Bad Request"
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert problem["type"] == "urn:encd:problem:invalid-input"
    assert problem["status"] == 400
    detail = str(problem["detail"])
    assert detail.startswith("not a well-formed HTTP/1.1 request: ")
    assert reason in detail.lower(), detail
    assert httpx.get(f"{served.url}/log/checkpoint").text == before


def test_a_head_over_the_limit_is_a_431_problem(served: Served) -> None:
    # h11 refuses a request's head once more than 16 KiB of it are waiting incomplete.  The
    # client sends the rest of the head after the service has answered, and reads the answer
    # only then: the answer must reach it whole all the same.  (The service reads and drops
    # the rest rather than closing on it: a close with bytes unread resets the connection,
    # which can destroy an answer not yet sent.  That race is too narrow to force here; it
    # failed this test once in CI, before the service lingered.)
    status, _, problem = _answer(
        served, b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 40_000, pause=0.5
    )
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert problem["type"] == "urn:encd:problem:too-large"
    assert problem["status"] == 431


@pytest.mark.parametrize("size", [16 * 1024 + 1, 60_000])
def test_a_head_over_the_limit_in_one_piece_is_a_431_too(served: Served, size: int) -> None:
    """h11 counts only a head still incomplete: one over 16 KiB that arrives in one read
    was parsed whole.  The limit holds however the head arrives."""
    line, end = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: ", b"\r\n\r\n"
    head = line + b"a" * (size - len(line) - len(end)) + end
    assert len(head) == size
    status, headers, problem = _answer(served, head)
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert headers["connection"] == "close"
    assert problem["type"] == "urn:encd:problem:too-large"
    assert problem["title"] == "Request too large"
    # a head of exactly the limit is taken
    head = line + b"a" * (16 * 1024 - len(line) - len(end)) + end
    sock, _ = _connect(served)
    with sock:
        sock.sendall(head)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_a_transfer_coding_not_implemented_is_a_501_problem(served: Served) -> None:
    status, headers, problem = _answer(
        served,
        b"POST /v1/events HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n",
    )
    assert status.startswith("HTTP/1.1 501 ")
    assert headers["content-type"] == "application/problem+json"
    assert problem["type"] == "urn:encd:problem:not-implemented"
    assert problem["title"] == "Not implemented"


def _send(served: Served, request: bytes) -> bytes:
    """Everything the service sends for ``request`` (which asks it to close)."""
    sock, _ = _connect(served)
    with sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_an_absolute_form_target_is_read_as_its_path(served: Served) -> None:
    """RFC 9112 §3.2.2: a server must accept ``GET http://host/path``, and then takes the
    host from the target, not from the Host header: a request signed for the target's
    host verifies, and the same signature sent with that host only in Host would too."""
    service = httpx.get(f"{served.url}/v1/service").json()
    plain = _send(
        served,
        b"GET HTTP://ledger.example/v1/service HTTP/1.1\r\nhost: elsewhere\r\n"
        b"connection: close\r\n\r\n",
    )
    assert plain.startswith(b"HTTP/1.1 200 ")
    assert json.loads(plain.partition(b"\r\n\r\n")[2]) == service
    operator = Client(
        served.url,
        SigningKey.load(service["operator"], served.data_dir / "operator.key"),
        authority="ledger.example:8443",
    )
    path = f"/v1/parties/{service['operator']}"

    def get(target: str, host: str) -> bytes:
        signed = operator.signed_headers("GET", path, "", b"")  # a fresh nonce each time
        lines = "".join(f"{name}: {value}\r\n" for name, value in signed.items())
        head = f"GET {target} HTTP/1.1\r\nhost: {host}\r\n{lines}connection: close\r\n\r\n"
        return _send(served, head.encode())

    with operator:
        answer = get(f"http://ledger.example:8443{path}", "127.0.0.1")
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["id"] == service["operator"]
        # beside an absolute target the Host header does not count
        wrong = get(f"http://127.0.0.1{path}", "ledger.example:8443")
        assert wrong.startswith(b"HTTP/1.1 401 "), wrong
        assert b"does not verify" in wrong, wrong  # (signed for another @authority)
        # and in origin form it is what counts
        origin = get(path, "ledger.example:8443")
        assert origin.startswith(b"HTTP/1.1 200 "), origin


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("v1/service", "neither a path"),
        ("ftp://ledger.example/v1/service", "neither a path"),
        ("http:///v1/service", "needs a host"),
        ("http://user@ledger.example/v1/service", "no user information"),
        ("*", "for OPTIONS only"),
        ("http://ledger.example:99999/v1/service", "a port from 1 to 65535"),
        ("http://ledger.example:abc/v1/service", "a port from 1 to 65535"),
        ("http://ledger%20example/v1/service", "percent-escape"),
        ("http://[::1/v1/service", "needs a host"),
        ("/v1/service#part", "no fragment"),
        ("http://ledger.example/v1/service#part", "no fragment"),
        ("http://ledger.example#part/v1/service", "no fragment"),
    ],
)
def test_a_target_that_is_no_path_is_a_400_problem(
    served: Served, target: str, reason: str
) -> None:
    status, headers, problem = _answer(served, f"GET {target} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    assert status == "HTTP/1.1 400 Bad Request"
    assert headers["connection"] == "close"
    assert problem["type"] == "urn:encd:problem:invalid-input"
    assert problem["field"] == "request-target"
    assert str(problem["detail"]).startswith("not a well-formed HTTP/1.1 request: ")
    assert reason in str(problem["detail"]), problem


def test_options_asterisk_names_the_methods(served: Served) -> None:
    answer = _send(served, b"OPTIONS * HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    head = answer.decode("latin-1").lower()
    assert head.startswith("http/1.1 204 ")
    assert "\r\nallow: get, head, post\r\n" in head
    status, _, problem = _answer(served, b"OPTIONS *?x=1 HTTP/1.1\r\nhost: x\r\n\r\n")
    assert status == "HTTP/1.1 400 Bad Request" and "takes no query" in str(problem["detail"])


def test_an_absolute_target_with_an_ipv6_host_and_a_port(served: Served) -> None:
    answer = _send(
        served,
        b"GET http://[::1]:8080/v1/service HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer


def test_an_absolute_target_does_not_take_its_host_header_out_of_the_head_limit(
    served: Served,
) -> None:
    """The Host header an absolute target replaces still came over the wire: it counts."""
    head = b"GET http://a/healthz HTTP/1.1\r\nhost: " + b"h" * 60_000 + b"\r\n\r\n"
    status, _, problem = _answer(served, head)
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert problem["type"] == "urn:encd:problem:too-large"


@pytest.mark.parametrize("version", ["2.0", "1.2", "3.0"])
def test_an_http_version_not_spoken_is_a_505_problem(served: Served, version: str) -> None:
    """h11 reads any ``HTTP/d.d`` request line; before, HTTP/2.0 was answered as 1.1."""
    status, headers, problem = _answer(
        served, f"GET /v1/service HTTP/{version}\r\nhost: x\r\n\r\n".encode()
    )
    assert status.startswith("HTTP/1.1 505 ")
    assert headers["connection"] == "close"
    assert problem["type"] == "urn:encd:problem:version-not-supported"
    assert f"HTTP/{version}" in str(problem["detail"])
