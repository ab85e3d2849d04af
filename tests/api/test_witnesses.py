"""Witnesses over real HTTP: ``encd witness``'s service, and a log that sends it its
checkpoints (api.witnessing) and hands out what it cosigned, audited with a quorum."""

from __future__ import annotations

import base64
import gzip
import logging
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from api.client import Client, ProblemError
from api.server import running, running_app
from api.settings import Settings
from api.setup import load_or_init
from api.witness import create_witness_app, init_witness, load_witness
from api.witnessing import WitnessEndpoint, WitnessPusher, parse_witnesses
from encd.audit import Policy, audit_bytes
from encd.checkpoint import Checkpoint, CosignerKey, sign_checkpoint, verify_cosignatures
from encd.errors import InvalidInput
from encd.keys import SigningKey
from encd.note import parse_note
from encd.witness import AddCheckpoint
from ledger.ledger import Ledger, NotFound
from tests.kit import corridor_cast

ORIGIN = "encd.test/log"


@pytest.fixture()
def log_key(tmp_path: Path) -> SigningKey:
    return load_or_init(tmp_path / "data", ORIGIN).log_key


@pytest.fixture()
def witness_url(tmp_path: Path, log_key: SigningKey) -> Iterator[str]:
    made = init_witness(tmp_path / "witness", "witness.bank.example/w1", [log_key.public.vkey])
    with running_app(create_witness_app(load_witness(made.path))) as url:
        yield url


def cosigner(tmp_path: Path) -> CosignerKey:
    return load_witness(tmp_path / "witness").cosigner


def size_of(note: bytes) -> int:
    return Checkpoint.parse(parse_note(note).text).size


# --- the witness service ---------------------------------------------------------------


def test_the_witness_answers_as_the_spec_says(
    tmp_path: Path, log_key: SigningKey, witness_url: str
) -> None:
    root1 = bytes(32)
    first = sign_checkpoint(Checkpoint(ORIGIN, 1, root1), log_key)
    with httpx.Client(base_url=witness_url) as http:
        described = http.get("/").text
        assert described.splitlines() == [
            f"witness {cosigner(tmp_path).vkey}",
            f"log {log_key.public.vkey}",
        ]
        answer = http.post("/add-checkpoint", content=AddCheckpoint(0, (), first).to_bytes())
        assert answer.status_code == 200, answer.text
        assert verify_cosignatures(first + answer.content, [cosigner(tmp_path)])
        # the same request again: the witness holds size 1 now
        again = http.post("/add-checkpoint", content=AddCheckpoint(0, (), first).to_bytes())
        assert again.status_code == 409
        assert again.headers["content-type"] == "text/x.tlog.size"
        assert again.text == "1\n"
        # the size it holds with another root: a fork, not a stale size
        fork = sign_checkpoint(Checkpoint(ORIGIN, 1, bytes([1]) * 32), log_key)
        forked = http.post("/add-checkpoint", content=AddCheckpoint(1, (), fork).to_bytes())
        assert forked.status_code == 409
        assert forked.headers["content-type"] == "application/problem+json"
        assert forked.json()["type"] == "urn:encd:problem:fork"
        assert "the log has forked" in forked.json()["detail"]
        # a checkpoint of a log it does not know
        other = SigningKey("other.example/log", bytes(range(32)))
        stranger = sign_checkpoint(Checkpoint(other.name, 1, root1), other)
        answer = http.post("/add-checkpoint", content=AddCheckpoint(0, (), stranger).to_bytes())
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["detail"] == (
            "this witness does not witness the log 'other.example/log'"
        )
        # malformed, and forged
        answer = http.post("/add-checkpoint", content=b"old x\n\n" + first)
        assert answer.status_code == 400
        assert "old size must be ASCII decimal without leading zeros" in answer.json()["detail"]
        forged = first.replace(b"\n1\n", b"\n2\n", 1)
        answer = http.post("/add-checkpoint", content=AddCheckpoint(1, (), forged).to_bytes())
        assert answer.status_code == 403
        answer = http.post("/add-checkpoint", content=b"x" * (1 << 21))
        assert answer.status_code == 413
        assert http.get("/add-checkpoint").status_code == 405


