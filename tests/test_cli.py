"""The `encd` command against a real service: keys, registration, the title flow, export, audit."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from api.client import Client, ProblemError
from api.server import running
from api.settings import Settings
from encd.cli import app
from encd.events import Event
from encd.keys import SigningKey
from tests.kit import corridor_document
from tests.serving import serve

runner = CliRunner()
DOC = corridor_document()["id"]


@pytest.fixture()
def service(tmp_path: Path, database_url: str) -> Iterator[tuple[str, Path]]:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, origin="encd.test/log"
    )
    with running(settings) as url:
        yield url, tmp_path


def encd(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_the_title_flow_from_the_command_line(service: tuple[str, Path]) -> None:
    url, tmp = service
    operator = json.loads((tmp / "data" / "service.json").read_text())["operator_id"]
    content = corridor_document()
    ids = {
        "carrier": content["carrier"]["legal_id"],
        "exporter": content["consignor"]["legal_id"],
        "buyer": content["negotiability"]["order_of"]["legal_id"],
        "bank": "91500000676129728J",
        "bank2": "529900T8BM49AURSDO55",  # never a party to the document
    }
    roles = {
        "carrier": "carrier",
        "exporter": "trader",
        "buyer": "trader",
        "bank": "bank",
        "bank2": "bank",
    }
    for label, pid in ids.items():
        code, out = encd("keygen", pid, "--out", str(tmp / f"{label}.key"), "--json")
        assert code == 0, out
        vkey = json.loads(out)["vkey"]
        code, out = encd(
            "party",
            "register",
            pid,
            "--name",
            label.title(),
            "--role",
            roles[label],
            "--vkey",
            vkey,
            "--server",
            url,
            "--key",
            str(tmp / "data" / "operator.key"),
            "--party",
            operator,
        )
        assert code == 0 and f"OK: registered {pid}" in out, out

    def as_(label: str) -> list[str]:
        return ["--server", url, "--key", str(tmp / f"{label}.key"), "--party", ids[label]]

    code, out = encd("party", "show", ids["carrier"], *as_("bank"))
    assert code == 0 and out.splitlines()[:3] == [
        f"party     {ids['carrier']} (USCC)",
        "name      Carrier",
        "roles     carrier",
    ], out
    code, out = encd("party", "show", ids["bank2"], *as_("bank"), "--json")
    shown = json.loads(out)
    assert code == 0 and (shown["id"], shown["scheme"], shown["seq"]) == (ids["bank2"], "LEI", 0)

    yaml_file = tmp / "content.yaml"
    text = yaml.safe_dump(content, allow_unicode=True)
    text = text.replace("'2026-03-10'", "2026-03-10")  # as a person writes a date in YAML
    assert "issued_on: 2026-03-10" in text
    yaml_file.write_text(text)
    code, out = encd("issue", str(yaml_file), "--holder", ids["exporter"], *as_("carrier"))
    assert code == 0 and f"OK: issued {DOC}" in out, out
    # an amendment that changes nothing, or names another document, is not proposed
    code, out = encd("amend", DOC, str(yaml_file), *as_("carrier"))
    assert code == 2 and "is the document's current content" in " ".join(out.split()), out
    other = tmp / "other.json"
    other.write_text(json.dumps({**content, "id": "ENCD-CQ-2026-999999"}))
    code, out = encd("amend", DOC, str(other), *as_("carrier"))
    assert code == 2 and f"its id is 'ENCD-CQ-2026-999999', not the document {DOC}" in " ".join(
        out.split()
    ), out

    maturity = (datetime.now(UTC).date() + timedelta(days=90)).isoformat()
    code, out = encd(
        "pledge",
        DOC,
        "--bank",
        ids["bank"],
        "--loan-ref",
        "L-1",
        "--amount",
        "1000.00",
        "--currency",
        "USD",
        "--registry-ref",
        "R-1",
        "--maturity",
        maturity,
        *as_("exporter"),
        "--json",
    )
    assert code == 0, out
    proposal = json.loads(out)["id"]
    code, out = encd("proposals", *as_("bank"))
    asked = (
        f"pledge of {DOC} to {ids['bank']} for 1000.00 USD (loan L-1, registry R-1, "
        f"maturity {maturity})"
    )  # what the bank is asked to sign, in words
    assert f"{proposal} {asked}; waiting for the pledgee {ids['bank']}" in " ".join(out.split()), (
        out
    )
    code, out = encd("countersign", proposal, *as_("bank"))
    assert code == 0 and f"OK: signed {asked}; applied at index" in " ".join(out.split()), out

    code, out = encd("transfer", DOC, "--to", ids["buyer"], *as_("exporter"))
    assert code == 1 and "rule-violation" not in out and "is pledged to" in out, out
    code, out = encd("release", DOC, "--reason", "repaid", *as_("bank"))
    assert code == 0, out
    code, out = encd("transfer", DOC, "--to", ids["buyer"], *as_("exporter"))
    assert code == 0, out
    # the whole event id is printed (an acknowledge names an instruction by it)
    transfer_id = re.search(r"\(event ([0-9a-f]{64})\)", out)
    assert transfer_id is not None, out

    code, out = encd("title", DOC, *as_("bank"), "--json")
    assert code == 0 and json.loads(out)["holder"] == ids["buyer"]
    assert json.loads(out)["replayed"] is True, out  # a party: replayed from the bundle
    code, out = encd("title", DOC, *as_("buyer"))
    assert code == 0 and "replayed from the document's bundle" in " ".join(out.split()), out
    other = SigningKey.generate("encd.test/log").public  # the log's name, another key
    code, out = encd("title", DOC, *as_("buyer"), "--log-key", other.vkey)
    assert code == 1, out
    assert f"is not signed by the --log-key given ({other.key_id}); is that this service's" in (
        " ".join(out.split())
    ), out
    code, out = encd("title", DOC, *as_("bank2"))  # no party to it: told what is not checked
    assert code == 0 and "as the service reports them" in " ".join(out.split()), out
    # a service that names bank2 the holder and keeps the events from it is caught: a
    # party by the answer's own account may read them (refusing them let any lie pass)
    with lying_proxy(url, {"holder": ids["bank2"]}) as fake:
        code, out = encd("title", DOC, *as_("bank2")[2:], "--server", fake)
        assert code == 1 and "names you as" in " ".join(out.split()), out
    # what cannot be replayed is printed as data: no escape sequence or markup reaches
    # the terminal
    with lying_proxy(url, {"holder": "\x1b[2J[bold red]X"}) as fake:
        code, out = encd("title", DOC, *as_("bank2")[2:], "--server", fake)
        assert code == 0 and "\x1b" not in out and "'\\x1b[2J[bold red]X'" in out, out
    code, out = encd("history", DOC, *as_("buyer"))
    assert code == 0 and "transfer" in out and "pledge" in out
    assert f"event {transfer_id[1]}" in out, out

    bundle = tmp / "doc.encd"
    code, out = encd("export", DOC, "--out", str(bundle), *as_("buyer"))
    assert code == 0, out
    log_key = json.loads((tmp / "data" / "service.json").read_text())["log_vkey"]
    (tmp / "policy.txt").write_text(f"log {log_key}\n")
    code, out = encd("audit", str(bundle), "--policy", str(tmp / "policy.txt"))
    assert code == 0 and f"OK: {DOC}: active, holder {ids['buyer']}" in out.replace("\n", " "), out


@contextmanager
def lying_proxy(url: str, title_changes: dict[str, Any]) -> Iterator[str]:
    """An HTTP proxy in front of the service at ``url`` that changes ``title_changes`` in
    every title answer and refuses every document bundle (403); the rest passes through."""
    upstream = httpx.Client(base_url=url)

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.endswith("/bundle"):
                body = json.dumps({"type": "urn:encd:problem:forbidden", "status": 403})
                self.answer(403, body.encode(), "application/problem+json")
                return
            got = upstream.get(self.path, headers=dict(self.headers))
            content = got.content
            if self.path.endswith("/title") and got.status_code == 200:
                content = json.dumps(got.json() | title_changes).encode()
            self.answer(got.status_code, content, got.headers["content-type"])

        def answer(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        upstream.close()


def test_bad_content_is_refused_before_anything_is_sent(service: tuple[str, Path]) -> None:
    url, tmp = service
    content = corridor_document()
    content["containers"][0]["number"] = "CSQU3054384"
    path = tmp / "bad.json"
    path.write_text(json.dumps(content))
    code, out = encd("keygen", content["carrier"]["legal_id"], "--out", str(tmp / "c.key"))
    code, out = encd(
        "issue",
        str(path),
        "--holder",
        "X",
        "--server",
        url,
        "--key",
        str(tmp / "c.key"),
        "--party",
        content["carrier"]["legal_id"],
    )
    assert code == 2, out  # refused before anything is sent: bad usage
    assert "containers[0].number" in out and "check digit" in out


def test_who_you_are_is_required(service: tuple[str, Path]) -> None:
    url, tmp = service
    code, out = encd("title", DOC, "--server", url, "--key", str(tmp / "none.key"))
    assert code == 2 and "--party" in out


def test_serve_says_at_start_up_that_authority_is_not_pinned(
    tmp_path: Path, database_url: str
) -> None:
    with serve(tmp_path / "data", database_url) as served:
        url, output = served.url, served.output
        notices = [line for line in output if "@authority" in line]
        assert notices == [
            "encd: NOTICE: @authority is not pinned (--authority or ENCD_AUTHORITY): a request "
            "signed for another deployment with the same party keys verifies here; "
            "fine for local use only\n"
        ]
        assert httpx.get(url + "/healthz").status_code == 200


def test_serve_pins_authority_from_the_environment(tmp_path: Path, database_url: str) -> None:
    with serve(
        tmp_path / "data", database_url, authority="Ledger.Example.com,localhost:1"
    ) as served:
        url, output = served.url, served.output
        assert "encd: @authority pinned to ledger.example.com, localhost:1\n" in output
        operator = httpx.get(url + "/v1/service").json()["operator"]
        key = SigningKey.load(operator, tmp_path / "data" / "operator.key")
        with Client(url, key) as here, Client(url, key, authority="ledger.example.com") as there:
            with pytest.raises(ProblemError) as refused:
                here.party(operator)
            assert refused.value.status == 401
            assert refused.value.problem["expected"] == ["ledger.example.com", "localhost:1"]
            assert there.party(operator)["id"] == operator


def test_serve_refuses_an_authority_that_is_not_host_and_port(tmp_path: Path) -> None:
    code, out = encd("serve", "--data-dir", str(tmp_path), "--authority", "https://x.example/")
    assert code == 2
    assert "--authority (ENCD_AUTHORITY): expected host[:port]" in out
    assert not (tmp_path / "log.key").exists(), "nothing is created for a bad setting"


def test_a_party_adds_rotates_and_revokes_its_keys_from_the_command_line(
    service: tuple[str, Path],
) -> None:
    url, tmp = service
    operator = json.loads((tmp / "data" / "service.json").read_text())["operator_id"]
    bank = "91500000676129728J"
    vkeys = {}
    for n in (1, 2, 3):
        code, out = encd("keygen", bank, "--out", str(tmp / f"k{n}.key"), "--json")
        assert code == 0, out
        vkeys[n] = json.loads(out)["vkey"]
    key_id = {n: "+".join(vkey.split("+")[:2]) for n, vkey in vkeys.items()}
    as_op = ["--server", url, "--key", str(tmp / "data" / "operator.key"), "--party", operator]

    def as_bank(n: int) -> list[str]:
        return ["--server", url, "--key", str(tmp / f"k{n}.key"), "--party", bank]

    args = ("--name", "Bank", "--role", "bank", "--vkey", vkeys[1])
    code, out = encd("party", "register", bank, *args, *as_op)
    assert code == 0, out
    code, out = encd("party", "add-key", bank, "--vkey", vkeys[2], *as_bank(1))
    assert code == 0 and f"OK: key added to {bank}" in out, out
    code, out = encd(
        "party", "rotate-key", bank, "--old", key_id[1], "--new", vkeys[3], *as_bank(2)
    )
    assert code == 0 and f"OK: {key_id[1]} revoked" in out, out
    code, out = encd("party", "show", bank, *as_bank(1))  # a revoked key signs nothing
    assert code == 1 and "401" in out, out
    code, out = encd("party", "revoke-key", bank, key_id[2], *as_op)  # the operator may
    assert code == 0 and f"OK: {key_id[2]} revoked" in out, out
    code, out = encd("party", "revoke-key", bank, key_id[3], *as_bank(3))
    assert code == 1 and "is the last active key" in out and "rotate it" in out, out
    code, out = encd("party", "show", bank, *as_bank(3))
    assert code == 0, out
    shown = [line.split()[1:] for line in out.splitlines() if line.startswith("key ")]
    assert shown == [[vkeys[1], "(revoked)"], [vkeys[2], "(revoked)"], [vkeys[3]]], out
    # checked before anything is sent
    code, out = encd("party", "add-key", bank, "--vkey", vkeys[3].replace(bank, operator))
    assert code == 2 and "--vkey: " in out, out
    code, out = encd("party", "revoke-key", bank, "nope")
    assert code == 2 and f"KEY_ID: expected a key id {bank}+<8 lowercase hex digits>" in out, out


def test_concurrent_milestones_of_one_carrier_all_land(service: tuple[str, Path]) -> None:
    """Several `encd milestone` at once against one document: each signs against the head
    it read, all but one find it taken (409 stale-event), and each tries again on the new
    head until it lands; a milestone means the same whatever came before it."""
    url, tmp = service
    operator = json.loads((tmp / "data" / "service.json").read_text())["operator_id"]
    content = corridor_document()
    carrier, exporter = content["carrier"]["legal_id"], content["consignor"]["legal_id"]
    for pid, role in ((carrier, "carrier"), (exporter, "trader")):
        code, out = encd("keygen", pid, "--out", str(tmp / f"{role}.key"), "--json")
        assert code == 0, out
        code, out = encd(
            "party", "register", pid, "--name", role, "--role", role,
            "--vkey", json.loads(out)["vkey"], "--server", url,
            "--key", str(tmp / "data" / "operator.key"), "--party", operator,
        )  # fmt: skip
        assert code == 0, out
    (tmp / "content.json").write_text(json.dumps(content))
    as_carrier = ["--server", url, "--key", str(tmp / "carrier.key"), "--party", carrier]
    code, out = encd("issue", str(tmp / "content.json"), "--holder", exporter, *as_carrier)
    assert code == 0, out

    places = ["Luoqi", "Qinzhou", "Beibu Gulf", "Singapore", "Port Klang"]
    command = [sys.executable, "-m", "encd.cli", "milestone", DOC, "--kind", "other"]
    runs = [
        subprocess.Popen(
            [*command, "--locode", "CNQZH", "--place", place, *as_carrier],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for place in places
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0] * len(places), outputs
    code, out = encd("history", DOC, *as_carrier, "--json")
    assert code == 0, out
    events = [Event.parse(item["event"].encode()) for item in json.loads(out)["events"]]
    logged = [e.body["location"]["name"] for e in events if e.type == "milestone"]
    assert sorted(logged) == sorted(places), out
