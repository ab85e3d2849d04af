"""The `encd` command meets mistakes: its user's, its files', the network's and a service
that does not answer as encd's does.  Each gets one line saying what is wrong, exit 1
(tried and failed) or 2 (bad usage, found before anything is sent), and no traceback;
what is printed is text, never rich markup or a terminal escape sequence."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path

import pytest
from typer.testing import CliRunner

from encd.cli import app
from encd.events import Event, envelope_text
from encd.keys import SigningKey

BANK = "91500000676129728J"
runner = CliRunner()


def encd(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the command; it must end by exiting, never by an exception.  ``init`` and
    ``serve`` keep their ledger in their data directory (ENCD_DATABASE_URL, set for a
    PostgreSQL run, names a database other tests share) unless given --db."""
    result = runner.invoke(app, list(args), env={"ENCD_DATABASE_URL": "", **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"encd {' '.join(args)} raised {result.exception!r}")
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture()
def key(tmp_path: Path) -> Path:
    path = tmp_path / "bank.key"
    SigningKey.generate(BANK).save(path)
    return path


Answer = Callable[[bytes, socket.socket], None]


@contextmanager
def fake_service(answer: Answer) -> Iterator[tuple[str, list[bytes]]]:
    """A TCP server that reads each request's head and lets ``answer`` write whatever it
    likes back; yields its URL and the request heads it read."""
    listener = socket.create_server(("127.0.0.1", 0))
    heads: list[bytes] = []

    def serve(conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            heads.append(data.split(b"\r\n\r\n")[0])
            with suppress(OSError):  # the client hung up
                answer(data, conn)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", heads
    finally:
        listener.close()


def respond(status: str, kind: str, body: bytes) -> Answer:
    def answer(_request: bytes, conn: socket.socket) -> None:
        conn.sendall(
            f"HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n".encode()
            + body
        )

    return answer


def as_bank(url: str, key: Path) -> list[str]:
    return ["--server", url, "--key", str(key), "--party", BANK]


# --- the network ----------------------------------------------------------------------------


def test_a_service_that_cannot_be_reached_is_named(key: Path) -> None:
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    code, out = encd("title", "DOC-1", *as_bank(f"http://127.0.0.1:{port}", key))
    assert code == 1
    assert f"FAIL: cannot reach the service at http://127.0.0.1:{port}:" in out
    assert "refused" in out.lower()


def test_a_service_that_hangs_up_is_named(key: Path) -> None:
    with fake_service(lambda _request, conn: conn.close()) as (url, heads):
        code, out = encd("title", "DOC-1", *as_bank(url, key))
    assert code == 1 and f"FAIL: cannot reach the service at {url}:" in out, out
    assert heads, "the request was sent"


@pytest.mark.parametrize(
    "server", ["127.0.0.1:8080", "ftp://127.0.0.1/", "http://", "http://h:99999", "http://h/?x"]
)
def test_a_server_that_is_not_a_base_url_is_usage(key: Path, server: str) -> None:
    code, out = encd("title", "DOC-1", *as_bank(server, key))
    assert code == 2
    assert "FAIL: --server (ENCD_SERVER): expected the service's base URL" in out
    assert repr(server) in out


def test_a_service_that_sends_a_byte_at_a_time_is_given_up_on(key: Path) -> None:
    """Each byte comes well within the read timeout; the whole answer does not come
    within ENCD_TIMEOUT."""

    def drip(_request: bytes, conn: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}":
            conn.sendall(bytes([byte]))
            time.sleep(0.2)

    with fake_service(drip) as (url, _):
        started = time.monotonic()
        code, out = encd("title", "DOC-1", *as_bank(url, key), env={"ENCD_TIMEOUT": "1"})
        took = time.monotonic() - started
    assert code == 1
    assert "FAIL: the service did not finish answering within 1 s (ENCD_TIMEOUT)" in out
    assert took < 5, "the answer would take 8 s: the command gave up before it"


def test_a_timeout_that_is_not_seconds_is_usage(key: Path) -> None:
    code, out = encd(
        "title", "DOC-1", *as_bank("http://127.0.0.1:1", key), env={"ENCD_TIMEOUT": "soon"}
    )
    assert code == 2 and "ENCD_TIMEOUT: expected seconds" in out and "'soon'" in out
    assert out.count("FAIL:") == 1, out  # not followed by a second, about the connection
    code, out = encd(
        "title",
        "DOC-1",
        "--json",
        *as_bank("http://127.0.0.1:1", key),
        env={"ENCD_TIMEOUT": "soon"},
    )
    assert code == 2 and out.count('"ok": false') == 1, out


# --- a service that answers wrongly -----------------------------------------------------------


def test_an_answer_that_is_not_json_is_named(key: Path) -> None:
    with fake_service(respond("200 OK", "text/html", b"<html>a portal</html>")) as (url, _):
        code, out = encd("title", "DOC-1", *as_bank(url, key))
    assert code == 1
    assert f"FAIL: the service at {url} answered GET /v1/service with 'text/html', not JSON" in out


def test_an_answer_without_the_fields_the_api_gives_is_named(key: Path) -> None:
    with fake_service(respond("200 OK", "application/json", b'{"hello": 1}')) as (url, _):
        code, out = encd("title", "DOC-1", *as_bank(url, key))
        assert code == 1 and "FAIL: the service's answer has no log_key" in out, out
        code, out = encd("transfer", "DOC-1", "--to", BANK, *as_bank(url, key))
        assert code == 1 and "answered DOC-1's title without its head's seq and id" in out


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"[1, 2, 3]", "the service's answer has no id"),
        (b'{"id": "91500000MA5UCQ7L66"}', "answered about another party"),
        (b'{"id": "%s", "scheme": "USCC", "log_index": NaN}' % BANK.encode(), "not JSON"),
        (b'{"id": "%s", "keys": [], "scheme": 1}' % BANK.encode(), "scheme is of the wrong type"),
    ],
)
def test_party_show_checks_the_answer_is_a_party(key: Path, body: bytes, said: str) -> None:
    with fake_service(respond("200 OK", "application/json", body)) as (url, _):
        code, out = encd("party", "show", BANK, *as_bank(url, key))
    assert code == 1 and out.startswith("FAIL:") and said in out, out


def test_an_export_is_written_beside_its_target_under_a_short_name(
    key: Path, tmp_path: Path
) -> None:
    """The file is first written under a temporary name of its own: a target's name as long
    as the file system allows is still one it can write."""
    target = tmp_path / ("e" * 250)
    bundle = b'{"format":"x"}\n'
    answer = respond("200 OK", "application/vnd.encd.bundle+jsonl", bundle)
    with fake_service(answer) as (url, _):
        code, out = encd("export", "DOC-1", "--out", str(target), *as_bank(url, key))
    assert code == 0 and target.read_bytes() == bundle, out
    assert sorted(os.listdir(tmp_path)) == sorted(["bank.key", target.name])


def test_an_export_that_is_not_a_bundle_is_not_written(key: Path, tmp_path: Path) -> None:
    target = tmp_path / "doc.encd"
    with fake_service(respond("200 OK", "application/json", b"{}")) as (url, _):
        code, out = encd("export", "DOC-1", "--out", str(target), *as_bank(url, key))
    assert code == 1
    assert "answered GET /v1/documents/DOC-1/bundle with 'application/json', not" in out
    assert "application/vnd.encd.bundle+jsonl" in out
    assert not target.exists() and os.listdir(tmp_path) == ["bank.key"]