def test_the_witness_checks_request_lines_as_the_service_does(witness_url: str) -> None:
    """The same api.head checks: an absolute target read as its path, OPTIONS *, a 505
    for a request line of another HTTP version (a checkpoint on an HTTP/2.0 line was
    taken, and could be cosigned), a 400 for a target that is no path."""
    host, port = witness_url.removeprefix("http://").rsplit(":", 1)

    def send(request: bytes) -> bytes:
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            sock.sendall(request)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        return received

    close = b"host: x\r\nconnection: close\r\n\r\n"
    described = httpx.get(witness_url + "/").text
    absolute = send(b"GET http://witness.example/ HTTP/1.1\r\n" + close)
    assert absolute.startswith(b"HTTP/1.1 200 ") and absolute.endswith(described.encode())
    assert send(b"OPTIONS * HTTP/1.1\r\n" + close).startswith(b"HTTP/1.1 204 ")
    assert send(b"POST /add-checkpoint HTTP/2.0\r\n" + close).startswith(b"HTTP/1.1 505 ")
    refused = send(b"GET ftp://x/ HTTP/1.1\r\n" + close)
    assert refused.startswith(b"HTTP/1.1 400 ") and b'"field":"request-target"' in refused


def test_witness_init_refuses_what_would_not_work(tmp_path: Path, log_key: SigningKey) -> None:
    with pytest.raises(InvalidInput, match="name at least one log"):
        init_witness(tmp_path / "w", "witness.example/w", [])
    with pytest.raises(InvalidInput, match="a witness's name is a URL without its scheme"):
        init_witness(tmp_path / "w", "https://witness.example/w", [log_key.public.vkey])
    with pytest.raises(InvalidInput, match="not a log verifier key"):
        init_witness(tmp_path / "w", "witness.example/w", ["log.example+00000000+AAAA"])
    init_witness(tmp_path / "w", "witness.example/w", [log_key.public.vkey])
    with pytest.raises(InvalidInput, match="already holds a witness"):
        init_witness(tmp_path / "w", "witness.example/w", [log_key.public.vkey])
    (tmp_path / "w" / "witness.conf").write_text("name witness.example/w\nlogg x\n")
    with pytest.raises(InvalidInput) as info:
        load_witness(tmp_path / "w")
    assert info.value.field.endswith("witness.conf line 2")


# --- the log's side ----------------------------------------------------------------------


@pytest.fixture()
def ledger(tmp_path: Path, database_url: str, log_key: SigningKey) -> Iterator[Ledger]:
    with Ledger(database_url, log_key) as opened:
        yield opened


def grow(ledger: Ledger, parties: int) -> None:
    cast = corridor_cast()
    labels = ["carrier", "exporter", "buyer", "bank", "bank2", "agent", "auditor"]
    for label in labels[:parties]:
        ledger.append(cast.register_event(cast.actor(label)))


def test_the_log_sends_each_new_checkpoint_and_keeps_the_cosignatures(
    tmp_path: Path, ledger: Ledger, witness_url: str
) -> None:
    cast = corridor_cast()
    ledger.append(cast.register_event(cast.actor("operator")))
    endpoint = WitnessEndpoint(cosigner(tmp_path), witness_url)
    key_id = endpoint.key.key_id
    with WitnessPusher(ledger, [endpoint]) as pusher:
        assert pusher.push_once() == {key_id: "cosigned"}
        assert pusher.push_once() == {key_id: "already"}
        for label in ("carrier", "exporter", "buyer"):
            ledger.append(cast.register_event(cast.actor(label)))
        assert pusher.push_once() == {key_id: "cosigned"}  # with a consistency proof
    served = ledger.cosigned(ledger.checkpoint(), ledger.size())
    assert verify_cosignatures(served, [endpoint.key]) == {
        endpoint.key.name: pytest.approx(time.time(), abs=60)
    }
    assert ledger.witnessed_checkpoint() == served
    # a log process started again knows nothing of the witness: a 409 tells it the size
    ledger.append(cast.register_event(cast.actor("bank")))
    with WitnessPusher(ledger, [endpoint]) as restarted:
        assert restarted.push_once() == {key_id: "cosigned"}
    assert size_of(ledger.witnessed_checkpoint()) == ledger.size() == 5


