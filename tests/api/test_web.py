"""The web pages in a real browser (Debian's Chromium, driven by Playwright) against a real
service on uvicorn: the front page, and the "Check a title" page asking with a party's key
file and checking the proof in the browser, which must agree with api.client.verify_title."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nacl.exceptions
import nacl.signing
import pytest

from api.client import verify_title
from api.routes.proposals import PAGE
from encd.checkpoint import Checkpoint, cosign
from encd.errors import VerificationError
from encd.events import sign_text
from encd.keys import SigningKey
from encd.logentry import LogEntry
from encd.note import parse_note, sign_note
from tests.api.conftest import World
from tests.api.test_lifecycle import pledge_body
from tests.kit import loosened

playwright_api = pytest.importorskip("playwright.sync_api")


def chromium() -> str:
    """The browser: $ENCD_CHROMIUM, or Chromium on PATH (scripts/chromium.sh installs it)."""
    found = os.environ.get("ENCD_CHROMIUM") or shutil.which("chromium")
    if found:
        return found
    message = "Chromium is not installed: run scripts/chromium.sh as root (make test does)"
    if os.environ.get("CI"):
        pytest.fail(message)  # CI installs it: a missing browser there is a broken setup
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=chromium(),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                # a name that is not this machine's, for a page served over plain HTTP elsewhere
                "--host-resolver-rules=MAP encd.test 127.0.0.1",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console", lambda m: errors.append(m.text) if m.type == "error" else None
    )  # a refused script or style (Content-Security-Policy) is reported here
    page.errors = errors
    try:
        yield page
    finally:
        context.close()


def key_file(world: World, label: str, tmp_path: Path, passphrase: bytes | None = None) -> Path:
    path = tmp_path / f"{label}.pem"
    world.actors[label].key.save(path, passphrase)
    return path


def propose_pledge(world: World, doc: str, bank: str = "bank") -> dict[str, Any]:
    """The exporter proposes to pledge ``doc`` to ``bank`` (through the Python client)."""
    exporter = world.client("exporter")
    return dict(exporter.propose(exporter.next_event(doc, "pledge", pledge_body(world, bank))))


def countersigned(world: World, proposal: dict[str, Any], label: str) -> dict[str, Any]:
    """``label`` countersigns ``proposal`` (through the Python client)."""
    client = world.client(label)
    text = proposal["text"].encode()
    note = text + b"\n" + b"".join(s.line().encode() for s in sign_text(text, [client.key]))
    return dict(client.countersign(proposal["id"], note))


def pledged(world: World, doc: str) -> None:
    """``doc`` pledged by the exporter to the bank."""
    assert countersigned(world, propose_pledge(world, doc), "bank")["state"] == "applied"


def fill_pledge(page: Any, world: World) -> dict[str, str]:
    """The pledge fields of the "Sign an event" page, as ``pledge_body(world, "bank")`` but
    for a maturity a year ahead (the page, as ``encd pledge``, refuses one past); returns
    the body filled in."""
    body = pledge_body(world, "bank")
    body["maturity"] = (datetime.now(UTC).date() + timedelta(days=365)).isoformat()
    for name in ("pledgee", "loan_ref", "amount", "currency", "registry_ref", "maturity"):
        page.fill("#" + name.replace("_", "-"), body[name])
    return body


def open_as(page: Any, world: World, path: str, label: str, key: Path) -> None:
    """Open the page at ``path`` and give it ``label``'s party id and key file."""
    page.goto(world.url + path)
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#party", world.id(label))
    page.set_input_files("#key-file", str(key))


def ask(page: Any, world: World, label: str, key: Path, doc: str, passphrase: str = "") -> str:
    """Fill in "Ask the service" as ``label`` and wait for the outcome; returns its class."""
    open_as(page, world, "/verify", label, key)
    page.fill("#passphrase", passphrase)
    page.fill("#document", doc)
    page.click("#ask button")
    return outcome(page)


def outcome(page: Any) -> str:
    page.wait_for_selector("#result:not([hidden]):not([aria-busy])")
    return str(page.get_attribute("#result", "class"))


def named(world: World, label: str) -> str:
    """A party as the pages show it to a registered party: its id and registered name."""
    return f"{world.id(label)} ({world.actors[label].name})"


def title_rows(page: Any, table: str = "title") -> dict[str, str]:
    """The rows of the outcome's table: "title" (the fields as stated), "proved" (the head)."""
    rows = page.query_selector_all(f"#{table} tr")
    return {r.query_selector("th").inner_text(): r.query_selector("td").inner_text() for r in rows}


def test_the_front_page_shows_the_log_as_signed(world: World, doc_id: str, page: Any) -> None:
    response = page.goto(world.url + "/")
    assert response.status == 200
    assert "default-src 'none'" in response.headers["content-security-policy"]
    note = httpx.get(world.url + "/log/checkpoint").text
    head = Checkpoint.parse(parse_note(note.encode()).text)
    assert page.inner_text("#size") == str(head.size)
    assert page.inner_text("#origin") == "encd.test/log"
    assert page.inner_text("#log-key") == world.log_key.public.vkey
    assert page.text_content("#checkpoint") == note
    page.click("text=Check a title")
    page.wait_for_url(world.url + "/verify")
    assert page.errors == []