def test_a_refusal_is_printed_as_text(key: Path) -> None:
    """A problem's title, field and detail are the service's text: markup in them is
    printed as it is, an escape sequence escaped."""
    problem = {"title": "Bad [red]", "detail": "x\u001b[31m [/y]", "field": "body.[to]"}
    body = json.dumps(problem).encode()
    with fake_service(respond("422 X", "application/problem+json", body)) as (url, _):
        code, out = encd("title", "DOC-1", *as_bank(url, key))
    assert code == 1 and "\x1b" not in out
    assert "FAIL: 422 Bad [red] [body.[to]]: x\\x1b[31m [/y]" in out


def test_a_redirect_is_not_followed_but_named(key: Path) -> None:
    def moved(_request: bytes, conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 301 Moved Permanently\r\nlocation: https://elsewhere.example/\r\n"
            b"content-length: 0\r\nconnection: close\r\n\r\n"
        )

    with fake_service(moved) as (url, heads):
        code, out = encd("title", "DOC-1", *as_bank(url, key))
    assert code == 1 and len(heads) == 1, "one request, not followed"
    assert (
        f"FAIL: the service at {url} answered GET /v1/service with 301, redirecting to "
        "'https://elsewhere.example/': is the base URL right?"
    ) in out


def test_an_error_page_instead_of_a_problem_is_shown_cut(key: Path) -> None:
    page = b"<html>" + b"x" * 5000 + b"</html>"
    with fake_service(respond("502 Bad Gateway", "text/html", page)) as (url, _):
        code, out = encd("title", "DOC-1", *as_bank(url, key))
    assert code == 1 and "FAIL: 502 Bad Gateway: (not a problem document) '<html>xxx" in out
    assert "(5013 characters)" in out and len(out) < 400


# --- ids that would reach another resource ----------------------------------------------------


@pytest.mark.parametrize("doc", ["../v1/export", "DOC/1", "DOC?x=1", "DOC#1", "doc-1", ""])
def test_a_document_id_is_checked_before_it_is_put_in_a_url(key: Path, doc: str) -> None:
    with fake_service(respond("200 OK", "application/json", b"{}")) as (url, heads):
        for command in (["title", doc], ["history", doc], ["export", doc], ["release", doc]):
            code, out = encd(*command, *as_bank(url, key))
            assert code == 2 and "a document id is 3 to 64 characters" in out, (command, out)
    assert heads == [], "nothing was sent"


def test_a_proposal_id_is_checked_before_it_is_put_in_a_url(key: Path) -> None:
    with fake_service(respond("200 OK", "application/json", b"{}")) as (url, heads):
        code, out = encd("countersign", "../../v1/export", *as_bank(url, key))
    assert code == 2 and "PROPOSAL_ID: expected 64 lowercase hex digits" in out
    assert heads == []


def test_countersign_signs_only_the_text_the_proposal_id_names(key: Path) -> None:
    """A service that answers a proposal id with another text cannot have it signed: the
    id is the text's SHA-256."""
    asked = envelope_text(
        type="release", seq=3, prev="ab" * 32, time="2026-05-01T08:30:00Z", body={}, doc="DOC-1"
    )
    other = envelope_text(
        type="enforce", seq=3, prev="ab" * 32, time="2026-05-01T08:30:00Z", body={}, doc="DOC-1"
    )
    proposal_id = hashlib.sha256(asked).hexdigest()
    body = json.dumps({"id": proposal_id, "text": other.decode()}).encode()
    with fake_service(respond("200 OK", "application/json", body)) as (url, heads):
        code, out = encd("countersign", proposal_id, *as_bank(url, key))
    assert code == 1
    assert (
        f"FAIL: the service sent a text that is not proposal {proposal_id}'s: nothing signed" in out
    )
    assert [h.split(b" ")[0] for h in heads] == [b"GET"], "no signature was posted"


def test_party_ids_are_checked_before_anything_is_sent(key: Path) -> None:
    with fake_service(respond("200 OK", "application/json", b"{}")) as (url, heads):
        code, out = encd("transfer", "DOC-1", "--to", "NOBODY", *as_bank(url, key))
        assert code == 2 and "FAIL: --to: legal id must be" in out, out
        code, out = encd("title", "DOC-1", *as_bank(url, key)[:4], "--party", BANK + " ")
        assert code == 2 and "FAIL: --party (ENCD_PARTY): legal id must be" in out, out
    assert heads == []


# --- files ------------------------------------------------------------------------------------


def test_a_key_that_is_a_directory_is_usage(tmp_path: Path) -> None:
    code, out = encd("title", "DOC-1", *as_bank("http://127.0.0.1:1", tmp_path))
    assert code == 2 and f"FAIL: key file {tmp_path} is not a regular file" in out


def test_a_key_others_can_read_is_warned_of(key: Path) -> None:
    key.chmod(0o644)
    code, out = encd("title", "DOC-1", *as_bank("http://127.0.0.1:1", key))
    assert f"warning: {key} can be read by others (mode 0644): chmod 600 {key}" in out
    assert code == 1  # and it goes on: the service is not there


def test_keygen_says_where_it_cannot_write(tmp_path: Path) -> None:
    code, out = encd("keygen", BANK, "--out", str(tmp_path / "no" / "k.pem"))
    assert code == 2
    assert f"FAIL: cannot write {tmp_path / 'no' / 'k.pem'}: No such file or directory" in out


def test_keygen_takes_only_a_party_id(tmp_path: Path) -> None:
    code, out = encd("keygen", "BANK ONE", "--out", str(tmp_path / "k.pem"))
    assert code == 2 and "FAIL: PARTY: legal id must be" in out
    assert not (tmp_path / "k.pem").exists()


def test_export_keeps_a_file_already_there(key: Path, tmp_path: Path) -> None:
    bundle = b'{"format": "not checked here"}\n'
    answer = respond("200 OK", "application/vnd.encd.bundle+jsonl", bundle)
    with fake_service(answer) as (url, heads):
        code, out = encd("export", "DOC-1", "--out", str(key), *as_bank(url, key))
        assert code == 2 and f"FAIL: {key} exists; refusing to overwrite it (--force to)" in out
        assert heads == [], "refused before downloading"
        assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        target = tmp_path / "doc.encd"
        target.write_bytes(b"old")
        code, out = encd("export", "DOC-1", "--out", str(target), "--force", *as_bank(url, key))
        assert code == 0 and target.read_bytes() == bundle, out
        code, out = encd("export", "DOC-1", "--out", str(tmp_path), *as_bank(url, key))
        assert code == 2 and f"FAIL: --out: {tmp_path} is a directory" in out
        code, out = encd(
            "export", "DOC-1", "--out", str(tmp_path / "no" / "x"), *as_bank(url, key), "--json"
        )
        assert code == 2 and f"--out: no directory {tmp_path / 'no'}" in out
        code, out = encd(
            "export", "DOC-1", "--out", str(tmp_path / "new.encd"), *as_bank(url, key), "--json"
        )
        assert code == 0 and json.loads(out) == {
            "file": str(tmp_path / "new.encd"),
            "bytes": len(bundle),
        }
    assert sorted(os.listdir(tmp_path)) == ["bank.key", "doc.encd", "new.encd"]


