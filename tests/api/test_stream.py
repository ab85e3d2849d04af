"""GET /v1/stream: Server-Sent Events of new events on the documents a party may see.

Every wait is bounded: a stream that delivers nothing fails the test instead of
hanging it.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from typing import Any

import httpx
import pytest

from api.client import Client, ProblemError, StreamClosed
from encd.events import make_event, sign_text
from encd.keys import SigningKey
from tests.api.conftest import World
from tests.kit import T0

WAIT = 10.0  # seconds any one message may take


def hang_up(response: httpx.Response) -> None:
    """Shut the response's socket, so a read blocked on it in another thread returns now
    (closing the client alone leaves that read waiting for the next byte)."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class Listener:
    """``Client.stream()`` in a thread, its messages on a queue (its own client and key)."""

    def __init__(self, world: World, label: str, last_event_id: int | None = None) -> None:
        self.client = Client(world.url, world.client(label).key)
        self.responses: list[httpx.Response] = []
        self.client.http.event_hooks["response"].append(self.responses.append)
        self.messages: queue.Queue[dict[str, Any] | BaseException] = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(last_event_id,), daemon=True)
        self.thread.start()

    def _run(self, last_event_id: int | None) -> None:
        try:
            for message in self.client.stream(last_event_id):
                self.messages.put(message)
        except BaseException as exc:  # the test reads it, or closing the client ends it
            self.messages.put(exc)

    def next(self) -> dict[str, Any]:
        try:
            item = self.messages.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"no stream message within {WAIT} s")
        if isinstance(item, BaseException):
            raise item
        return item

    def until(self, event_id: str) -> list[dict[str, Any]]:
        """Every message up to and including the one for ``event_id``."""
        seen = []
        while True:
            message = self.next()
            seen.append(message)
            if message["event_id"] == event_id:
                return seen

    def close(self) -> None:
        for response in self.responses:
            hang_up(response)
        self.thread.join(timeout=WAIT)
        assert not self.thread.is_alive(), "the stream did not end"
        self.client.close()


def pledge_and_release(world: World, doc: str) -> None:
    """The bank becomes party to the document: it takes it in pledge, then releases it."""
    exporter, bank = world.client("exporter"), world.client("bank")
    body = {
        "pledgee": world.id("bank"),
        "loan_ref": "CQRCB-2026-0001",
        "amount": "100000.00",
        "currency": "USD",
        "registry_ref": "PBOC-CRCS-2026-000001",
        "maturity": "2026-08-01",
    }
    proposal = exporter.propose(exporter.next_event(doc, "pledge", body))
    text = proposal["text"].encode()
    note = text + b"\n" + b"".join(s.line().encode() for s in sign_text(text, [bank.key]))
    assert bank.countersign(proposal["id"], note)["state"] == "applied"
    bank.submit(bank.next_event(doc, "release", {"reason": "loan repaid"}))


def add_key(world: World, label: str) -> dict[str, Any]:
    """``label`` adds a key to itself: a party event only it (and auditors) will see."""
    client = world.client(label)
    me = client.party(client.key.name)
    extra = SigningKey(client.key.name, bytes(range(32)))
    raw = make_event(
        [client.key],
        type="add_key",
        party=me["id"],
        seq=me["seq"] + 1,
        prev=me["head"],
        time=T0,
        body={"key": extra.public.vkey},
    )
    receipt: dict[str, Any] = client.party_event(me["id"], raw)["receipt"]
    return receipt


def test_a_bank_sees_a_transfer_on_its_document_and_a_stranger_does_not(
    world: World, doc_id: str
) -> None:
    pledge_and_release(world, doc_id)
    start = world.operator.service()["log_size"] - 1  # resume after the last entry: "from now"
    bank = Listener(world, "bank", last_event_id=start)
    stranger = Listener(world, "bank2", last_event_id=start)
    try:
        exporter = world.client("exporter")
        raw = exporter.next_event(doc_id, "transfer", {"to": world.id("buyer")})
        receipt = exporter.submit(raw)

        (seen,) = bank.until(receipt["event_id"])
        assert seen["event"] == raw.decode()  # the exact text, byte for byte
        assert seen["index"] == receipt["log_index"]
        assert seen["sequenced_at"] == receipt["sequenced_at"]
        assert (seen["chain"], seen["subject"], seen["type"]) == ("doc", doc_id, "transfer")

        # the stranger's next message is its own key change, logged after the transfer:
        # by then its stream has passed the transfer without showing it
        own = add_key(world, "bank2")
        assert own["log_index"] > receipt["log_index"]
        passed = stranger.until(own["event_id"])
        assert [m["event_id"] for m in passed] == [own["event_id"]]
        assert passed[0]["type"] == "add_key" and passed[0]["subject"] == world.id("bank2")
    finally:
        bank.close()
        stranger.close()