def test_a_holder_asks_with_its_key_file_and_the_proof_checks(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    key = key_file(world, "exporter", tmp_path)
    assert ask(page, world, "exporter", key, doc_id) == "checked"
    rows = title_rows(page)
    assert rows["Document"] == doc_id
    assert rows["Status"] == "active"
    assert rows["Holder (has title)"] == named(world, "exporter")  # with its registered name
    assert rows["Pledge"] == "not pledged"
    answer = world.client("exporter").title(doc_id)
    checkpoint = verify_title(answer, world.log_key.public, doc_id)
    proved = title_rows(page, "proved")
    assert proved["Head event"] == answer["head"]
    assert proved["Log index"] == str(answer["head_index"])
    assert page.get_attribute("#result", "data-source") == "service"
    assert f"of {checkpoint.size} entries" in page.inner_text("#verdict")
    assert page.errors == []


def test_a_bank_sees_the_pledge_with_an_encrypted_key_file(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    pledged(world, doc_id)

    key = key_file(world, "bank2", tmp_path, passphrase=b"correct horse")
    assert ask(page, world, "bank2", key, doc_id, passphrase="wrong") == "failed"
    assert page.get_attribute("#result", "data-step") == "key file"
    assert "passphrase is wrong" in page.inner_text("#verdict")

    page.fill("#passphrase", "correct horse")
    page.click("#ask button")
    assert outcome(page) == "checked"
    rows = title_rows(page)
    assert rows["Holder (has title)"] == named(world, "exporter")
    assert rows["Controller"] == named(world, "bank")  # the pledgee controls a pledged document
    assert rows["Pledge"].startswith(f"to {named(world, 'bank')}, 100000.00 USD")
    assert page.errors == []


def test_a_key_the_service_does_not_know_is_refused_by_the_service(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    key = key_file(world, "bank", tmp_path)
    page.goto(world.url + "/verify")
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#party", world.id("buyer"))  # the bank's key under the buyer's name
    page.set_input_files("#key-file", str(key))
    page.fill("#document", doc_id)
    page.click("#ask button")
    assert outcome(page) == "failed"
    assert page.get_attribute("#result", "data-step") == "service"
    assert "(401)" in page.inner_text("#verdict")


def test_an_unknown_document_says_so(world: World, doc_id: str, page: Any, tmp_path: Path) -> None:
    key = key_file(world, "bank", tmp_path)
    assert ask(page, world, "bank", key, "ENCD-CQ-2026-999999") == "failed"
    assert "(404)" in page.inner_text("#verdict")
    # an id no document can have is refused before anything is asked, by the rule of
    # events.md (not only what a path may hold: lower case would be asked, and a 404)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    for wrong in ("../log/checkpoint", "encd-cq-2026-000417", "ENCD.CQ_2026", "-ABC", "AB"):
        asked.clear()
        assert ask(page, world, "bank", key, wrong) == "failed", wrong
        assert page.get_attribute("#result", "data-step") == "document", wrong
        assert "3 to 64 characters A-Z, 0-9 and -" in page.inner_text("#verdict")
        assert not [url for url in asked if "/v1/documents/" in url], asked


def paste(
    page: Any, world: World, answer: object, log_key: str | None = None, doc: str | None = None
) -> str:
    page.goto(world.url + "/verify")
    page.wait_for_selector("body[data-ready=true]")
    if log_key is not None:
        page.fill("#log-key", log_key)
    if doc is None:
        doc = str(answer.get("document")) if isinstance(answer, dict) else "ENCD-CQ-2026-000417"
    page.fill("#pasted-document", doc)
    page.fill("#answer", answer if isinstance(answer, str) else json.dumps(answer))
    page.click("#paste button")
    return outcome(page)


def flip(text: str, at: int) -> str:
    """``text`` with the character at ``at`` changed to another of the same kind."""
    ch = text[at]
    other = "B" if ch == "A" else "A" if ch.isalpha() else "1" if ch == "0" else "0"
    return text[:at] + other + text[at + 1 :]


def test_a_pasted_answer_checks_and_each_tampering_fails_as_in_python(
    world: World, doc_id: str, page: Any
) -> None:
    answer = world.client("bank").title(doc_id)
    assert paste(page, world, answer) == "checked"

    proof_lines = answer["tlog_proof"].split("\n")
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "another head": ({**answer, "head": "0" * 64}, "inclusion"),
        "another time": (
            {**answer, "head_sequenced_at": answer["head_sequenced_at"] + 1},
            "inclusion",
        ),
        "another index": ({**answer, "head_index": answer["head_index"] + 1}, "proof"),
        "no proof": ({k: v for k, v in answer.items() if k != "tlog_proof"}, "answer"),
    }
    signed = answer["tlog_proof"][answer["tlog_proof"].index("\n\n") + 2 :]
    size_line = signed.split("\n")[1]
    cases["a changed size"] = (
        {
            **answer,
            "tlog_proof": answer["tlog_proof"].replace(
                f"\n{size_line}\n", f"\n{int(size_line) + 1}\n", 1
            ),
        },
        "checkpoint",
    )
    sig_line = next(line for line in proof_lines if line.startswith("\u2014 "))
    cases["a changed signature"] = (
        {
            **answer,
            "tlog_proof": answer["tlog_proof"].replace(
                sig_line, flip(sig_line, len(sig_line) - 10)
            ),
        },
        "checkpoint",
    )
    for name, (changed, step) in cases.items():
        with pytest.raises(VerificationError):  # Python refuses it too
            verify_title(changed, world.log_key.public)
        assert paste(page, world, changed) == "failed", name
        assert page.get_attribute("#result", "data-step") == step, (
            name,
            page.inner_text("#verdict"),
        )
    assert paste(page, world, "{not json") == "failed"
    assert page.get_attribute("#result", "data-step") == "answer"
    assert page.errors == []


def test_an_answer_is_checked_only_against_the_key_you_trust(
    world: World, doc_id: str, page: Any
) -> None:
    answer = world.client("bank").title(doc_id)
    other = SigningKey.generate("encd.test/log").public.vkey  # same name, another key
    assert paste(page, world, answer, log_key=other) == "failed"
    assert page.get_attribute("#result", "data-step") == "checkpoint"
    assert "no signature by the trusted log key" in page.inner_text("#verdict")
    broken = world.log_key.public.vkey[:-3] + "AAA"  # the key hash no longer matches
    assert paste(page, world, answer, log_key=broken) == "failed"
    assert page.get_attribute("#result", "data-step") == "key"


def test_the_pages_files_are_served_and_nothing_else(world: World) -> None:
    for name, kind in (("encd.js", "text/javascript"), ("style.css", "text/css")):
        response = httpx.get(f"{world.url}/web/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(kind)
    for name in ("../app.py", "%2e%2e%2fapp.py", "verify.html", "encd.js.map"):
        response = httpx.get(f"{world.url}/web/{name}")
        assert response.status_code == 404, name
        assert response.headers["content-type"] == "application/problem+json"


def test_the_pages_merkle_code_gives_each_inclusion_vectors_outcome(
    world: World, page: Any, vectors_dir: Path
) -> None:
    """The transparency-dev inclusion vectors (../shared/vectors) through the page's own
    verifyInclusion, in the browser: each must pass or fail as listed, as in Python."""
    files = sorted(
        (vectors_dir / "transparency-dev-merkle" / "testdata" / "inclusion").rglob("*.json")
    )
    assert len(files) > 50
    cases = [{"name": f.name, **json.loads(f.read_text())} for f in files]
    page.goto(world.url + "/verify")
    outcomes = page.evaluate(
        """async (cases) => {
            const encd = await import("/web/encd.js");
            const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const out = [];
            for (const c of cases) {
                try {
                    await encd.verifyInclusion(bytes(c.leafHash), c.leafIdx, c.treeSize,
                        (c.proof || []).map(bytes), bytes(c.root));
                    out.push([c.name, true, ""]);
                } catch (error) {
                    out.push([c.name, false, `${error.name}: ${error.message}`]);
                }
            }
            return out;
        }""",
        cases,
    )
    for case, (name, passed, error) in zip(cases, outcomes, strict=True):
        assert passed is not case["wantErr"], (name, error)
        if not passed:
            assert error.startswith("CheckFailed: "), (name, error)  # refused, not crashed


def test_over_plain_http_from_elsewhere_the_page_says_it_needs_https(
    world: World, doc_id: str, page: Any
) -> None:
    """Browsers keep the Web Cryptography API from pages served over plain HTTP by another
    host: the page must say so, not fail obscurely."""
    elsewhere = world.url.replace("127.0.0.1", "encd.test")
    page.goto(elsewhere + "/verify")
    page.wait_for_selector("body[data-ready=true]")
    assert page.evaluate("isSecureContext") is False
    assert outcome(page) == "failed"
    assert page.get_attribute("#result", "data-step") == "browser"
    assert "HTTPS" in page.inner_text("#verdict")
    page.fill("#answer", json.dumps(world.client("bank").title(doc_id)))
    page.click("#paste button")
    assert outcome(page) == "failed"
    assert page.get_attribute("#result", "data-step") == "browser"


def test_key_files_encrypted_by_other_tools(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    """OpenSSL's PBES2 with AES-128 and HMAC-SHA-1 is read; the old PBES1 triple-DES is refused
    by name, not taken for a wrong passphrase."""
    if not shutil.which("openssl"):
        pytest.skip("no openssl command to write the key files with")
    plain = key_file(world, "bank", tmp_path)

    def convert(name: str, *scheme: str) -> Path:
        out = tmp_path / name
        command = ["openssl", "pkcs8", "-topk8", "-in", str(plain), "-out", str(out), *scheme]
        subprocess.run([*command, "-passout", "pass:s3cret"], check=True)
        return out

    aes128 = convert("aes128.pem", "-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA1")
    assert ask(page, world, "bank", aes128, doc_id, passphrase="s3cret") == "checked"

    triple_des = convert("3des.pem", "-v1", "PBE-SHA1-3DES")
    assert ask(page, world, "bank", triple_des, doc_id, passphrase="s3cret") == "failed"
    assert page.get_attribute("#result", "data-step") == "key file"
    assert "scheme this page does not read" in page.inner_text("#verdict")

    not_a_key = tmp_path / "note.txt"
    not_a_key.write_text("hello\n")
    assert ask(page, world, "bank", not_a_key, doc_id) == "failed"
    assert "not a PEM file" in page.inner_text("#verdict")
    assert page.errors == []


def made_answer(key: SigningKey, origin: str, doc: str = "ENCD-CQ-2026-000417") -> dict[str, Any]:
    """A title answer of a one-entry log whose checkpoint ``key`` signed with ``origin``."""
    head, at = "ab" * 32, 1_777_622_400_000
    root = LogEntry(head, at).leaf_hash  # a tree of one entry: its root is the leaf's hash
    text = f"{origin}\n1\n{base64.b64encode(root).decode()}\n".encode()
    note = sign_note(text, [key]).decode()
    return {
        "document": doc,
        "status": "active",
        "holder": "<img src=x id=injected>",
        "head": head,
        "head_index": 0,
        "head_sequenced_at": at,
        "checkpoint": note,
        "tlog_proof": f"c2sp.org/tlog-proof@v1\nindex 0\n\n{note}",
    }


def test_a_pasted_answer_says_its_fields_are_not_proved(world: World, page: Any) -> None:
    """Anyone can write a title answer's fields: pasted, only its head is shown as proved,
    the rest as the answer states it; and what it states is shown as text, never as markup."""
    key = SigningKey.generate("encd.test/log")
    answer = made_answer(key, "encd.test/log")
    verify_title(answer, key.public)  # Python takes it too: the proof binds only the head
    assert paste(page, world, answer, log_key=key.public.vkey) == "checked"
    assert page.get_attribute("#result", "data-source") == "pasted"
    assert "as the answer states it" in page.inner_text("#result")
    assert "Not proved" in page.inner_text("#result")
    assert title_rows(page)["Holder (has title)"] == "<img src=x id=injected>"
    assert page.query_selector("#injected") is None
    assert title_rows(page, "proved")["Sequenced at"] == "2026-05-01T08:00:00.000Z"

    # the answer must be for the document the user names
    assert (
        paste(page, world, answer, log_key=key.public.vkey, doc="ENCD-CQ-2026-000418") == "failed"
    )
    assert page.get_attribute("#result", "data-step") == "answer"
    assert page.errors == []


def test_a_checkpoint_whose_origin_is_not_the_keys_name_fails(world: World, page: Any) -> None:
    key = SigningKey.generate("encd.test/log")
    answer = made_answer(key, "encd.other/log")
    with pytest.raises(VerificationError, match="origin"):
        verify_title(answer, key.public)
    assert paste(page, world, answer, log_key=key.public.vkey) == "failed"
    assert page.get_attribute("#result", "data-step") == "checkpoint"
    assert "origin" in page.inner_text("#verdict")


def test_malformed_receipts_fail_as_in_python(world: World, doc_id: str, page: Any) -> None:
    answer = world.client("bank").title(doc_id)
    proof = answer["tlog_proof"]
    head, _, rest = proof.partition("\n\n")
    lines = head.split("\n")
    changed = {
        "an empty extra line": "\n".join([lines[0], "extra ", *lines[1:]]) + "\n\n" + rest,
        "an extra line not base64": "\n".join([lines[0], "extra !!", *lines[1:]]) + "\n\n" + rest,
        "an extra line not canonical": "\n".join([lines[0], "extra AB==", *lines[1:]])
        + "\n\n"
        + rest,
        "an empty line among the hashes": "\n".join([*lines[:2], "", *lines[2:]]) + "\n\n" + rest,
        "a lone surrogate": proof.replace("encd.test/log", "encd.test/log\ud800", 1),
        "no index": "\n".join([lines[0], *lines[2:]]) + "\n\n" + rest,
        "an index with a leading zero": proof.replace("\nindex ", "\nindex 0", 1),
    }
    assert len(lines) > 2, "the test wants a proof with at least one hash"
    for name, text in changed.items():
        with pytest.raises(VerificationError):
            verify_title({**answer, "tlog_proof": text}, world.log_key.public)
        page_answer = json.dumps({**answer, "tlog_proof": text})
        assert paste(page, world, page_answer, doc=doc_id) == "failed", name
        assert page.get_attribute("#result", "data-step") == "proof", (
            name,
            page.inner_text("#verdict"),
        )
    assert page.errors == []


def test_another_key_s_line_in_lenient_base64_is_ignored_as_in_python(
    world: World, doc_id: str, page: Any
) -> None:
    """signed-note: a line by a key the checker does not know is ignored, however its base64
    is spelled; the trusted log key's own line must be canonical."""
    answer = world.client("bank").title(doc_id)
    proof = answer["tlog_proof"]
    signed = proof[proof.index("\n\n") + 2 :]
    text = signed[: signed.index("\n\n") + 1].encode()
    stranger = SigningKey("w3.example", bytes(range(4, 36)))
    with_odd = {**answer, "tlog_proof": proof + loosened(cosign(text, stranger, 1)).decode()}
    verify_title(with_odd, world.log_key.public)
    assert paste(page, world, with_odd) == "checked", page.inner_text("#verdict")

    line = next(line for line in proof.split("\n") if line.startswith("\u2014 "))
    odd_line = loosened(f"{line}\n".encode()).decode().rstrip("\n")
    mine = {**answer, "tlog_proof": proof.replace(line, odd_line)}
    with pytest.raises(VerificationError, match="not canonical base64"):
        verify_title(mine, world.log_key.public)
    assert paste(page, world, mine) == "failed"
    assert page.get_attribute("#result", "data-step") == "checkpoint"
    assert "not canonical base64" in page.inner_text("#verdict")
    assert page.errors == []


def vkey_of(name: str, raw: bytes) -> str:
    """A verifier key for ``raw`` with the right key hash, whatever point ``raw`` is."""
    digest = hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4]
    encoded = base64.b64encode(b"\x01" + raw).decode()
    return f"{name}+{digest.hex()}+{encoded}"


def test_a_log_key_of_small_order_is_refused(world: World, doc_id: str, page: Any) -> None:
    """With a small-order key, R = identity and S = 0 is a "signature" of anything that some
    Ed25519 verifiers accept; libsodium refuses such keys, and so must the page."""
    p = 2**255 - 19
    small = [0, 1, p - 1, p, p + 1]
    small += [
        int.from_bytes(bytes.fromhex(h), "little")
        for h in (
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        )
    ]
    answer = world.client("bank").title(doc_id)
    for y in small:
        for sign in (0, 1):
            raw = (y | sign << 255).to_bytes(32, "little")
            forged = nacl.signing.VerifyKey(raw)
            with pytest.raises(nacl.exceptions.BadSignatureError):  # libsodium refuses it
                forged.verify(b"any", b"\x01" + bytes(63))
            assert paste(page, world, answer, log_key=vkey_of("encd.test/log", raw)) == "failed"
            assert page.get_attribute("#result", "data-step") == "key"
            assert "small order" in page.inner_text("#verdict")


def pem(der: bytes, label: str = "ENCRYPTED PRIVATE KEY") -> str:
    body = base64.b64encode(der).decode()
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def test_damaged_key_files_are_named_not_crashed_on(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    good = key_file(world, "bank", tmp_path, passphrase=b"s3cret").read_text()
    der = base64.b64decode("".join(good.strip().split("\n")[1:-1]))
    huge_iterations = der.replace(b"\x02\x02\x08\x00", b"\x02\x04\x7f\xff\xff\xff", 1)
    assert huge_iterations != der, "the test expects encd keygen's 2048 iterations"
    cases = {
        "empty": pem(b""),
        "an empty sequence": pem(b"\x30\x00"),
        "one byte": pem(b"\x30"),
        "cut short": pem(der[: len(der) // 2]),
        "an odd byte more": pem(der + b"\x00"),
        "no parameters": pem(bytes.fromhex("300f300b06092a864886f70d01050d0400")),
        "huge iterations": pem(huge_iterations),
        "not base64": "-----BEGIN ENCRYPTED PRIVATE KEY-----\n%%%\n-----END ENCRYPTED PRIVATE KEY-----\n",
        "a certificate": pem(der, "CERTIFICATE"),
    }
    for name, text in cases.items():
        path = tmp_path / "damaged.pem"
        path.write_text(text)
        assert ask(page, world, "bank", path, doc_id, passphrase="s3cret") == "failed", name
        assert page.get_attribute("#result", "data-step") == "key file", (
            name,
            page.inner_text("#verdict"),
        )
    assert page.errors == []


def test_the_pages_headers_and_the_enter_key(world: World, page: Any) -> None:
    pages = ("/", "/verify", "/sign")
    files = ("encd.js", "page.js", "verify.js", "sign.js", "style.css", "icon.svg")
    for path in (*pages, *(f"/web/{name}" for name in files)):
        response = httpx.get(world.url + path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        assert "script-src 'self';" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cross-origin-opener-policy"] == "same-origin"
    page.goto(world.url + "/verify")
    page.wait_for_selector("body[data-ready=true]")
    page.focus("#log-key")
    page.keyboard.press("Enter")  # nothing to submit there: no refused form action either
    page.wait_for_timeout(200)
    assert page.errors == []


def test_a_page_without_the_opener_policy_gets_no_handle_on_the_checking_page(
    world: World, page: Any
) -> None:
    """FastAPI's /docs loads scripts from a CDN; opened from a page of this origin without
    the pages' opener policy, /verify is out of its reach."""
    page.goto(world.url + "/openapi.json")
    with page.context.expect_page() as opened:
        page.evaluate("window.handle = window.open('/verify')")
    opened.value.wait_for_selector("body[data-ready=true]")
    assert page.evaluate("window.handle.closed") is True
    assert page.evaluate(
        "(() => { try { return window.handle.document.title } catch (e) { return 'refused' } })()"
    ) in ("refused", None)


def sign_page(page: Any, world: World, label: str, key: Path, doc: str, action: str) -> None:
    open_as(page, world, "/sign", label, key)
    page.fill("#document", doc)
    page.select_option("#action", action)


def prepare(page: Any) -> str:
    page.click("#prepare button")
    return outcome(page)


def submit(page: Any) -> str:
    page.click("#submit")
    return outcome(page)


def test_a_holder_endorses_in_the_browser_and_the_endorsee_rejects(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    exporter = world.client("exporter")
    before = exporter.title(doc_id)
    sign_page(page, world, "exporter", key_file(world, "exporter", tmp_path), doc_id, "transfer")
    assert page.is_hidden("#reason-fields") and page.is_visible("#to-fields")
    page.fill("#to", world.id("buyer"))
    assert prepare(page) == "checked"
    assert page.inner_text("#counterpart") == "Endorsee: " + named(world, "buyer")
    text = page.text_content("#event-text")
    envelope = json.loads(text)
    assert text == json.dumps(envelope, sort_keys=True, separators=(",", ":")) + "\n"
    assert envelope["type"] == "transfer" and envelope["doc"] == doc_id
    assert envelope["seq"] == before["seq"] + 1 and envelope["prev"] == before["head"]
    assert envelope["body"] == {"to": world.id("buyer")}
    assert exporter.title(doc_id)["head"] == before["head"], "prepared is not submitted"

    assert submit(page) == "checked"
    after = exporter.title(doc_id)
    verify_title(after, world.log_key.public, doc_id)
    assert after["holder"] == world.id("buyer")
    receipt = title_rows(page, "receipt")
    assert receipt["Event id"] == after["head"]
    assert receipt["Log index"] == str(after["head_index"])
    signed = page.text_content("#signed-event").encode()
    assert signed.startswith((text + "\n\u2014 ").encode())
    assert hashlib.sha256(signed).hexdigest() == after["head"]
    assert page.is_hidden("#prepared")
    assert page.errors == []

    sign_page(page, world, "buyer", key_file(world, "buyer", tmp_path), doc_id, "reject_transfer")
    assert page.is_hidden("#to-fields") and page.is_visible("#reason-fields")
    reason = 'not the goods we ordered: 货物不符, "QTY" \\ 📦'  # the server checks RFC 8785
    page.fill("#reason", reason)
    assert prepare(page) == "checked"
    assert json.loads(page.text_content("#event-text"))["body"] == {"reason": reason}
    assert submit(page) == "checked"
    assert exporter.title(doc_id)["holder"] == world.id("exporter")
    assert page.errors == []


def test_a_bank_releases_its_pledge_in_the_browser(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    exporter = world.client("exporter")
    pledged(world, doc_id)

    key = key_file(world, "bank", tmp_path, passphrase=b"s3cret")
    sign_page(page, world, "bank", key, doc_id, "release")
    page.fill("#passphrase", "s3cret")
    assert prepare(page) == "checked"
    assert title_rows(page)["Pledge"].startswith(f"to {named(world, 'bank')}")
    assert submit(page) == "checked"
    assert exporter.title(doc_id)["pledge"] is None
    assert page.errors == []


def test_what_the_service_refuses_changes_nothing_and_says_why(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    exporter = world.client("exporter")
    size = httpx.get(world.url + "/v1/service").json()["log_size"]

    # not the holder: the rules refuse it
    sign_page(page, world, "bank", key_file(world, "bank", tmp_path), doc_id, "transfer")
    page.fill("#to", world.id("buyer"))
    assert prepare(page) == "checked"
    assert submit(page) == "failed"
    assert page.get_attribute("#result", "data-step") == "service"
    assert "(422)" in page.inner_text("#verdict") and "holder" in page.inner_text("#verdict")

    # no endorsee: refused before anything is asked
    sign_page(page, world, "exporter", key_file(world, "exporter", tmp_path), doc_id, "transfer")
    assert prepare(page) == "failed"
    assert page.get_attribute("#result", "data-step") == "event"

    # prepared, then overtaken: the head it names is no longer the head
    page.fill("#to", world.id("buyer"))
    assert prepare(page) == "checked"
    exporter.submit(exporter.next_event(doc_id, "instruct", {"instruction": "hold at Qinzhou"}))
    size += 1
    assert submit(page) == "failed"
    assert page.inner_text("#verdict").startswith(
        "the service's answer: the service refused (409): the document has moved on since: "
        "read its title again ("
    )
    assert httpx.get(world.url + "/v1/service").json()["log_size"] == size
    assert exporter.title(doc_id)["holder"] == world.id("exporter")
    # the refusals themselves are the only errors the browser reported
    assert [e for e in page.errors if "the server responded with a status of 4" not in e] == []


def test_an_endorsement_in_blank_and_a_form_changed_after_prepare(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    exporter = world.client("exporter")
    sign_page(page, world, "exporter", key_file(world, "exporter", tmp_path), doc_id, "transfer")
    page.fill("#to", world.id("buyer").lower())
    assert prepare(page) == "failed"
    assert page.get_attribute("#result", "data-step") == "event"  # refused before asking

    page.fill("#to", "ABCDEFGHIJKLMNOPQR")  # a party id in form, of no party
    assert prepare(page) == "checked"
    assert "could not name: check the id" in page.inner_text("#counterpart")

    page.fill("#to", world.id("buyer"))
    assert prepare(page) == "checked"
    page.fill("#to", world.id("bank"))  # what was prepared is no longer what the form says
    assert page.is_hidden("#prepared") and page.is_hidden("#result")

    page.check("#blank")
    assert prepare(page) == "checked"
    assert json.loads(page.text_content("#event-text"))["body"] == {
        "to": world.id("bank"),
        "blank": True,
    }
    assert submit(page) == "checked"
    after = exporter.title(doc_id)
    assert after["holder"] == world.id("bank")
    # the one error the browser reported is the unknown party's lookup (404)
    assert [e for e in page.errors if "status of 404" not in e] == []


def test_an_answer_lost_on_the_way_loses_nothing(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    """The service logs the event but its answer never arrives whole: the page keeps the
    signed event and sends the very same bytes again, and the service answers with the
    receipt it gave the first time."""
    exporter = world.client("exporter")
    sign_page(page, world, "exporter", key_file(world, "exporter", tmp_path), doc_id, "transfer")
    page.fill("#to", world.id("buyer"))
    assert prepare(page) == "checked"

    def lose_the_answer(route: Any) -> None:
        route.fetch()  # the request reaches the service, which logs the event
        route.fulfill(status=502, content_type="text/html", body="<h1>Bad Gateway</h1>")

    page.route("**/v1/events", lose_the_answer)
    assert submit(page) == "failed"
    assert "not known to be logged" in page.inner_text("#result")
    logged = exporter.title(doc_id)
    assert logged["holder"] == world.id("buyer")  # it was logged all the same
    signed = page.text_content("#signed-event").encode()
    assert hashlib.sha256(signed).hexdigest() == logged["head"]
    assert page.inner_text("#submit") == "Send the same event again"

    # leaving the page now would lose the only way to learn the outcome: the browser asks
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.dismiss()))
    page.close(run_before_unload=True)
    page.wait_for_timeout(500)  # (the dialog's event arrives, and is dismissed: it stays)
    assert dialogs == ["beforeunload"] and not page.is_closed()

    page.unroute("**/v1/events")
    assert submit(page) == "checked"
    assert "had it already" in page.inner_text("#result h2")
    assert title_rows(page, "receipt")["Event id"] == logged["head"]
    assert exporter.title(doc_id)["head"] == logged["head"]  # logged once
    assert [e for e in page.errors if "the server responded with a status of 5" not in e] == []


def test_the_pledge_financing_in_the_browser(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    """The corridor's online pledge: the exporter proposes a pledge to the bank on the page,
    the bank finds it waiting, reads it and countersigns it there; the second bank has
    nothing to sign."""
    exporter = world.client("exporter")
    sign_page(page, world, "exporter", key_file(world, "exporter", tmp_path), doc_id, "pledge")
    assert page.is_visible("#pledge-fields") and page.is_hidden("#to-fields")
    filled = fill_pledge(page, world)
    assert prepare(page) == "checked"
    assert json.loads(page.text_content("#event-text"))["body"] == filled
    assert submit(page) == "checked"
    assert "waiting for signatures" in page.inner_text("#result h2")
    assert world.id("bank") in title_rows(page, "proposal")["Waiting for"]
    assert exporter.title(doc_id)["pledge"] is None  # not yet: the bank has not signed

    list_proposals(page, world, "bank2", tmp_path)
    assert page.inner_text("#proposals") == "No proposal waits for your signature."

    list_proposals(page, world, "bank", tmp_path)
    cards = page.query_selector_all("#proposals article")
    assert len(cards) == 1
    card = cards[0].inner_text()
    assert "pledge of " + doc_id in card and "100000.00" in card and "PBOC-CRCS-2026-000001" in card
    page.click("#proposals article button")
    assert outcome(page) == "checked"
    title = exporter.title(doc_id)
    assert title["pledge"]["pledgee"] == world.id("bank")
    assert title["controller"] == world.id("bank")
    signed = page.text_content("#signed-event").encode()
    assert hashlib.sha256(signed).hexdigest() == title["head"]
    assert signed.count("\u2014 ".encode()) == 2  # the exporter's signature and the bank's
    assert page.query_selector("#proposals article") is None
    assert page.errors == []


def test_a_pledge_past_its_maturity_is_not_prepared(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    """As ``encd pledge`` refuses it before sending: a loan already due."""
    sign_page(page, world, "exporter", key_file(world, "exporter", tmp_path), doc_id, "pledge")
    fill_pledge(page, world)
    page.fill("#maturity", "2020-01-01")
    assert prepare(page) == "failed"
    assert page.get_attribute("#result", "data-step") == "event"
    assert "2020-01-01 is past" in page.inner_text("#verdict")
    assert page.is_hidden("#prepared")
    assert page.errors == []


def test_text_the_service_would_refuse_is_not_signed(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    """A reason pasted with a tab, a reference holding a bidirectional override, a reason
    over 2000 characters, an amount of 0: each was signed and only then refused by the
    service (422).  Now the page names the field and the rule, and asks nothing."""
    key = key_file(world, "exporter", tmp_path)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    reasons = {
        "line one\tline two": "reason: expected text without control characters, got U+0009",
        "x" * 2001: "reason: expected at most 2000 characters, got 2001",
    }
    for reason, said in reasons.items():
        sign_page(page, world, "exporter", key, doc_id, "surrender")
        page.fill("#reason", reason)
        asked.clear()
        assert prepare(page) == "failed"
        assert page.get_attribute("#result", "data-step") == "event"
        assert said in page.inner_text("#verdict")
        assert not [url for url in asked if "/v1/" in url], asked
    sign_page(page, world, "exporter", key, doc_id, "surrender")
    page.fill("#reason", "line one\nline two: 收货人 — ok")  # line feeds and any script
    assert prepare(page) == "checked"
    pledges = {
        "loan-ref": (
            "CQRCB\u202e1000",
            "loan_ref: expected text without control characters, got U+202E at position 5",
        ),
        "amount": ("0.00", "amount: expected a decimal amount greater than 0"),
    }
    for field, (value, said) in pledges.items():
        sign_page(page, world, "exporter", key, doc_id, "pledge")
        fill_pledge(page, world)
        page.fill("#" + field, value)
        assert prepare(page) == "failed"
        assert said in page.inner_text("#verdict")
    assert page.errors == []


def test_a_computer_whose_clock_is_off_is_told_so(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    """A request signed 10 minutes ahead is refused for its time (±300 s): the page says
    the computer's clock is off, and by how much, not that the key may be wrong."""
    page.clock.set_system_time(datetime.now(UTC) + timedelta(minutes=10))
    assert ask(page, world, "bank", key_file(world, "bank", tmp_path), doc_id) == "failed"
    assert page.get_attribute("#result", "data-step") == "service"
    verdict = page.inner_text("#verdict")
    assert "this computer's clock is 10 minutes ahead of the service's" in verdict, verdict
    assert "key file" not in verdict


def list_proposals(page: Any, world: World, label: str, tmp_path: Path) -> None:
    open_as(page, world, "/sign", label, key_file(world, label, tmp_path))
    page.click("#list")
    page.wait_for_selector("#proposals > *")


def test_a_lost_countersignature_answer_is_sent_again(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    propose_pledge(world, doc_id)
    list_proposals(page, world, "bank", tmp_path)
    assert "As the service states it" in page.inner_text("#proposals article")

    def lose_the_answer(route: Any) -> None:
        route.fetch()  # the signature reaches the service, which applies the pledge
        route.fulfill(status=504, content_type="text/html", body="<h1>Gateway Timeout</h1>")

    page.route("**/v1/proposals/*/signatures", lose_the_answer)
    page.click("#proposals article button")
    assert outcome(page) == "failed"
    assert page.inner_text("#proposals article button") == "Send the same signature again"
    title = world.client("exporter").title(doc_id)
    assert title["pledge"]["pledgee"] == world.id("bank")  # applied all the same

    page.unroute("**/v1/proposals/*/signatures")
    page.click("#proposals article button")
    assert outcome(page) == "checked"
    assert "had it already" in page.inner_text("#result h2")
    assert title_rows(page, "receipt")["Event id"] == title["head"]
    assert world.client("exporter").title(doc_id)["head"] == title["head"]  # applied once


def test_a_proposal_is_listed_only_as_it_is_and_for_the_keys_given(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    proposal = propose_pledge(world, doc_id)

    def change_the_amount(route: Any) -> None:
        answer = route.fetch().json()
        for view in answer["proposals"]:  # the id stays: it no longer matches the text
            view["text"] = view["text"].replace("100000.00", "900000.00")
        route.fulfill(json=answer)

    page.route("**/v1/proposals", change_the_amount)
    list_proposals(page, world, "bank", tmp_path)
    card = page.inner_text("#proposals article")
    assert f"Proposal {proposal['id']} cannot be signed here" in card
    assert "not the SHA-256 of its text" in card
    assert page.query_selector("#proposals article button") is None

    page.unroute("**/v1/proposals")
    page.click("#list")
    page.wait_for_selector("#proposals article button")
    page.fill("#party", world.id("bank2"))  # the list was made with the bank's keys
    assert page.query_selector("#proposals article") is None


def test_an_amendment_s_card_says_what_it_changes(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    """The card showed the new content as one block of ~5 KB; as ``encd countersign``,
    it now names the fields that change, each as it is and as it would be."""
    carrier = world.client("carrier")
    document = carrier.document(doc_id)
    content = dict(document["title"]["content"])
    content["freight"] = "collect"
    content["place_of_delivery"] = {"locode": "SGSIN", "name": "Jurong Port, Singapore"}
    body = {"content": content, "supersedes": document["title"]["content_digest"]}
    carrier.propose(carrier.next_event(doc_id, "amend", body))
    list_proposals(page, world, "exporter", tmp_path)
    rows = title_rows(page, page.get_attribute("#proposals article table", "id") or "")
    assert rows["Changes"] == "freight, place_of_delivery"
    assert (rows["freight, now"], rows["freight, after"]) == ("prepaid", "collect")
    assert "Jurong Port" in rows["place_of_delivery, after"]
    assert "Pasir Panjang" in rows["place_of_delivery, now"]
    assert rows["Supersedes"] == body["supersedes"]
    assert "containers" not in rows  # what does not change is not shown field by field

    def hide_the_freight(route: Any) -> None:  # a service that states other content
        answer = route.fetch().json()
        answer["title"]["content"]["freight"] = "collect"
        route.fulfill(json=answer)

    page.route(f"**/v1/documents/{doc_id}", hide_the_freight)
    page.click("#list")
    page.wait_for_selector("#proposals article table")
    rows = title_rows(page, page.get_attribute("#proposals article table", "id") or "")
    assert rows["Changes"].startswith("not known (the content the service states is not"), rows
    assert "collect" in rows["New content"]
    assert page.errors == []


def test_a_lost_proposal_answer_is_recovered_after_the_bank_signed(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    """The holder's proposal reaches the service but its answer is lost; meanwhile the bank
    countersigns and the pledge applies.  Sending the same proposal again gets the receipt of
    the event that applied, which the page checks against the document's events."""
    exporter, bank = world.client("exporter"), world.client("bank")
    sign_page(page, world, "exporter", key_file(world, "exporter", tmp_path), doc_id, "pledge")
    fill_pledge(page, world)
    assert prepare(page) == "checked"

    def lose_the_answer(route: Any) -> None:
        route.fetch()
        route.fulfill(status=502, content_type="text/html", body="<h1>Bad Gateway</h1>")

    page.route("**/v1/proposals", lose_the_answer)
    assert submit(page) == "failed"
    assert "not known to be logged" in page.inner_text("#result")
    page.unroute("**/v1/proposals")

    (waiting,) = bank.proposals()["proposals"]
    assert countersigned(world, waiting, "bank")["state"] == "applied"

    assert submit(page) == "checked"
    assert "had it already" in page.inner_text("#result h2")
    title = exporter.title(doc_id)
    assert title_rows(page, "receipt")["Event id"] == title["head"]
    signed = page.text_content("#signed-event").encode()
    assert hashlib.sha256(signed).hexdigest() == title["head"]  # the event with both signatures


def test_a_holder_surrenders_and_a_pledged_surrender_waits_for_the_pledgee(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    """Surrender needs the pledgee beside the holder while the document is pledged: the
    page then proposes it, says so, and the bank countersigns it on the page."""
    exporter = world.client("exporter")
    pledged(world, doc_id)
    sign_page(page, world, "exporter", key_file(world, "exporter", tmp_path), doc_id, "surrender")
    assert page.is_visible("#reason-fields") and page.is_hidden("#to-fields")
    page.fill("#reason", "for delivery at Qinzhou")
    assert prepare(page) == "checked"
    assert "pledged to " + named(world, "bank") in page.inner_text("#needs")
    envelope = json.loads(page.text_content("#event-text"))
    assert envelope["type"] == "surrender"
    assert envelope["body"] == {"reason": "for delivery at Qinzhou"}
    assert submit(page) == "checked"
    assert "waiting for signatures" in page.inner_text("#result h2")
    assert exporter.title(doc_id)["status"] == "active"

    list_proposals(page, world, "bank", tmp_path)
    assert "surrender of " + doc_id in page.inner_text("#proposals article")
    page.click("#proposals article button")
    assert outcome(page) == "checked"
    title = exporter.title(doc_id)
    assert title["status"] == "surrendered"
    signed = page.text_content("#signed-event").encode()
    assert hashlib.sha256(signed).hexdigest() == title["head"]
    assert page.errors == []


def test_a_holder_surrenders_a_document_not_pledged_at_once(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    exporter = world.client("exporter")
    sign_page(page, world, "exporter", key_file(world, "exporter", tmp_path), doc_id, "surrender")
    assert prepare(page) == "checked"
    assert page.query_selector("#needs") is None
    assert json.loads(page.text_content("#event-text"))["body"] == {}
    assert submit(page) == "checked"
    assert title_rows(page, "receipt")["Event id"] == exporter.title(doc_id)["head"]
    assert exporter.title(doc_id)["status"] == "surrendered"
    assert page.errors == []


def test_a_bank_enforces_its_pledge_in_the_browser(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    exporter = world.client("exporter")
    pledged(world, doc_id)
    sign_page(page, world, "bank", key_file(world, "bank", tmp_path), doc_id, "enforce")
    page.fill("#reason", "loan LN-2026-0042 in default")
    assert prepare(page) == "checked"
    assert submit(page) == "checked"
    title = exporter.title(doc_id)
    assert title["holder"] == world.id("bank") and title["pledge"] is None
    assert page.errors == []


def test_the_proposals_list_goes_on_past_the_first_page(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    """GET /v1/proposals answers 100 at a time: the page asks for the next page (a signed
    request with a query) until there is none, and lists every proposal the bank must sign."""
    exporter = world.client("exporter")
    for n in range(PAGE + 1):
        body = pledge_body(world, "bank") | {"loan_ref": f"LOAN-{n:03d}"}
        exporter.propose(exporter.next_event(doc_id, "pledge", body))
    first = world.client("bank").proposals()
    assert len(first["proposals"]) == PAGE and first["next"] is not None

    list_proposals(page, world, "bank", tmp_path)
    page.wait_for_function(f"document.querySelectorAll('#proposals article').length === {PAGE + 1}")
    cards = page.inner_text("#proposals")
    assert "LOAN-000" in cards and f"LOAN-{PAGE:03d}" in cards
    assert page.errors == []