def test_yaml_content_with_a_key_twice_is_refused(key: Path, tmp_path: Path) -> None:
    content = tmp_path / "content.yaml"
    content.write_text("id: CQ-1\nid: CQ-2\n")
    code, out = encd("issue", str(content), "--holder", BANK, *as_bank("http://127.0.0.1:1", key))
    assert code == 2 and f"FAIL: {content}: YAML: key 'id' appears twice" in out


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_content_nested_too_deeply_is_refused(key: Path, tmp_path: Path, suffix: str) -> None:
    content = tmp_path / f"content.{suffix}"
    content.write_text('{"a": ' + "[" * 5000 + "]" * 5000 + "}")
    code, out = encd("issue", str(content), "--holder", BANK, *as_bank("http://127.0.0.1:1", key))
    assert code == 2 and f"FAIL: {content}:" in out and "nested too deeply" in out


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_content_with_a_number_too_long_is_refused(key: Path, tmp_path: Path, suffix: str) -> None:
    content = tmp_path / f"content.{suffix}"
    content.write_text('{"id": ' + "9" * 5000 + "}")
    code, out = encd("issue", str(content), "--holder", BANK, *as_bank("http://127.0.0.1:1", key))
    assert code == 2 and f"FAIL: {content}:" in out and "too many digits" in out, out
    assert "set_int_max_str_digits" not in out


def test_a_file_name_is_printed_as_text(tmp_path: Path) -> None:
    where = tmp_path / "[/x]" / "[bold]b.encd"
    where.parent.mkdir(parents=True)
    where.write_text("hi\n")
    code, out = encd("audit", str(where))
    assert code == 1 and f"FAIL: {where}: step 1" in out


# --- the data directory and serve -------------------------------------------------------------


def test_init_and_serve_say_what_is_wrong_with_the_data_dir(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    code, out = encd("init", "--data-dir", str(afile))
    assert code == 2 and f"FAIL: data dir: {afile} is not a directory" in out

    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "service.json").write_text("{}")
    for command in ("init", "serve"):
        code, out = encd(command, "--data-dir", str(junk))
        assert code == 2 and f"{junk / 'service.json'} is not encd's" in out, out
    (junk / "service.json").write_text("not json")
    code, out = encd("serve", "--data-dir", str(junk))
    assert code == 2 and f"FAIL: service.json: {junk / 'service.json'} is not JSON" in out

    keys_only = tmp_path / "keys-only"
    keys_only.mkdir()
    SigningKey.generate("encd.local/log").save(keys_only / "log.key")
    code, out = encd("serve", "--data-dir", str(keys_only))
    assert code == 2 and "holds log.key but no service.json" in out, out

    good = tmp_path / "good"
    code, out = encd("init", "--data-dir", str(good))
    assert code == 0, out
    (good / "log.key").unlink()
    SigningKey.generate("encd.local/log").save(good / "log.key")
    code, out = encd("serve", "--data-dir", str(good))
    assert code == 2 and f"{good / 'log.key'} is not the key service.json names" in out, out


def test_a_lost_ledger_is_refused_not_begun_again_under_the_same_log_key(
    tmp_path: Path,
) -> None:
    """A new genesis signed by the same log key would be a second history: a fork."""
    data = tmp_path / "d"
    code, out = encd("init", "--data-dir", str(data))
    assert code == 0, out
    genesis = json.loads((data / "service.json").read_text())["genesis"]
    assert len(genesis) == 64
    ledger = data / "ledger.db"
    kept = ledger.read_bytes()

    ledger.unlink()
    for command in ("init", "serve"):
        port = ("--port", "0") if command == "serve" else ()
        code, out = encd(command, "--data-dir", str(data), *port)
        assert code == 2, out
        assert f"FAIL: refusing the ledger sqlite:///{ledger}: it does not exist" in out, out
        assert f"began with event {genesis[:16]}" in out and "fork" in out
        assert not ledger.exists()

    ledger.write_bytes(b"")
    code, out = encd("init", "--data-dir", str(data))
    assert code == 2 and "it is empty (no encd tables), but" in out, out
    assert ledger.read_bytes() == b""  # refused before any schema was made in it

    typo = tmp_path / "ledgr.db"
    code, out = encd("init", "--data-dir", str(data), "--db", f"sqlite:///{typo}")
    assert code == 2 and "it does not exist" in out and not typo.exists(), out

    ledger.write_bytes(kept)
    config = json.loads((data / "service.json").read_text())
    (data / "service.json").write_text(json.dumps({**config, "genesis": "ab" * 32}))
    code, out = encd("init", "--data-dir", str(data))
    assert code == 2 and f"it begins with event {genesis[:16]}" in out, out

    # a data directory from before the genesis was recorded: its ledger, lost or not
    # named, is refused too (its first start made it); found, it gets its genesis recorded
    del config["genesis"]
    (data / "service.json").write_text(json.dumps(config))
    ledger.rename(tmp_path / "moved.db")
    for command in ("init", "serve"):
        port = ("--port", "0") if command == "serve" else ()
        code, out = encd(command, "--data-dir", str(data), *port)
        assert code == 2 and "it does not exist, but" in out, out
        assert "was written by an encd that recorded no genesis" in out, out
        assert not ledger.exists()
    ledger.write_bytes(b"")
    code, out = encd("serve", "--data-dir", str(data), "--port", "0")
    assert code == 2 and "it is empty (no encd tables), but" in out, out
    assert ledger.read_bytes() == b""
    (tmp_path / "moved.db").rename(ledger)
    assert "genesis" not in json.loads((data / "service.json").read_text())
    code, out = encd("init", "--data-dir", str(data))
    assert code == 0 and out.startswith(f"Found {data}/"), out
    assert json.loads((data / "service.json").read_text())["genesis"] == genesis


def _register_newcomers(data: Path, names: list[str]) -> int:
    """Append one party registration per name, signed by the data directory's operator key,
    straight to its SQLite ledger (as the service would); the log's size after them."""
    from datetime import UTC, datetime

    from encd.events import make_event
    from ledger.ledger import Ledger
    from tests.kit import uscc

    config = json.loads((data / "service.json").read_text())
    log_key = SigningKey.load(config["origin"], data / "log.key")
    operator = SigningKey.load(config["operator_id"], data / "operator.key")
    with Ledger(f"sqlite:///{data / 'ledger.db'}", log_key) as ledger:
        for name in names:
            party = uscc(f"91500000MA7{hashlib.sha256(name.encode()).hexdigest()[:6].upper()}")
            newcomer = SigningKey(party, hashlib.sha256(name.encode()).digest())
            ledger.append(
                make_event(
                    [operator],
                    type="register",
                    party=party,
                    seq=0,
                    prev=None,
                    time=datetime.now(UTC),
                    body={"name": name, "roles": ["trader"], "keys": [newcomer.public.vkey]},
                )
            )
        return ledger.size()


def _kept_size(data: Path) -> int:
    """The tree size of the checkpoint kept in ``<data dir>/checkpoint``."""
    text = (data / "checkpoint").read_bytes().split(b"\n\n")[0]
    return int(text.split(b"\n")[1])


