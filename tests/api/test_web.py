"""The web pages in a real browser (Debian's Chromium, driven by Playwright) against a real
service on uvicorn: the front page, and the "Check a title" page asking with a party's key
file and checking the proof in the browser, which must agree with api.client.verify_title."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.client import verify_title
from encd.checkpoint import Checkpoint
from encd.errors import VerificationError
from encd.events import sign_text
from encd.note import parse_note
from tests.api.conftest import World

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


def ask(page: Any, world: World, label: str, key: Path, doc: str, passphrase: str = "") -> str:
    """Fill in "Ask the service" as ``label`` and wait for the outcome; returns its class."""
    page.goto(world.url + "/verify")
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#party", world.id(label))
    page.set_input_files("#key-file", str(key))
    page.fill("#passphrase", passphrase)
    page.fill("#document", doc)
    page.click("#ask button")
    return outcome(page)


def outcome(page: Any) -> str:
    page.wait_for_selector("#result:not([hidden]):not([aria-busy])")
    return str(page.get_attribute("#result", "class"))


def title_rows(page: Any) -> dict[str, str]:
    rows = page.query_selector_all("#title tr")
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
    assert rows["Holder (has title)"] == world.id("exporter")
    assert rows["Pledge"] == "not pledged"
    answer = world.client("exporter").title(doc_id)
    checkpoint = verify_title(answer, world.log_key.public, doc_id)
    assert rows["Head event"] == answer["head"]
    assert f"of {checkpoint.size} entries" in page.inner_text("#verdict")
    assert page.errors == []


def test_a_bank_sees_the_pledge_with_an_encrypted_key_file(
    world: World, doc_id: str, page: Any, tmp_path: Path
) -> None:
    exporter, bank = world.client("exporter"), world.client("bank")
    body = {
        "pledgee": world.id("bank"),
        "loan_ref": "CQRCB-2026-0001",
        "amount": "100000.00",
        "currency": "USD",
        "registry_ref": "PBOC-CRCS-2026-000001",
        "maturity": "2026-08-01",
    }
    proposal = exporter.propose(exporter.next_event(doc_id, "pledge", body))
    text = proposal["text"].encode()
    note = text + b"\n" + b"".join(s.line().encode() for s in sign_text(text, [bank.key]))
    assert bank.countersign(proposal["id"], note)["state"] == "applied"

    key = key_file(world, "bank2", tmp_path, passphrase=b"correct horse")
    assert ask(page, world, "bank2", key, doc_id, passphrase="wrong") == "failed"
    assert page.get_attribute("#result", "data-step") == "key file"
    assert "passphrase is wrong" in page.inner_text("#verdict")

    page.fill("#passphrase", "correct horse")
    page.click("#ask button")
    assert outcome(page) == "checked"
    rows = title_rows(page)
    assert rows["Holder (has title)"] == world.id("exporter")
    assert rows["Controller"] == world.id("bank")  # the pledgee controls a pledged document
    assert rows["Pledge"].startswith(f"to {world.id('bank')}, 100000.00 USD")
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
    assert ask(page, world, "bank", key, "../log/checkpoint") == "failed"
    assert page.get_attribute("#result", "data-step") == "answer"


def paste(page: Any, world: World, answer: object, log_key: str | None = None) -> str:
    page.goto(world.url + "/verify")
    page.wait_for_selector("body[data-ready=true]")
    if log_key is not None:
        page.fill("#log-key", log_key)
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
    from encd.keys import SigningKey

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