def test_a_party_resuming_from_the_start_sees_a_document_it_has_since_become_party_to(
    world: World, doc_id: str
) -> None:
    """What a stream sends is decided as it reads: the bank, party to the document once
    its pledge applied, resumes from -1 and gets the document's issue, logged when the
    bank could not read it (api.md §4, Stream)."""
    pledge_and_release(world, doc_id)
    bank = Listener(world, "bank", last_event_id=-1)
    try:
        seen = [bank.next() for _ in range(4)]
        assert [(m["type"], m["subject"]) for m in seen] == [
            ("register", world.id("bank")),
            ("issue", doc_id),
            ("pledge", doc_id),
            ("release", doc_id),
        ]
    finally:
        bank.close()


def test_last_event_id_resumes_after_the_given_index(world: World, doc_id: str) -> None:
    size = world.operator.service()["log_size"]
    auditor = Listener(world, "auditor", last_event_id=3)  # auditors see every event
    exporter = Listener(world, "exporter", last_event_id=-1)  # -1: from the very start
    try:
        replayed = [auditor.next() for _ in range(size - 4)]
        assert [m["index"] for m in replayed] == list(range(4, size))
        # the exporter sees its own registration and the document it holds, nothing else
        own = [exporter.next() for _ in range(2)]
        assert [m["type"] for m in own] == ["register", "issue"]
        assert own[0]["subject"] == world.id("exporter") and own[1]["subject"] == doc_id
        # and then new events as they are logged
        carrier = world.client("carrier")
        milestone = carrier.next_event(
            doc_id,
            "milestone",
            {
                "kind": "gate_in",
                "location": {"locode": "CNCKG", "name": "Luoqi"},
                "at": "2026-05-01T10:00:00Z",
            },
        )
        receipt = carrier.submit(milestone)
        assert auditor.next()["event_id"] == receipt["event_id"]
        assert exporter.next()["event"] == milestone.decode()
    finally:
        auditor.close()
        exporter.close()


def test_stream_wire_format_and_live_start(world: World, doc_id: str) -> None:
    """Without Last-Event-ID a stream starts at the log's end; messages carry id and event."""
    carrier = world.client("carrier")
    headers = carrier.signed_headers("GET", "/v1/stream", "", b"")
    lines: queue.Queue[str | BaseException] = queue.Queue()
    opened = threading.Event()
    responses: list[httpx.Response] = []
    with Client(world.url, carrier.key) as reader:

        def read() -> None:
            try:
                with reader.http.stream("GET", "/v1/stream", headers=headers, timeout=None) as r:
                    assert r.headers["content-type"].startswith("text/event-stream")
                    responses.append(r)
                    for line in r.iter_lines():
                        opened.set()
                        lines.put(line)
            except BaseException as exc:
                lines.put(exc)
                opened.set()

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        assert opened.wait(WAIT), "the stream did not open"
        receipt = carrier.submit(
            carrier.next_event(
                doc_id,
                "milestone",
                {
                    "kind": "gate_in",
                    "location": {"locode": "CNCKG", "name": "Luoqi"},
                    "at": "2026-05-01T10:00:00Z",
                },
            )
        )
        message: list[str] = []
        while len(message) < 3:
            line = lines.get(timeout=WAIT)
            assert not isinstance(line, BaseException), line
            if line and not line.startswith(":"):
                message.append(line)
        assert message[0] == f"id: {receipt['log_index']}"
        assert message[1] == "event: encd-event"
        assert message[2].startswith("data: {")
        hang_up(responses[0])
        thread.join(timeout=WAIT)
        assert not thread.is_alive()


def test_stream_needs_a_signed_request(world: World) -> None:
    nobody = Client(world.url, SigningKey("91500000MA7000000K", bytes(32)))
    with nobody, pytest.raises(ProblemError) as refused:
        next(nobody.stream())
    assert refused.value.status == 401


def test_a_stream_ends_when_its_key_is_revoked(world: World, doc_id: str) -> None:
    """A revoked key reads nothing more, on a stream it opened before too: the stream
    passes on the revocation, then ends with `encd-closed`, before the next transfer."""
    pledge_and_release(world, doc_id)
    start = world.operator.service()["log_size"] - 1
    bank = Listener(world, "bank", last_event_id=start)
    try:
        client = world.client("bank")
        added = add_key(world, "bank")
        me = client.party(client.key.name)
        extra = SigningKey(client.key.name, bytes(range(32)))  # the key add_key added
        revoke = make_event(
            [extra],
            type="revoke_key",
            party=me["id"],
            seq=me["seq"] + 1,
            prev=me["head"],
            time=T0,
            body={"key_id": client.key.public.key_id},
        )
        with Client(world.url, extra) as again:
            revoked = again.party_event(me["id"], revoke)["receipt"]
        exporter = world.client("exporter")
        exporter.submit(exporter.next_event(doc_id, "transfer", {"to": world.id("buyer")}))

        seen = bank.until(revoked["event_id"])
        assert [m["event_id"] for m in seen] == [added["event_id"], revoked["event_id"]]
        with pytest.raises(StreamClosed) as ended:
            bank.next()
        assert client.key.public.key_id in str(ended.value)
        assert f"log index {revoked['log_index']}" in str(ended.value)
    finally:
        bank.close()