def test_an_older_copy_of_the_ledger_or_another_history_is_refused(tmp_path: Path) -> None:
    """Restoring a backup older than the log would have the log key sign a fork: the newest
    checkpoint is kept in the data directory, and a ledger that does not extend it is
    refused until the operator removes that file."""
    data = tmp_path / "d"
    ledger = data / "ledger.db"
    code, out = encd("init", "--data-dir", str(data))
    assert code == 0, out
    assert _kept_size(data) == 1
    backup = ledger.read_bytes()  # (the service is stopped: the file is the whole ledger)

    assert _register_newcomers(data, ["Alpha Trading", "Beta Trading"]) == 3
    code, out = encd("init", "--data-dir", str(data))  # extends the kept one: kept anew
    assert code == 0 and _kept_size(data) == 3, out
    newest = ledger.read_bytes()
    signed = (data / "checkpoint").read_bytes()

    ledger.write_bytes(backup)
    for command in ("init", "serve"):
        port = ("--port", "0") if command == "serve" else ()
        code, out = encd(command, "--data-dir", str(data), *port)
        assert code == 2, out
        assert (
            f"FAIL: refusing the ledger sqlite:///{ledger}: it holds 1 entry, but this log has "
            f"signed a checkpoint of 3 entries ({data / 'checkpoint'}): it is an older copy"
        ) in out, out
        assert "fork" in out and f"remove {data / 'checkpoint'}" in out, out
    assert ledger.read_bytes() == backup  # nothing was appended or signed
    assert (data / "checkpoint").read_bytes() == signed

    # the operator, knowing, removes the file: the copy is served and grows another history
    (data / "checkpoint").unlink()
    code, out = encd("init", "--data-dir", str(data))
    assert code == 0 and _kept_size(data) == 1, out
    assert _register_newcomers(data, ["Gamma Trading", "Delta Trading", "Omega Trading"]) == 4
    # ... which the checkpoint of the first history (3 entries) does not lead to
    (data / "checkpoint").write_bytes(signed)
    code, out = encd("init", "--data-dir", str(data))
    assert code == 2, out
    assert (
        "its tree of 4 entries does not extend the checkpoint of 3 entries this log has signed"
    ) in out and "another history" in out, out

    # the newest copy is taken again, and so is a copy that extends what is kept
    ledger.write_bytes(newest)
    code, out = encd("init", "--data-dir", str(data))
    assert code == 0 and _kept_size(data) == 3, out
    assert _register_newcomers(data, ["Epsilon Trading"]) == 4
    code, out = encd("init", "--data-dir", str(data))
    assert code == 0 and _kept_size(data) == 4, out

    # a file that is not a checkpoint of this log is replaced, with a warning
    (data / "checkpoint").write_bytes(b"not a checkpoint\n")
    code, out = encd("init", "--data-dir", str(data))
    assert code == 0 and _kept_size(data) == 4, out


def test_a_data_dir_whose_ledger_cannot_be_started_is_taken_away(tmp_path: Path) -> None:
    data = tmp_path / "d"
    nowhere = f"sqlite:///{tmp_path / 'no' / 'such' / 'ledger.db'}"
    code, out = encd(
        "init", "--data-dir", str(data), "--db", nowhere, "--operator-name", "Typo Name"
    )
    assert code == 1 and "FAIL: cannot open the ledger" in out, out
    assert not data.exists()
    nested = tmp_path / "new" / "parents" / "d"  # the parents it made go too
    code, out = encd("init", "--data-dir", str(nested), "--db", nowhere)
    assert code == 1 and "FAIL: cannot open the ledger" in out, out
    assert sorted(p.name for p in tmp_path.iterdir()) == [], out
    code, out = encd("init", "--data-dir", str(data), "--operator-name", "Right Name")
    assert code == 0 and out.startswith(f"Created {data}/"), out
    assert json.loads((data / "service.json").read_text())["operator_name"] == "Right Name"
    with closing(sqlite3.connect(data / "ledger.db")) as db:
        (raw,) = db.execute("SELECT raw FROM event WHERE log_index = 0").fetchone()
    genesis = Event.parse(bytes(raw))  # the operator registered under the name given
    assert (genesis.type, genesis.body["name"]) == ("register", "Right Name")

    there = tmp_path / "there"  # a directory that existed stays, emptied of what init made
    there.mkdir()
    (there / "notes.txt").write_text("mine")
    code, out = encd("init", "--data-dir", str(there), "--db", nowhere)
    assert code == 1 and sorted(p.name for p in there.iterdir()) == ["notes.txt"], out


def test_taking_a_new_ledger_away_spares_files_that_were_there(tmp_path: Path) -> None:
    """A -wal left beside a lost ledger may hold its data: it is never counted as made."""
    from api.setup import new_sqlite_files

    ledger = tmp_path / "ledger.db"
    (tmp_path / "ledger.db-wal").write_bytes(b"someone's pages")
    made = new_sqlite_files(f"sqlite:///{ledger}")
    assert ledger in made and tmp_path / "ledger.db-shm" in made
    assert tmp_path / "ledger.db-wal" not in made
    ledger.write_bytes(b"")
    assert new_sqlite_files(f"sqlite:///{ledger}") == []


def test_init_refuses_an_origin_or_operator_other_than_the_data_dirs(tmp_path: Path) -> None:
    data = tmp_path / "d"
    code, out = encd("init", "--data-dir", str(data), "--origin", "a.example/log")
    assert code == 0, out
    code, out = encd("init", "--data-dir", str(data), "--origin", "b.example/log")
    assert code == 2, out
    assert f"FAIL: origin: {data} is the log 'a.example/log', not 'b.example/log'" in out
    code, out = encd("serve", "--data-dir", str(data), "--origin", "b.example/log")
    assert code == 2 and "FAIL: origin:" in out, out
    code, out = encd("init", "--data-dir", str(data), "--operator-name", "Someone Else")
    assert code == 2 and "FAIL: operator name:" in out and "'Someone Else'" in out, out
    code, out = encd("init", "--data-dir", str(data), "--origin", "a.example/log")
    assert code == 0 and out.startswith(f"Found {data}/"), out
    for origin, said in [
        ("", "key name must not be empty"),
        ("my log", "must not contain spaces"),
        ("https://a.example/log", "a URL without its scheme"),
        ("x" * 256, "at most 255 ASCII characters"),
        ("日志.example/log", "at most 255 ASCII characters"),
    ]:
        code, out = encd("init", "--data-dir", str(tmp_path / "new"), "--origin", origin)
        assert code == 2 and "FAIL: origin:" in out and said in out, out
        assert not (tmp_path / "new").exists()


def test_a_new_ledger_with_the_placeholder_operator_is_noticed(tmp_path: Path) -> None:
    """Its first event names the operator for good: a placeholder id is said, once."""
    placeholder = "NOTICE: the operator is the placeholder party 91500000MA6000001G"
    code, out = encd("init", "--data-dir", str(tmp_path / "a"))
    assert code == 0 and placeholder in out and "--operator-id <your USCC or LEI>" in out, out
    code, out = encd("init", "--data-dir", str(tmp_path / "a"))
    assert code == 0 and placeholder not in out, out  # found, not made: said already
    own = "91500000MA5UCQ7L66"
    code, out = encd("init", "--data-dir", str(tmp_path / "b"), "--operator-id", own)
    assert code == 0 and "NOTICE" not in out and f"party {own}" in out, out