def test_a_witness_that_is_down_or_lies_is_reported_and_nothing_is_kept(
    tmp_path: Path, ledger: Ledger, log_key: SigningKey
) -> None:
    cast = corridor_cast()
    ledger.append(cast.register_event(cast.actor("operator")))
    made = init_witness(tmp_path / "w", "witness.bank.example/w1", [log_key.public.vkey])
    endpoint = WitnessEndpoint(made.cosigner, "http://127.0.0.1:9")  # nothing listens
    with WitnessPusher(ledger, [endpoint], timeout=2) as pusher:
        assert pusher.push_once()[made.cosigner.key_id].startswith("cannot reach")

    def liar(request: httpx.Request) -> httpx.Response:  # a cosignature by another key
        other = SigningKey(made.cosigner.name, bytes(range(32)))
        from encd.checkpoint import cosign

        note = AddCheckpoint.parse(request.content).signed_checkpoint
        return httpx.Response(200, content=cosign(parse_note(note).text, other, 1))

    with WitnessPusher(ledger, [endpoint], transport=httpx.MockTransport(liar)) as pusher:
        outcome = pusher.push_once()[made.cosigner.key_id]
    assert outcome == f"answered 200 without a valid cosignature by {made.cosigner.key_id}"

    def slow_clock(request: httpx.Request) -> httpx.Response:  # its own key, dated 1970
        from encd.checkpoint import cosign

        note = AddCheckpoint.parse(request.content).signed_checkpoint
        return httpx.Response(200, content=cosign(parse_note(note).text, made.key, 1))

    with WitnessPusher(ledger, [endpoint], transport=httpx.MockTransport(slow_clock)) as pusher:
        outcome = pusher.push_once()[made.cosigner.key_id]
    assert outcome == (
        "cosigned at 1 (UNIX time), more than 600 s from this host's clock: one of the two "
        "clocks is wrong; not kept"
    )

    def flood(request: httpx.Request) -> httpx.Response:  # more than any answer needs
        return httpx.Response(200, content=b"x" * (1 << 20))

    with WitnessPusher(ledger, [endpoint], transport=httpx.MockTransport(flood)) as pusher:
        outcome = pusher.push_once()[made.cosigner.key_id]
    assert outcome == "answered with more than 65536 bytes"

    def gzipped(request: httpx.Request) -> httpx.Response:  # a bomb would be small when sent
        assert request.headers["accept-encoding"] == "identity"
        packed = gzip.compress(b"\n" * (1 << 22))
        return httpx.Response(200, content=packed, headers={"content-encoding": "gzip"})

    with WitnessPusher(ledger, [endpoint], transport=httpx.MockTransport(gzipped)) as pusher:
        outcome = pusher.push_once()[made.cosigner.key_id]
    assert outcome == "answered with a content-encoding after being asked for none"

    def trickle(request: httpx.Request) -> httpx.Response:  # each read in time, never done
        return httpx.Response(200, stream=_Trickle())

    with WitnessPusher(
        ledger, [endpoint], timeout=0.5, transport=httpx.MockTransport(trickle)
    ) as pusher:
        outcome = pusher.push_once()[made.cosigner.key_id]
    assert outcome == "did not finish answering within 0.5 s"
    with pytest.raises(Exception, match="no witness has cosigned"):
        ledger.witnessed_checkpoint()


