"""``encd demo``: the corridor story of design.md §1, through the real HTTP API with real keys.

A service starts on an embedded SQLite ledger in a temporary directory, with
the first bank's witness (c2sp.org/tlog-witness) cosigning its checkpoints.  The
operator registers the corridor logistics company (carrier), a Jiangjin
exporter, an overseas buyer and two banks.  The carrier issues an eNCD for
two containers leaving Luoqi by rail for Qinzhou and going on by sea;
milestones follow the cargo; the exporter pledges the document to the first
bank; the second bank's pledge, and a second document for the same
containers, are refused; the bank releases the pledge on repayment; the
exporter endorses to the buyer; the buyer surrenders; the carrier delivers.

Every step checks what it expects (accepted, or refused for the right
reason) and the title answer's proof.  At the end the document's bundle,
against a checkpoint the witness cosigned, and the auditor's policy, which
asks for that cosignature, are written and audited offline.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from api.client import Client, ProblemError, verify_title
from encd.bundle import BundleHeader
from encd.checkpoint import CosignerKey
from encd.events import make_event, sign_text
from encd.identifiers import lei_check_digits, uscc_check_char
from encd.keys import SigningKey


def _uscc(first17: str) -> str:
    return first17 + uscc_check_char(first17)


def _lei(first18: str) -> str:
    return first18 + lei_check_digits(first18)


CARRIER = _uscc("91500000MA5UCQ7L6")
EXPORTER = _uscc("91500116MA60JJ3K6")
BUYER = _lei("5493004XJL8RK2TQ6M")
BANK = _uscc("91500000676129728")
BANK2 = _uscc("91110000100000000")
WITNESS_NAME = "witness.cq-rural-bank.example/w1"  # the bank's witness of the ledger
DOC_ID = "ENCD-CQ-2026-000417"

PARTIES = {
    "carrier": (CARRIER, "Chongqing Luoqi Rail-Sea Multimodal Logistics Co., Ltd.", ["carrier"]),
    "exporter": (EXPORTER, "Chongqing Jiangjin Yuanfeng Motorcycle Parts Co., Ltd.", ["trader"]),
    "buyer": (BUYER, "Lion Gate Moto Distribution Pte. Ltd.", ["trader"]),
    "bank": (BANK, "Chongqing Rural Commercial Bank", ["bank"]),
    "bank2": (BANK2, "Second Bank of the Corridor", ["bank"]),
}


def corridor_content(doc_id: str = DOC_ID) -> dict[str, Any]:
    luoqi = {"locode": "CNCKG", "name": "Luoqi Railway Port, Jiangjin, Chongqing"}
    qinzhou = {"locode": "CNQZH", "name": "Qinzhou Port, Guangxi"}
    singapore = {"locode": "SGSIN", "name": "Pasir Panjang Terminal, Singapore"}
    buyer = {
        "name": PARTIES["buyer"][1],
        "legal_id": BUYER,
        "address": "21 Gul Way\nSingapore 629196",
    }
    return {
        "id": doc_id,
        "statement": "This is a negotiable cargo document under the United Nations "
        "Convention on Negotiable Cargo Documents.",
        "negotiability": {"kind": "to_order", "order_of": buyer},
        "carrier": {"name": PARTIES["carrier"][1], "legal_id": CARRIER},
        "consignor": {"name": PARTIES["exporter"][1], "legal_id": EXPORTER},
        "consignee": buyer,
        "place_of_receipt": luoqi,
        "place_of_delivery": singapore,
        "taken_in_charge": "2026-03-10",
        "legs": [
            {"mode": "RAIL", "from": luoqi, "to": qinzhou, "reference": "CQLQ2603100417"},
            {
                "mode": "SEA",
                "from": qinzhou,
                "to": singapore,
                "reference": "QZHSIN26031701",
                "vessel": "BEIBU GULF PIONEER",
                "voyage": "2611S",
            },
        ],
        "goods": [
            {
                "description": "Motorcycle parts: aluminium cylinder heads and crankcases, new",
                "hs_code": "8714100090",
                "packages": 120,
                "package_kind": "wooden cases",
                "gross_weight_kg": "18650.5",
                "marks": "YF/LGM-0417\nC/NO. 1-120\nMADE IN CHINA",
                "declared_value": {"amount": "185030.50", "currency": "USD"},
            }
        ],
        "containers": [
            {"number": "CSQU3054383", "seals": ["CN2603100417A"], "size_type": "45G1"},
            {"number": "CSQU3054399", "seals": ["CN2603100417B"], "size_type": "45G1"},
        ],
        "underlying": [
            {"kind": "rail_waybill", "number": "CQLQ2603100417"},
            {"kind": "sea_bl", "number": "QZHSIN26031701"},
            {"kind": "customs_entry", "number": "500120260310004170"},
        ],
        "place_of_issue": luoqi,
        "issued_on": "2026-03-10",
        "freight": "prepaid",
    }


@dataclass
class Step:
    name: str
    actor: str
    state: str
    ms: float
    ok: bool
    note: str = ""


@dataclass
class Story:
    url: str
    clients: dict[str, Client]
    log_key: Any
    steps: list[Step] = field(default_factory=list)

    def who(self, label: str) -> str:
        return PARTIES[label][1] if label in PARTIES else label

    def title_text(self) -> str:
        answer = self.clients["auditor"].title(DOC_ID)
        verify_title(answer, self.log_key)
        names = {pid: label for label, (pid, _, _) in PARTIES.items()}
        text = f"{answer['status']}, holder {names.get(answer['holder'], answer['holder'])}"
        if answer["pledge"]:
            text += f", pledged to {names.get(answer['pledge']['pledgee'])}"
        if answer["location"]:
            text += f", at {answer['location']['name'].split(',')[0]}"
        return text

    def expect_ok(self, name: str, actor: str, action: Callable[[], Any]) -> None:
        started = time.perf_counter()
        try:
            action()
        except ProblemError as exc:
            ms = (time.perf_counter() - started) * 1000
            self.steps.append(Step(name, actor, f"UNEXPECTED REFUSAL: {exc.message}", ms, False))
            return
        ms = (time.perf_counter() - started) * 1000
        self.steps.append(Step(name, actor, self.title_text(), ms, True))

    def expect_refused(self, name: str, actor: str, rule: str, action: Callable[[], Any]) -> None:
        started = time.perf_counter()
        try:
            action()
        except ProblemError as exc:
            ms = (time.perf_counter() - started) * 1000
            ok = exc.problem.get("rule") == rule
            self.steps.append(Step(name, actor, f"refused: {exc.problem.get('detail')}", ms, ok))
            return
        ms = (time.perf_counter() - started) * 1000
        self.steps.append(Step(name, actor, "UNEXPECTEDLY ACCEPTED", ms, False))


def _milestone(kind: str, locode: str, name: str, at: str) -> dict[str, Any]:
    return {"kind": kind, "location": {"locode": locode, "name": name}, "at": at}


def play(
    url: str, data_dir: Path, out: Path, console: Console, witness: CosignerKey | None = None
) -> bool:
    """Play the story against the service at ``url``; True if every step behaved.  With
    the ``witness`` the service sends its checkpoints to, the bundle written is against
    a checkpoint it cosigned, and the policy asks for its cosignature."""
    service = Client(url, SigningKey.generate("guest")).service()
    operator = Client(url, SigningKey.load(service["operator"], data_dir / "operator.key"))
    keys = {label: SigningKey.generate(pid) for label, (pid, _, _) in PARTIES.items()}
    auditor_id = _uscc("91110000MA00AUD01")
    keys["auditor"] = SigningKey.generate(auditor_id)
    clients = {label: Client(url, key) for label, key in keys.items()}
    from encd.keys import PublicKey

    log_key = PublicKey.from_vkey(service["log_key"])
    story = Story(url, clients, log_key)
    now = datetime.now(UTC)

    def register(label: str, pid: str, name: str, roles: list[str]) -> None:
        raw = make_event(
            [operator.key],
            type="register",
            party=pid,
            seq=0,
            prev=None,
            time=now,
            body={"name": name, "roles": roles, "keys": [keys[label].public.vkey]},
        )
        operator.register(raw)

    for label, (pid, name, roles) in PARTIES.items():
        register(label, pid, name, roles)
    register("auditor", auditor_id, "Corridor Audit Office", ["auditor"])
    console.print(f"[bold]Registered[/] {len(PARTIES) + 1} parties with their own Ed25519 keys.")

    carrier, exporter, buyer = clients["carrier"], clients["exporter"], clients["buyer"]
    bank, bank2 = clients["bank"], clients["bank2"]

    def issue() -> None:
        carrier.submit(
            make_event(
                [carrier.key],
                type="issue",
                doc=DOC_ID,
                seq=0,
                prev=None,
                time=now,
                body={"content": corridor_content(), "holder": EXPORTER},
            )
        )

    story.expect_ok("issue eNCD", "carrier", issue)
    for kind, locode, place, at in [
        ("gate_in", "CNCKG", "Luoqi Railway Port, Jiangjin", "2026-03-10T08:00:00Z"),
        ("departed", "CNCKG", "Luoqi Railway Port, Jiangjin (rail)", "2026-03-10T20:30:00Z"),
        ("arrived", "CNQZH", "Qinzhou Port East Railway Station", "2026-03-12T06:10:00Z"),
        ("loaded", "CNQZH", "Qinzhou Port, on BEIBU GULF PIONEER", "2026-03-16T14:00:00Z"),
        ("departed", "CNQZH", "Qinzhou Port (sea)", "2026-03-17T02:00:00Z"),
    ]:
        body = _milestone(kind, locode, place, at)
        story.expect_ok(
            f"milestone: {kind}",
            "carrier",
            lambda b=body: carrier.submit(carrier.next_event(DOC_ID, "milestone", b)),  # type: ignore[misc]
        )

    pledge_terms = {
        "loan_ref": "CQRCB-TF-2026-0417",
        "amount": "120000.00",
        "currency": "USD",
        "registry_ref": "CRCS-2026-03-000417",
        "maturity": "2026-06-17",
    }

    def pledge() -> None:
        proposal = exporter.propose(
            exporter.next_event(DOC_ID, "pledge", {"pledgee": BANK, **pledge_terms})
        )
        waiting = [p for p in bank.each_proposal() if p["id"] == proposal["id"]]
        text = waiting[0]["text"].encode()
        signed = text + b"\n" + b"".join(s.line().encode() for s in sign_text(text, [bank.key]))
        bank.countersign(proposal["id"], signed)

    story.expect_ok("pledge to bank (proposal + countersignature)", "exporter, bank", pledge)
    story.expect_refused(
        "second bank tries to take a pledge",
        "bank2",
        "pledge",
        lambda: bank2.propose(
            bank2.next_event(DOC_ID, "pledge", {"pledgee": BANK2, **pledge_terms})
        ),
    )
    twin = copy.deepcopy(corridor_content("ENCD-CQ-2026-000418"))
    story.expect_refused(
        "second eNCD for the same containers",
        "carrier",
        "singularity",
        lambda: carrier.submit(
            make_event(
                [carrier.key],
                type="issue",
                doc=twin["id"],
                seq=0,
                prev=None,
                time=now,
                body={"content": twin, "holder": EXPORTER},
            )
        ),
    )
    story.expect_ok(
        "bank releases the pledge on repayment",
        "bank",
        lambda: bank.submit(bank.next_event(DOC_ID, "release", {"reason": "loan repaid"})),
    )
    story.expect_ok(
        "exporter endorses to the buyer",
        "exporter",
        lambda: exporter.submit(exporter.next_event(DOC_ID, "transfer", {"to": BUYER})),
    )
    story.expect_ok(
        "milestone: arrived",
        "carrier",
        lambda: carrier.submit(
            carrier.next_event(
                DOC_ID,
                "milestone",
                _milestone(
                    "arrived", "SGSIN", "Pasir Panjang Terminal, Singapore", "2026-03-22T09:00:00Z"
                ),
            )
        ),
    )
    story.expect_ok(
        "buyer surrenders the eNCD",
        "buyer",
        lambda: buyer.submit(buyer.next_event(DOC_ID, "surrender", {})),
    )
    story.expect_ok(
        "carrier delivers the goods",
        "carrier",
        lambda: carrier.submit(carrier.next_event(DOC_ID, "deliver", {})),
    )

    table = Table(title=f"eNCD {DOC_ID}: Luoqi → Qinzhou by rail, on by sea")
    for column in ("#", "step", "actor", "title state after", "ms"):
        table.add_column(column, justify="right" if column in ("#", "ms") else "left")
    for i, step in enumerate(story.steps, 1):
        mark = "" if step.ok else "[red]✗ [/]"
        table.add_row(str(i), mark + step.name, step.actor, step.state, f"{step.ms:.1f}")
    console.print(table)

    out.mkdir(parents=True, exist_ok=True)
    bundle_path = out / f"{DOC_ID}.encd"
    if witness is None:
        bundle = clients["auditor"].bundle(DOC_ID)
        trust = "quorum 0\n"
    else:
        bundle = _witnessed_bundle(clients["auditor"], console)
        trust = f"witness {witness.vkey}\nquorum 1\n"
    _replace(bundle_path, bundle)
    policy_path = out / "policy.txt"
    policy = (
        "# encd audit policy: the keys this auditor trusts (docs/verification.md)\n"
        f"log {service['log_key']}\n" + trust
    )
    _replace(policy_path, policy.encode())
    console.print(f"Wrote {bundle_path} and {policy_path}", markup=False)
    for client in [operator, *clients.values()]:
        client.close()
    return all(step.ok for step in story.steps)


def _replace(path: Path, data: bytes) -> None:
    """Write ``path`` whole, replacing the name (a symbolic link there is replaced, never
    written through: what it pointed to is left alone)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _witnessed_bundle(auditor: Client, console: Console) -> bytes:
    """The document's bundle against a checkpoint the witness cosigned after the story's
    last event (the service sends it each new checkpoint within a fraction of a second)."""
    size = int(auditor.service()["log_size"])
    deadline = time.monotonic() + 30
    while True:
        try:
            bundle = auditor.bundle(DOC_ID, witnessed=True)
            header = BundleHeader.parse_line(bundle.split(b"\n", 1)[0])
            if header.size >= size:
                return bundle
        except ProblemError as exc:
            if exc.status != 404:  # 404: no checkpoint is cosigned yet
                raise
        if time.monotonic() > deadline:
            console.print("[red]The witness did not cosign the latest checkpoint in 30 s.[/]")
            return auditor.bundle(DOC_ID)
        time.sleep(0.05)