def test_init_leaves_the_mode_of_a_directory_it_did_not_make(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    code, out = encd("init", "--data-dir", str(tmp_path))
    assert code == 0, out
    assert tmp_path.stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "log.key").stat().st_mode & 0o777 == 0o600
    code, out = encd("init", "--data-dir", str(tmp_path / "new"))
    assert code == 0 and (tmp_path / "new").stat().st_mode & 0o777 == 0o700


def test_serve_with_one_worker_refuses_a_port_taken_before_it_starts(tmp_path: Path) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = str(taken.getsockname()[1])
    with taken:
        code, out = encd("serve", "--data-dir", str(tmp_path / "d"), "--port", port)
    assert code == 1 and f"FAIL: cannot listen on 127.0.0.1:{port}:" in out, out


def test_serve_refuses_a_ledger_that_is_not_one(tmp_path: Path) -> None:
    code, out = encd("init", "--data-dir", str(tmp_path))
    assert code == 0, out
    (tmp_path / "ledger.db").write_bytes(b"not a database, not at all" * 100)
    for workers in ("1", "2"):
        code, out = encd("serve", "--data-dir", str(tmp_path), "--port", "0", "--workers", workers)
        assert code == 1, out
        assert f"FAIL: cannot open the ledger sqlite:///{tmp_path / 'ledger.db'}" in out
        assert "file is not a database" in out


def test_serve_hides_the_database_password(tmp_path: Path) -> None:
    url = "postgresql://encd:s3cret@127.0.0.1:1/encd"
    code, out = encd("serve", "--data-dir", str(tmp_path), "--db", url, "--port", "0")
    assert code == 1 and "cannot open the ledger postgresql://encd:***@127.0.0.1:1/encd" in out
    assert "s3cret" not in out


@pytest.mark.parametrize("port", ["-1", "65536", "84236"])
def test_serve_takes_only_a_port(tmp_path: Path, port: str) -> None:
    for workers in ("1", "2"):
        code, out = encd("serve", "--data-dir", str(tmp_path), "--port", port, "--workers", workers)
        assert code == 2 and "--port" in out, out
    assert not (tmp_path / "log.key").exists()


def test_demo_says_when_it_cannot_write_its_output(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    code, out = encd("demo", "--out", str(afile))
    assert code == 2 and f"FAIL: --out: cannot make the directory {afile}:" in out
    taken = tmp_path / "ENCD-CQ-2026-000417.encd"
    taken.mkdir()
    code, out = encd("demo", "--out", str(tmp_path))
    assert code == 2 and f"FAIL: --out: {taken} is not a regular file" in out, out


def test_keygen_refuses_a_passphrase_it_was_not_asked_to_use(tmp_path: Path) -> None:
    out_key = tmp_path / "me.key"
    env = {"ENCD_KEY_PASSPHRASE": "correct-horse"}
    code, out = encd("keygen", BANK, "--out", str(out_key), env=env)
    assert code == 2 and "ENCD_KEY_PASSPHRASE is set but --encrypt is not given" in out, out
    assert not out_key.exists()
    code, out = encd("keygen", BANK, "--out", str(out_key), "--encrypt", env=env)
    assert code == 0 and b"ENCRYPTED" in out_key.read_bytes(), out


@pytest.mark.parametrize("byte", [10, 11])  # 1.3.100.112 (unknown); 1.3.101.113 (Ed448)
def test_a_key_of_an_algorithm_encd_does_not_know_is_named(tmp_path: Path, byte: int) -> None:
    good = tmp_path / "good.key"
    SigningKey.generate(BANK).save(good)
    pem = good.read_text().splitlines()
    der = bytearray(base64.b64decode("".join(pem[1:-1])))
    der[byte] ^= 1  # inside the algorithm's object identifier, 1.3.101.112
    flipped = tmp_path / "flip.key"
    body = base64.b64encode(bytes(der)).decode()
    flipped.write_text(f"{pem[0]}\n{body}\n{pem[-1]}\n")
    flipped.chmod(0o600)
    code, out = encd("title", "DOC-1", *as_bank("http://127.0.0.1:1", flipped))
    assert code == 2 and f"FAIL: key file {flipped}: private key: not an Ed25519 key" in out, out


@pytest.mark.parametrize(
    ("maturity", "said"),
    [
        ("2020-01-31", "--maturity: 2020-01-31 is past: a pledge is for a loan not yet due"),
        ("2027-02-30", "--maturity: expected a real date YYYY-MM-DD, got '2027-02-30'"),
        ("20270101", "--maturity: expected a real date YYYY-MM-DD, got '20270101'"),
    ],
)
def test_a_pledge_maturity_must_be_a_date_to_come(key: Path, maturity: str, said: str) -> None:
    with fake_service(respond("200 OK", "application/json", b"{}")) as (url, heads):
        code, out = encd(
            "pledge",
            "DOC-1",
            "--bank",
            BANK,
            "--loan-ref",
            "L-1",
            "--amount",
            "10.00",
            "--currency",
            "USD",
            "--registry-ref",
            "R-1",
            "--maturity",
            maturity,
            *as_bank(url, key),
        )
    assert code == 2 and f"FAIL: {said}" in out, out
    assert heads == []


PLEDGE = ["--bank", BANK, "--loan-ref", "L-1", "--registry-ref", "R-1", "--maturity", "2099-01-01"]
MILESTONE = ["--kind", "departed", "--locode", "CNQZH", "--place", "Qinzhou"]
OTHER = "91500000MA5UCQ7L66"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["pledge", "DOC-1", *PLEDGE, "--amount", "1e9", "--currency", "USD"],
            "--amount: expected a decimal amount",
        ),
        (["pledge", "DOC-1", *PLEDGE, "--amount", "-5", "--currency", "USD"], "got '-5'"),
        (
            ["pledge", "DOC-1", *PLEDGE, "--amount", "0", "--currency", "USD"],
            "--amount: amount must be greater than 0",
        ),
        (
            ["pledge", "DOC-1", *PLEDGE, "--amount", "10", "--currency", "usd"],
            "--currency: ISO 4217",
        ),
        (["pledge", "DOC-1", *PLEDGE, "--amount", "10", "--currency", "HRK"], "not an active code"),
        (["milestone", "DOC-1", *MILESTONE, "--kind", "x"], "--kind: expected 'gate_in'"),
        (["milestone", "DOC-1", *MILESTONE, "--locode", "cnqzh"], "--locode: UN/LOCODE must be"),
        (["milestone", "DOC-1", *MILESTONE, "--place", "x" * 101], "--place:"),
        (
            ["milestone", "DOC-1", *MILESTONE, "--at", "yesterday"],
            "--at: expected an RFC 3339 UTC time",
        ),
        (
            ["milestone", "DOC-1", *MILESTONE, "--at", "2062-05-01T08:00:00Z"],
            "--at: 2062-05-01T08:00:00Z is in the future",
        ),
        (
            ["party", "register", OTHER, "--name", "N", "--role", "wizard", "--vkey", "v"],
            "--role: expected one of carrier",
        ),
        (
            ["party", "register", BANK, "--name", "N", *("--role", "bank") * 2, "--vkey", "VKEY"],
            "--role: bank is given twice",
        ),
        (
            ["party", "register", BANK, "--name", "N", "--role", "bank", *("--vkey", "VKEY") * 2],
            "--vkey: VKEY is given twice",
        ),
        (
            ["party", "register", OTHER, "--name", "N", "--role", "trader", "--vkey", "garbage"],
            "--vkey (1): expected <name>+<8 hex digits>+<base64 key>",
        ),
        (
            ["party", "register", OTHER, "--name", "N", "--role", "trader", "--vkey", "VKEY"],
            f"--vkey (1): a key of {BANK}, not of {OTHER}",
        ),
    ],
)
def test_an_event_body_is_checked_before_it_is_sent(key: Path, args: list[str], said: str) -> None:
    vkey = SigningKey.generate(BANK).public.vkey
    args = [vkey if a == "VKEY" else a for a in args]
    said = said.replace("VKEY", vkey)
    with fake_service(respond("200 OK", "application/json", b"{}")) as (url, heads):
        code, out = encd(*args, *as_bank(url, key))
    assert code == 2 and out.startswith("FAIL: ") and said in out, out
    assert heads == []