class _Trickle(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        for _ in range(10_000):
            time.sleep(0.05)
            yield b"x"


def test_a_witness_that_never_answers_delays_neither_the_others_nor_a_shutdown(
    tmp_path: Path, ledger: Ledger, witness_url: str
) -> None:
    cast = corridor_cast()
    ledger.append(cast.register_event(cast.actor("operator")))
    good = WitnessEndpoint(cosigner(tmp_path), witness_url)
    stuck_key = CosignerKey.of(SigningKey("stuck.example/w", bytes(range(1, 33))))
    stuck = WitnessEndpoint(stuck_key, "http://stuck.example")
    released = threading.Event()

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "stuck.example":
            released.wait()  # holds its thread until the test ends
            return httpx.Response(503)
        answer = httpx.post(str(request.url), content=request.content)
        return httpx.Response(answer.status_code, content=answer.content)

    pusher = WitnessPusher(
        ledger, [stuck, good], interval=0.05, transport=httpx.MockTransport(route)
    )
    pusher.start()
    try:
        deadline = time.monotonic() + 30
        while not verify_cosignatures(ledger.cosigned(ledger.checkpoint(), 1), [good.key]):
            assert time.monotonic() < deadline, "the good witness was never sent the checkpoint"
            time.sleep(0.05)
        pusher.close(wait=0.2)  # returns though the stuck witness's thread is still waiting
        assert [t.is_alive() for t in pusher._threads] == [True, False]
    finally:
        released.set()
        pusher.close()


def test_the_last_checkpoint_reaches_the_witnesses_as_the_log_stops(
    tmp_path: Path, ledger: Ledger, witness_url: str
) -> None:
    """Rounds come once a second; a receipt given in the service's last second carries a
    checkpoint no round has sent.  Were it never sent, a backup restored from before it
    could grow another history at that size, and no witness would know to refuse it
    (docs/cli.md, Backups).  Closing the sender hands every witness the last one."""
    cast = corridor_cast()
    ledger.append(cast.register_event(cast.actor("operator")))
    witness = WitnessEndpoint(cosigner(tmp_path), witness_url)
    pusher = WitnessPusher(ledger, [witness], interval=3600).start()  # no round meanwhile
    for label in ("carrier", "exporter"):
        ledger.append(cast.register_event(cast.actor(label)))
    pusher.close(wait=30)
    assert ledger.size() == 3
    assert size_of(ledger.witnessed_checkpoint()) == 3
    assert verify_cosignatures(ledger.witnessed_checkpoint(), [witness.key])


def test_witnessed_counts_only_the_witnesses_asked_about(ledger: Ledger) -> None:
    """An auditor's quorum is of the witnesses it trusts, not of any the log keeps."""
    cast = corridor_cast()
    ledger.append(cast.register_event(cast.actor("operator")))
    grow(ledger, 2)  # checkpoints at sizes 1, 2 and 3
    signature = base64.b64encode(bytes(76)).decode()  # (not checked by the store)
    for size, witness in [(1, "a"), (1, "b"), (2, "a"), (2, "c"), (3, "c")]:
        line = f"\u2014 {witness} {signature}\n".encode()
        assert ledger.add_cosignature(size, f"{witness}+0000000{ord(witness) - 96}", line)
    assert size_of(ledger.witnessed_checkpoint()) == 3
    assert size_of(ledger.witnessed_checkpoint(2)) == 2  # a and c
    assert size_of(ledger.witnessed_checkpoint(2, ["a+00000001", "b+00000002"])) == 1
    assert size_of(ledger.witnessed_checkpoint(1, ["b+00000002"])) == 1
    signed = ledger.witnessed_checkpoint(2, ["a+00000001", "b+00000002"])
    assert signed.count(b"\n\xe2\x80\x94 ") == 3  # the log's signature, a's and b's
    with pytest.raises(NotFound, match="no checkpoint of this log is cosigned by 3 witnesses"):
        ledger.witnessed_checkpoint(3)
    with pytest.raises(NotFound, match="no witness of d\\+00000004 has cosigned"):
        ledger.witnessed_checkpoint(1, ["d+00000004"])


def test_a_witness_that_holds_a_longer_history_is_reported(
    tmp_path: Path, ledger: Ledger, log_key: SigningKey, witness_url: str
) -> None:
    """The witness cosigned size 40 of this log (another copy of it, or entries lost here)."""
    cast = corridor_cast()
    ledger.append(cast.register_event(cast.actor("operator")))
    elsewhere = sign_checkpoint(Checkpoint(ORIGIN, 40, bytes(32)), log_key)
    answer = httpx.post(witness_url + "/add-checkpoint", content=b"old 0\n\n" + elsewhere)
    assert answer.status_code == 200
    endpoint = WitnessEndpoint(cosigner(tmp_path), witness_url)
    with WitnessPusher(ledger, [endpoint]) as pusher:
        outcome = pusher.push_once()[endpoint.key.key_id]
    assert outcome.startswith("the witness has cosigned a tree of 40 entries and this log has 1")


def test_a_witness_ahead_of_a_stale_view_is_not_taken_for_a_lost_history(
    tmp_path: Path, ledger: Ledger, witness_url: str
) -> None:
    """Two servers of one ledger each push: one may hold a checkpoint older than the one
    the other has just had cosigned.  The witness's larger size is then checked against
    the ledger's latest, not reported as entries lost."""
    cast = corridor_cast()
    ledger.append(cast.register_event(cast.actor("operator")))
    stale = ledger.checkpoint()
    grow(ledger, 3)
    endpoint = WitnessEndpoint(cosigner(tmp_path), witness_url)
    key_id = endpoint.key.key_id
    with WitnessPusher(ledger, [endpoint]) as other:
        assert other.push_once() == {key_id: "cosigned"}  # the other server: size 4
    with WitnessPusher(ledger, [endpoint]) as pusher:
        assert pusher._push(endpoint, stale, size_of(stale)) == "cosigned"
    assert size_of(ledger.witnessed_checkpoint()) == ledger.size() == 4


def test_the_witnesses_file_names_each_fault_by_line(tmp_path: Path) -> None:
    key = CosignerKey.of(SigningKey("w.example/w", bytes(32)))
    good = f"# the bank's witness\n\nwitness {key.vkey} https://w.example/  # the bank's\n"
    assert parse_witnesses(good, "f") == (WitnessEndpoint(key, "https://w.example"),)
    for text, message in [
        ("witness\n", "f line 1: expected 'witness <cosigner vkey> <URL prefix>': 0 word"),
        ("witnes x y\n", "f line 1: expected 'witness <cosigner vkey> <URL prefix>', got 'w"),
        (
            f"witness {key.vkey} http://a.example trailing\n",
            "f line 1: expected 'witness <cosigner vkey> <URL prefix>': 3 word(s) after "
            "'witness', not 2 (the last is 'trailing')",
        ),
        (f"witness {key.vkey}\n", "f line 1: expected 'witness <cosigner vkey> <URL prefix>'"),
        ("witness x https://w.example\n", "f line 1: not a witness's cosigner key"),
        (f"witness {key.vkey} ftp://w.example\n", "f line 1: expected an http:// or https:// URL"),
        (f"witness {key.vkey} http://xn--a.example\n", "f line 1: not a URL"),
        (f"witness {key.vkey} http://w.example:99999\n", "f line 1: the port 99999 is not one"),
        (f"witness {key.vkey} http://w.example/a?b=c\n", "f line 1: a witness's URL prefix has"),
        (
            f"witness {key.vkey} https://bank:s3cret@w.example\n",
            "f line 1: the URL carries a user name or password",
        ),
        (
            f"witness {key.vkey} http://a.example\nwitness {key.vkey} http://b.example\n",
            f"f line 2: the witness {key.key_id} is listed twice",
        ),
    ]:
        with pytest.raises(InvalidInput) as info:
            parse_witnesses(text, "f")
        assert info.value.message.startswith(message)
        assert "s3cret" not in info.value.message


# --- end to end: a service with a witness, a bundle audited with a quorum -------------------


def test_a_service_with_two_witnesses_hands_out_bundles_an_auditor_s_quorum_accepts(
    tmp_path: Path, database_url: str, log_key: SigningKey, witness_url: str
) -> None:
    """Both witnesses are sent the same checkpoints, so a quorum of 2 is met on one."""
    endpoint = WitnessEndpoint(cosigner(tmp_path), witness_url)
    second = init_witness(tmp_path / "w2", "witness.other-bank.example/w", [log_key.public.vkey])
    with running_app(create_witness_app(load_witness(second.path))) as second_url:
        endpoint2 = WitnessEndpoint(second.cosigner, second_url)
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=database_url,
            origin=ORIGIN,
            witnesses=(endpoint.line(), endpoint2.line()),
            witness_interval=0.05,
        )
        with running(settings) as url:
            both = (endpoint.key, endpoint2.key)
            auditor, served = _register_and_wait_for(url, settings, both)
            assert size_of(served) == 4
            for quorum in (1, 2):
                report = audit_bytes(
                    auditor.export(witnessed=quorum), Policy(log_key.public, both, quorum)
                )
                assert report.ok, report.message
                assert report.witnesses == sorted(k.name for k in both) and report.size == 4
            # the auditor names whose cosignatures count: its policy's witnesses
            one = [endpoint2.key.key_id]
            report = audit_bytes(
                auditor.export(witnessed=1, witnesses=one),
                Policy(log_key.public, (endpoint2.key,), 1),
            )
            assert report.ok and report.witnesses == [endpoint2.key.name], report.message
            with pytest.raises(ProblemError) as info:  # never cosigned anything
                auditor.export(witnessed=1, witnesses=["witness.elsewhere.example+0badf00d"])
            assert info.value.status == 404
            assert "no witness of witness.elsewhere.example+0badf00d has cosigned" in str(
                info.value
            )
            for params, field, message in [
                ({"witnessed": "3"}, "witnessed", "3 cosignatures asked for, of the 2 witness"),
                ({"witnessed": "2", "witness": one}, "witnessed", "of the 1 witness(es) named"),
                ({"witness": one}, "witness", "counts cosignatures: only with witnessed="),
                ({"witnessed": "1", "witness": "w.example"}, "witness", "expected a witness's"),
                *[
                    ({"witnessed": wrong}, "witnessed", "expected true, false or a number")
                    for wrong in ("maybe", "yes", "-1", "101", "01", " 1", "\u0662", "9" * 5000)
                ],
            ]:
                with pytest.raises(ProblemError) as info:
                    auditor.request("GET", "/v1/export", params=params)
                assert info.value.status == 422, params
                assert info.value.problem["field"] == field, params
                assert message in str(info.value), (params, str(info.value))
            unwitnessed = audit_bytes(auditor.export(), Policy(log_key.public, both, 2))
            assert unwitnessed.ok  # the latest is the witnessed one: nothing appended since