def run(out: Path, console: Console) -> bool:
    """Start a service on a temporary SQLite ledger and the bank's witness of it, play the
    story, write the bundle and the policy (which asks for the witness's cosignature)."""
    from api.server import running, running_app
    from api.settings import Settings
    from api.setup import load_or_init
    from api.witness import create_witness_app, init_witness

    with tempfile.TemporaryDirectory(prefix="encd-demo-") as tmp:
        data_dir = Path(tmp) / "data"
        origin = "demo.encd.local/log"
        log_key = load_or_init(data_dir, origin).log_key
        witness = init_witness(Path(tmp) / "witness", WITNESS_NAME, [log_key.public.vkey])
        with running_app(create_witness_app(witness)) as witness_url:
            settings = Settings(
                data_dir=data_dir,
                database_url=f"sqlite:///{Path(tmp) / 'ledger.db'}",
                origin=origin,
                witnesses=(f"witness {witness.cosigner.vkey} {witness_url}",),
                witness_interval=0.1,
            )
            with running(settings) as url:
                console.print(f"encd service on {url}, ledger {settings.url}", markup=False)
                console.print(
                    f"{PARTIES['bank'][1]}'s witness {WITNESS_NAME} on {witness_url} "
                    "cosigns each checkpoint that extends the last one it saw",
                    markup=False,
                )
                return play(url, data_dir, out, console, witness.cosigner)