def test_a_failure_under_json_is_json_too(key: Path) -> None:
    """A script reading --json output gets the failure on standard output as well."""
    result = runner.invoke(app, ["title", "DOC-1", *as_bank("http://127.0.0.1:1", key), "--json"])
    assert result.exit_code == 1
    failure = json.loads(result.stdout)
    assert failure["ok"] is False and failure["exit"] == 1
    assert failure["error"].startswith("cannot reach the service at http://127.0.0.1:1")
    result = runner.invoke(app, ["title", "doc/1", *as_bank("http://127.0.0.1:1", key), "--json"])
    assert result.exit_code == 2 and json.loads(result.stdout)["exit"] == 2
    result = runner.invoke(app, ["title", "DOC-1", *as_bank("http://127.0.0.1:1", key)])
    assert result.stdout == "", "without --json, standard output holds results only"


# --- second campaign: odd answers, URLs, files and names --------------------------------------


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (
            respond("200 OK", "application/json", b"[" * 100_000 + b"]" * 100_000),
            "answered GET /v1/service with 'application/json', not JSON",
        ),
        (
            respond("400 Bad Request", "application/problem+json", b"[" * 100_000),
            "FAIL: 400 Bad Request: (not a problem document) '[[[",
        ),
    ],
)
def test_an_answer_nested_too_deeply_is_named(key: Path, answer: Answer, said: str) -> None:
    with fake_service(answer) as (url, _):
        code, out = encd("title", "DOC-1", *as_bank(url, key))
    assert code == 1 and said in out, out


@pytest.mark.parametrize(
    ("command", "body", "said"),
    [
        (["proposals"], {"proposals": 5}, "in the service's answer, proposals is of the wrong"),
        (["history", "DOC-1"], {"events": 5}, "in the service's answer, events is of the wrong"),
        (
            ["history", "DOC-1"],
            {"events": [{"index": 3, "event": "\ud800"}]},
            "in the service's answer, events.0.event is not UTF-8 text",
        ),
        (
            ["proposals"],
            {
                "proposals": [
                    {"id": "\ud800", "text": "{}", "type": "x", "document": "D", "missing": []}
                ]
            },
            "in the service's answer, id is not UTF-8 text",
        ),
    ],
)
def test_answers_of_the_wrong_shape_are_named(
    key: Path, command: list[str], body: dict[str, object], said: str
) -> None:
    raw = json.dumps(body).encode()  # (a lone surrogate goes as the escape \\ud800)
    with fake_service(respond("200 OK", "application/json", raw)) as (url, _):
        code, out = encd(*command, *as_bank(url, key))
    assert code == 1 and f"FAIL: {said}" in out, out


@pytest.mark.parametrize(
    "server",
    [
        "http://a..b",
        "http://[::1",
        "http://[bold]x",
        "http://xn--.com",
        "http://.:1",
        "http://" + "a" * 300,
        "http://127.0.0.1:8080\r",
        "http://127.0.0.1:018080",
        "http://user:s3cret@127.0.0.1:8080",
        "http://127.0.0.1:8080/prefix",
        "http://127.0.0.1:8080?",
        "http://127.0.0.1:8080#",
        " http://127.0.0.1:8080",
    ],
)
def test_a_server_that_only_looks_like_a_base_url_is_usage(key: Path, server: str) -> None:
    code, out = encd("title", "DOC-1", *as_bank(server, key))
    assert code == 2 and "FAIL: --server (ENCD_SERVER): expected the service's base URL" in out


@pytest.mark.parametrize("server", ["http://[::1]:8080", "https://ledger.example.com/"])
def test_base_urls_pass(server: str) -> None:
    from encd.cli import base_url

    assert base_url(server)


def test_a_proxy_that_cannot_be_used_is_usage(key: Path) -> None:
    code, out = encd(
        "title", "DOC-1", *as_bank("http://127.0.0.1:1", key), env={"HTTP_PROXY": "ftp://x"}
    )
    assert code == 2 and "FAIL: cannot set up a connection to http://127.0.0.1:1:" in out, out


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_a_ctrl_c_while_waiting_for_the_service_is_said(key: Path, as_json: bool) -> None:
    """typer ends a command interrupted by Ctrl-C with 130 and says nothing, so under
    --json a script got no JSON (cli.md: it always does)."""
    released = threading.Event()
    with fake_service(lambda _request, _conn: released.wait(30)) as (url, heads):
        command = [sys.executable, "-m", "encd.cli", "title", "DOC-1", *as_bank(url, key)]
        process = subprocess.Popen(
            command + (["--json"] if as_json else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not heads:  # it waits for the answer now
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.02)
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)
        finally:
            released.set()
            if process.poll() is None:
                process.kill()
    assert process.returncode == 130, (out, err)
    assert err.startswith("FAIL: interrupted (Ctrl-C) while waiting for the service"), err
    if as_json:
        failure = json.loads(out)
        assert failure["ok"] is False and failure["exit"] == 130, out
        assert failure["error"].startswith("interrupted"), out
    else:
        assert out == ""


def test_a_proxy_that_is_down_is_named_as_the_way_taken(key: Path) -> None:
    """A proxy from the environment that does not answer was reported as the service
    refusing the connection."""
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    proxy = f"http://127.0.0.1:{port}"
    env = {"HTTP_PROXY": proxy, "http_proxy": None, "NO_PROXY": None, "no_proxy": None}
    code, out = encd("title", "DOC-1", *as_bank("http://127.0.0.1:1", key), env=env)
    assert code == 1, out
    said = f"cannot reach the service at http://127.0.0.1:1, through the proxy '{proxy}'"
    assert said in " ".join(out.split()), out
    env["NO_PROXY"] = "127.0.0.1"  # not taken for this host: not named
    code, out = encd("title", "DOC-1", *as_bank("http://127.0.0.1:1", key), env=env)
    assert code == 1 and "proxy" not in out, out