def _register_and_wait_for(
    url: str, settings: Settings, witnesses: tuple[CosignerKey, ...]
) -> tuple[Client, bytes]:
    """Three parties registered; the auditor's client, once the latest checkpoint is
    cosigned by every one of ``witnesses`` (within a round or two)."""
    operator_key = SigningKey.load(
        Client(url, SigningKey.generate("x")).service()["operator"],
        settings.data_dir / "operator.key",
    )
    operator = Client(url, operator_key)
    cast = corridor_cast()
    cast.actors["operator"] = replace(cast.actors["operator"], key=operator_key)
    for label in ("carrier", "exporter", "auditor"):
        operator.register(cast.register_event(cast.actor(label)))
    deadline = time.monotonic() + 30
    while True:
        served = httpx.get(url + "/log/checkpoint").content
        if size_of(served) == 4 and len(verify_cosignatures(served, witnesses)) == len(witnesses):
            return Client(url, cast.actor("auditor").key), served
        assert time.monotonic() < deadline, served.decode()
        time.sleep(0.05)


def test_a_witness_that_lost_its_state_is_reported_and_caught_up(
    tmp_path: Path, ledger: Ledger, log_key: SigningKey
) -> None:
    """A witness answering 409 with a smaller tree than it cosigned before forgot what it
    held (its cosignatures prove less until it catches up): a warning, then the log again."""
    made = init_witness(tmp_path / "w", "witness.bank.example/w1", [log_key.public.vkey])
    shutil.copytree(made.path, tmp_path / "w-new")  # the same key, nothing held yet
    cast = corridor_cast()
    for label in ("operator", "carrier", "exporter"):
        ledger.append(cast.register_event(cast.actor(label)))
    key_id = made.cosigner.key_id
    with running_app(create_witness_app(load_witness(made.path))) as url:
        pusher = WitnessPusher(ledger, [WitnessEndpoint(made.cosigner, url)])
        assert pusher.push_once() == {key_id: "cosigned"}
    for label in ("buyer", "bank"):
        ledger.append(cast.register_event(cast.actor(label)))
    with running_app(create_witness_app(load_witness(tmp_path / "w-new"))) as url:
        pusher.witnesses = (WitnessEndpoint(made.cosigner, url),)  # (moved, state lost)
        logged: list[logging.LogRecord] = []
        log = logging.getLogger("uvicorn.error")  # (uvicorn's loggers do not reach the root's)
        keep = logging.Handler(logging.WARNING)
        keep.emit = logged.append  # type: ignore[method-assign]
        log.addHandler(keep)
        try:
            assert pusher.push_once() == {key_id: "cosigned"}
        finally:
            log.removeHandler(keep)
        pusher.close()
    said = [r.getMessage() for r in logged if "lost its state" in r.getMessage()]
    assert said == [
        f"witness {key_id}: holds a tree of 0 entries, fewer than the 3 it cosigned before: "
        "it lost its state (sending it this log again from there)"
    ]
    assert size_of(ledger.witnessed_checkpoint()) == ledger.size() == 5