def test_a_ca_file_that_is_missing_is_named_with_its_variable(key: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-ca.pem"
    code, out = encd(
        "title",
        "DOC-1",
        *as_bank("https://127.0.0.1:1", key),
        env={"SSL_CERT_FILE": str(missing)},
    )
    assert code == 2, out
    assert f"SSL_CERT_FILE='{missing}'" in " ".join(out.split()), out


def test_export_force_replaces_only_a_regular_file(key: Path, tmp_path: Path) -> None:
    (tmp_path / "real.encd").write_text("mine")
    (tmp_path / "link.encd").symlink_to(tmp_path / "real.encd")
    (tmp_path / "dangling.encd").symlink_to(tmp_path / "nothing")
    os.mkfifo(tmp_path / "pipe.encd")
    answer = respond("200 OK", "application/vnd.encd.bundle+jsonl", b"{}\n")
    with fake_service(answer) as (url, _):
        for name, said in (
            ("link.encd", "is a symbolic link; --force replaces only a regular file"),
            ("pipe.encd", "is not a regular file; --force replaces only a regular file"),
            ("dangling.encd", "is a symbolic link; --force replaces only a regular file"),
        ):
            target = tmp_path / name
            code, out = encd("export", "DOC-1", "--out", str(target), "--force", *as_bank(url, key))
            assert code == 2 and f"FAIL: --out: {target} {said}" in out, out
        code, out = encd(
            "export", "DOC-1", "--out", str(tmp_path / "dangling.encd"), *as_bank(url, key)
        )
        assert code == 2 and "dangling.encd exists; refusing to overwrite it" in out, out
    assert (tmp_path / "real.encd").read_text() == "mine"
    assert (tmp_path / "link.encd").is_symlink() and (tmp_path / "dangling.encd").is_symlink()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:s3cret@127.0.0.1:notaport/db",
        "postgresql://u@127.0.0.1:1/db?password=s3cret",
        "postgresql//u:s3cret@h/db",
    ],
)
def test_no_database_password_is_printed(tmp_path: Path, url: str) -> None:
    code, out = encd("init", "--data-dir", str(tmp_path), "--db", url)
    assert code == 1 and "FAIL: cannot open the ledger" in out, out
    assert "s3cret" not in out


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("\x1b[2JOp", "expected text without control characters"),
        ("x" * 500, "at most 200 characters"),
    ],
)
def test_init_refuses_an_operator_name_before_writing_anything(
    tmp_path: Path, name: str, said: str
) -> None:
    code, out = encd("init", "--data-dir", str(tmp_path / "d"), "--operator-name", name)
    assert code == 2 and "FAIL: operator name:" in out and said in out, out
    assert not (tmp_path / "d").exists()


def test_a_key_is_not_left_empty_when_it_cannot_be_written(tmp_path: Path) -> None:
    """A file size limit stands in for a full disk: the write fails, nothing is left."""
    script = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from encd.keys import SigningKey\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (10, 10))\n"
        "try:\n"
        f"    SigningKey.generate('{BANK}').save(Path(sys.argv[1]))\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno)\n"
    )
    target = tmp_path / "k.pem"
    done = subprocess.run(
        [sys.executable, "-c", script, str(target)], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("refused"), done
    assert not target.exists()


def test_emoji_codes_are_printed_as_written(key: Path, tmp_path: Path) -> None:
    out_key = tmp_path / ":smile:.key"
    code, out = encd("keygen", BANK, "--out", str(out_key))
    assert code == 0 and f"Wrote {out_key}" in out and "😄" not in out
    problem = json.dumps({"title": ":skull:", "detail": ":smile:"}).encode()
    with fake_service(respond("400 Bad Request", "application/problem+json", problem)) as (url, _):
        code, out = encd("title", "DOC-1", *as_bank(url, key))
    assert code == 1 and "FAIL: 400 :skull:: :smile:" in out and "💀" not in out


def test_a_refusal_cannot_print_a_line_of_its_own(key: Path) -> None:
    problem = {"title": "Forbidden", "detail": "x\nOK: transfer logged at index 9\n" * 20_000}
    body = json.dumps(problem).encode()
    with fake_service(respond("403 Forbidden", "application/problem+json", body)) as (url, _):
        result = runner.invoke(app, ["title", "DOC-1", *as_bank(url, key)])
    lines = result.output.splitlines()
    assert result.exit_code == 1 and len(lines) == 1, lines[:3]
    assert lines[0].startswith("FAIL: 403 Forbidden: x OK: transfer logged at index 9 x OK")
    assert lines[0].endswith("characters)") and len(lines[0]) < 1200


def test_an_error_without_a_title_gets_the_status_phrase(key: Path) -> None:
    with fake_service(respond("500 Internal Server Error", "text/plain", b"oops")) as (url, _):
        code, out = encd("title", "DOC-1", *as_bank(url, key))
    assert code == 1 and "FAIL: 500 Internal Server Error: (not a problem document) 'oops'" in out


def test_yaml_merges_may_be_overridden_and_long_integers_are_refused(
    key: Path, tmp_path: Path
) -> None:
    merged = tmp_path / "merged.yaml"
    merged.write_text("base: &b {x: 1}\nitem:\n  <<: *b\n  x: 2\n")
    code, out = encd("issue", str(merged), "--holder", BANK, *as_bank("http://127.0.0.1:1", key))
    assert code == 2 and f"FAIL: {merged}: id: required field is missing" in out, out  # (YAML)
    long = tmp_path / "long.yaml"
    long.write_text("n: " + "9" * 5000 + "\n")
    code, out = encd("issue", str(long), "--holder", BANK, *as_bank("http://127.0.0.1:1", key))
    assert code == 2 and f"FAIL: {long}: YAML:" in out and "digits" in out, out


def test_content_and_keys_must_be_regular_files(key: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code, out = encd("issue", str(fifo), "--holder", BANK, *as_bank("http://127.0.0.1:1", key))
    assert code == 2 and f"FAIL: {fifo} is not a regular file" in out
    code, out = encd("title", "DOC-1", *as_bank("http://127.0.0.1:1", fifo))
    assert code == 2 and f"FAIL: key file {fifo} is not a regular file" in out
    code, out = encd("keygen", BANK, "--out", str(tmp_path))
    assert code == 2 and f"FAIL: --out: {tmp_path} is a directory" in out


def test_a_service_json_nested_too_deeply_is_named(tmp_path: Path) -> None:
    (tmp_path / "service.json").write_text("[" * 100_000 + "]" * 100_000)
    code, out = encd("serve", "--data-dir", str(tmp_path))
    assert code == 2 and f"FAIL: service.json: {tmp_path / 'service.json'} is not JSON" in out


def test_what_no_command_foresaw_is_one_line_too(key: Path) -> None:
    """The installed command, writing to a full device: one FAIL line, exit 1."""
    encd_bin = Path(sys.executable).parent / "encd"
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [str(encd_bin), "keygen", BANK, "--out", str(key.parent / "new.key")],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["FAIL: OSError: [Errno 28] No space left on device"]


def test_countersign_says_which_fields_an_amendment_changes(key: Path) -> None:
    from tests.kit import corridor_document

    held = corridor_document()
    del held["notify_party"]["address"]
    # a null member is no change: the service holds content without them (title.md §1)
    amended = dict(held, freight="collect", remarks="re-routed")
    amended["notify_party"] = dict(held["notify_party"], address=None)
    text = envelope_text(
        type="amend",
        seq=4,
        prev="ab" * 32,
        time="2026-05-01T08:30:00Z",
        body={"content": amended, "supersedes": "cd" * 32},
        doc=held["id"],
    )
    proposal_id = hashlib.sha256(text).hexdigest()

    def service(request: bytes, conn: socket.socket) -> None:
        line = request.split(b"\r\n")[0].decode()
        if line.startswith(f"GET /v1/proposals/{proposal_id}"):
            body: object = {"id": proposal_id, "text": text.decode()}
        elif line.startswith(f"GET /v1/documents/{held['id']}"):
            body = {"title": {"content": held}}
        else:  # the countersignature
            body = {"id": proposal_id, "state": "open", "missing": ["the pledgee X"]}
        respond("200 OK", "application/json", json.dumps(body).encode())(request, conn)

    with fake_service(service) as (url, heads):
        code, out = encd("countersign", proposal_id, *as_bank(url, key))
    assert code == 0, out
    assert f"OK: signed amendment of {held['id']}'s content" in out
    assert "changing freight, remarks; still waiting for the pledgee X" in out
    assert [h.split(b" ")[0] for h in heads] == [b"GET", b"GET", b"POST"], "shown, then signed"


def test_an_empty_passphrase_is_no_passphrase(tmp_path: Path) -> None:
    locked = tmp_path / "locked.key"
    SigningKey.generate(BANK).save(locked, b"open sesame")
    code, out = encd(
        "title", "DOC-1", *as_bank("http://127.0.0.1:1", locked), env={"ENCD_KEY_PASSPHRASE": ""}
    )
    assert code == 2 and f"FAIL: {locked} is encrypted: set ENCD_KEY_PASSPHRASE" in out, out


@pytest.mark.parametrize(
    "args",
    [
        ("title", "CQ-1", "--key", "", "--party", BANK),
        ("keygen", BANK, "--out", ""),
        ("init", "--data-dir", ""),
        ("audit", ""),
        ("witness", "init", "", "--name", "w.example/w1", "--log", "x"),
        ("export", "CQ-1", "--out", "", "--party", BANK),
    ],
)
def test_an_empty_path_is_refused_by_name_not_read_as_the_current_directory(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    code, out = encd(*args)
    assert code == 2 and "a path must not be empty" in out, out
    assert list(tmp_path.iterdir()) == []


def test_a_clear_key_is_read_with_encd_key_passphrase_set(tmp_path: Path) -> None:
    """One ENCD_KEY_PASSPHRASE serves every command: a clear key (a data directory's
    operator.key beside an encrypted party key) is read as it is."""
    clear = tmp_path / "clear.key"
    SigningKey.generate(BANK).save(clear)
    code, out = encd(
        "title", "DOC-1", *as_bank("http://127.0.0.1:1", clear), env={"ENCD_KEY_PASSPHRASE": "pw"}
    )
    assert code == 1 and "key file" not in out and "127.0.0.1:1" in out, out


def test_an_encrypted_data_dir_key_is_named_with_why(tmp_path: Path) -> None:
    data = tmp_path / "d"
    code, out = encd("init", "--data-dir", str(data))
    assert code == 0, out
    key = SigningKey.load("91500000MA6000001G", data / "operator.key")
    (data / "operator.key").unlink()
    key.save(data / "operator.key", b"pw")
    code, out = encd("serve", "--data-dir", str(data), env={"ENCD_KEY_PASSPHRASE": "pw"})
    assert code == 2, out
    assert f"{data / 'operator.key'} is encrypted: the service reads its data directory's" in out


def test_operator_key_may_leave_the_server_once_the_ledger_has_begun(tmp_path: Path) -> None:
    """The service signs with operator.key only the ledger's first event: afterwards the
    operator keeps it elsewhere, and whoever reads the data directory cannot use it."""
    from api.client import Client
    from api.server import running
    from api.settings import Settings
    from api.setup import load_or_init

    data = tmp_path / "d"
    code, out = encd("init", "--data-dir", str(data))
    assert code == 0, out
    config = json.loads((data / "service.json").read_text())
    (data / "operator.key").rename(tmp_path / "operator.key")
    code, out = encd("init", "--data-dir", str(data))
    assert code == 0 and "operator key kept elsewhere" in out, out
    settings = Settings(data_dir=data, database_url=f"sqlite:///{data / 'ledger.db'}")
    operator = SigningKey.load(config["operator_id"], tmp_path / "operator.key")
    with running(settings) as url, Client(url, operator) as client:
        assert client.service()["operator_key"] == config["operator_vkey"]
        assert client.party(config["operator_id"])["roles"] == ["operator"]

    fresh = tmp_path / "fresh"  # a ledger not begun yet needs it, to begin
    load_or_init(fresh)
    (fresh / "operator.key").unlink()
    code, out = encd("init", "--data-dir", str(fresh))
    assert code == 2 and f"{fresh / 'operator.key'} is missing" in out, out


def proposal_view(pid: str) -> dict[str, object]:
    envelope = {"type": "void", "doc": "DOC-1", "body": {"reason": "lost"}}
    return {
        "id": pid,
        "text": json.dumps(envelope),
        "type": "void",
        "document": "DOC-1",
        "missing": ["the carrier"],
    }


def test_proposals_are_listed_page_after_page(key: Path) -> None:
    first, second = "a" * 64, "b" * 64

    def paged(request: bytes, conn: socket.socket) -> None:
        asked_after = f"after={first}".encode() in request.split(b"\r\n")[0]
        page = (
            {"proposals": [proposal_view(second)], "next": None}
            if asked_after
            else {"proposals": [proposal_view(first)], "next": first}
        )
        respond("200 OK", "application/json", json.dumps(page).encode())(request, conn)

    with fake_service(paged) as (url, heads):
        code, out = encd("proposals", *as_bank(url, key))
    assert code == 0, out
    assert out.index(first) < out.index(second) and len(heads) == 2


def test_a_service_sending_the_same_page_again_is_not_followed_for_ever(key: Path) -> None:
    page = {"proposals": [proposal_view("a" * 64)], "next": "a" * 64}
    with fake_service(respond("200 OK", "application/json", json.dumps(page).encode())) as (
        url,
        heads,
    ):
        code, out = encd("proposals", *as_bank(url, key))
    assert code == 1 and "sends back to page" in out and len(heads) == 2, out


def test_init_in_a_directory_that_was_there_says_so_and_warns_of_its_mode(
    tmp_path: Path,
) -> None:
    """It was told "Created existing/ (mode 0700)" of a directory it did not make and whose
    mode it kept (0755): the ledger in it readable by every user."""
    made = tmp_path / "made"
    code, out = encd("init", "--data-dir", str(made))
    assert code == 0 and f"Created {made}/ (mode 0700) log key" in _words(out), out
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    for mode, warned in ((0o755, True), (0o700, False)):
        there = tmp_path / f"there-{mode:o}"
        there.mkdir()
        there.chmod(mode)
        code, out = encd("init", "--data-dir", str(there))
        assert code == 0, out
        said = (
            f"Created the service's files in {there}/, which was there already "
            f"(mode {mode:04o}) log key"
        )
        assert said in _words(out), out
        assert ("WARNING" in out and f"chmod 700 {there} " in _words(out)) == warned, out
        assert stat.S_IMODE(there.stat().st_mode) == mode  # its mode is the user's to set


def _words(out: str) -> str:
    """``out`` with its line breaks (the console wraps long paths) and runs of spaces as one."""
    return " ".join(out.split())


def test_the_default_key_file_missing_names_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # (no key.pem here)
    code, out = encd("title", "DOC-1", "--party", BANK, env={"ENCD_KEY": None})
    assert code == 2, out
    assert "key file key.pem does not exist (the default: give your key file with --key" in (
        _words(out)
    ), out
    code, out = encd("title", "DOC-1", "--party", BANK, "--key", "mine.pem")
    assert code == 2 and _words(out).endswith("key file mine.pem does not exist"), out
