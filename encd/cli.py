"""The ``encd`` command.

Commands that need the service import it lazily, so ``encd audit`` and
``encd keygen`` run with the domain alone.  Exit status: 0 done (or valid),
1 refused or invalid, 2 bad usage.  ``--json`` gives machines the same result.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from encd.canonical import parse_json
from encd.errors import Error, InvalidInput
from encd.keys import SigningKey
from encd.validation import show

if TYPE_CHECKING:
    from api.client import Client

app = typer.Typer(
    name="encd",
    help="A ledger for electronic negotiable cargo documents: issue, endorse, pledge, verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

ServerOpt = Annotated[
    str, typer.Option("--server", envvar="ENCD_SERVER", help="The encd service's base URL.")
]
KeyOpt = Annotated[
    Path, typer.Option("--key", envvar="ENCD_KEY", help="Your private key file (PKCS#8 PEM).")
]
PartyOpt = Annotated[
    str, typer.Option("--party", envvar="ENCD_PARTY", help="Your party id (USCC or LEI).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
DEFAULT_SERVER = "http://127.0.0.1:8080"


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]FAIL:[/] {message}")
    raise typer.Exit(code)


_PLAIN_FIELD = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # ids, statuses, amounts, currencies


def emit(result: Any, as_json: bool, human: str | None = None) -> None:
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        console.print(human if human is not None else json.dumps(result, indent=2))


def load_key(party: str, path: Path) -> SigningKey:
    passphrase = os.environ.get("ENCD_KEY_PASSPHRASE")
    try:
        return SigningKey.load(party, path, passphrase.encode() if passphrase else None)
    except FileNotFoundError:
        fail(f"key file {path} does not exist", 2)
    except InvalidInput as exc:
        if "password" in exc.message.lower() and passphrase is None:
            fail(f"{path} is encrypted: set ENCD_KEY_PASSPHRASE", 2)
        fail(f"{path}: {exc.message}", 2)


def client(server: str, key: Path, party: str) -> Client:
    from api.client import Client

    if not party:
        fail("say who you are: --party <your party id> (or ENCD_PARTY)", 2)
    return Client(server, load_key(party, key))


def read_content(path: Path) -> dict[str, Any]:
    """Document content from JSON or YAML, validated before anything is sent."""
    from encd.document import Document

    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", 2)
    value: Any = None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        class _Loader(yaml.SafeLoader):
            """Dates stay strings, as in JSON: 2026-03-10 is text, not a datetime."""

        _Loader.yaml_implicit_resolvers = {
            first: [
                (tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"
            ]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
        try:
            value = yaml.load(data, Loader=_Loader)
        except yaml.YAMLError as exc:
            fail(f"{path}: not YAML: {exc}", 2)
    try:
        if path.suffix.lower() not in (".yaml", ".yml"):
            value = parse_json(data)
        Document.from_json(value)
    except InvalidInput as exc:
        fail(f"{path}: {exc.message}")
    if not isinstance(value, dict):
        fail(f"{path}: document content must be an object", 2)
    return value


def run(action: Any) -> Any:
    """Run a client action; a refusal prints the problem and exits 1."""
    from api.client import ProblemError

    try:
        return action()
    except ProblemError as exc:
        problem = exc.problem
        where = f" [{problem['field']}]" if problem.get("field") else ""
        fail(f"{exc.status} {problem.get('title', '')}{where}: {problem.get('detail', '')}")
    except Error as exc:
        fail(exc.message)
    except OSError as exc:
        fail(f"cannot reach the service: {exc}")


# --- keys and the service -------------------------------------------------------------------


@app.command()
def keygen(
    party: Annotated[str, typer.Argument(help="The party id the key will belong to.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the private key.")],
    encrypt: Annotated[bool, typer.Option(help="Encrypt with ENCD_KEY_PASSPHRASE.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate an Ed25519 key; prints its public verifier key (give that to the operator)."""
    passphrase = os.environ.get("ENCD_KEY_PASSPHRASE") if encrypt else None
    if encrypt and not passphrase:
        fail("--encrypt needs ENCD_KEY_PASSPHRASE", 2)
    key = SigningKey.generate(party)
    try:
        key.save(out, passphrase.encode() if passphrase else None)
    except FileExistsError:
        fail(f"{out} exists; refusing to overwrite a key", 2)
    result = {"key_file": str(out), "key_id": key.public.key_id, "vkey": key.public.vkey}
    emit(result, as_json, f"Wrote {out} (mode 0600)\nverifier key: {key.public.vkey}")


@app.command()
def init(
    data_dir: Annotated[Path, typer.Option(help="Data directory.")] = Path("encd-data"),
    origin: Annotated[
        str, typer.Option(help="The log's name (a schema-less URL).")
    ] = "encd.local/log",
    operator_id: Annotated[str | None, typer.Option(help="The operator's USCC or LEI.")] = None,
    operator_name: Annotated[str | None, typer.Option(help="The operator's name.")] = None,
    db: Annotated[
        str | None, typer.Option(help="Database URL (default: SQLite in the data dir).")
    ] = None,
) -> None:
    """Create the data directory, the log key and the operator key, and the ledger."""
    from api.settings import Settings
    from api.setup import ensure_genesis, load_or_init
    from ledger.ledger import Ledger

    service = load_or_init(data_dir, origin, operator_id, operator_name)
    settings = Settings(data_dir=data_dir, database_url=db, origin=service.origin)
    with Ledger(settings.url, service.log_key) as ledger:
        ensure_genesis(ledger, service, datetime.now(UTC))
    verb = "Created" if service.created else "Found"
    console.print(f"{verb} {data_dir}/ (mode 0700)")
    console.print(f"  log key       {service.log_key_path}  {service.log_key.public.vkey}")
    console.print(f"  operator key  {service.operator_key_path}  party {service.operator_id}")
    console.print(f"  ledger        {settings.url}")


@app.command()
def serve(
    data_dir: Annotated[Path, typer.Option(help="Data directory.")] = Path("encd-data"),
    db: Annotated[str | None, typer.Option(help="Database URL (or ENCD_DATABASE_URL).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    origin: Annotated[str, typer.Option(help="The log's name on first start.")] = "encd.local/log",
    authority: Annotated[
        str,
        typer.Option(
            envvar="ENCD_AUTHORITY",
            help="The names clients address the service by, host[:port], comma-separated "
            "(e.g. ledger.example.com,127.0.0.1:8080): a signed request for any other "
            "@authority is refused.  Unset: not checked (local use).",
        ),
    ] = "",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes sharing the port and the ledger (one per core is a good "
            "start); each request is answered by one of them.",
        ),
    ] = 1,
    request_timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Seconds a client has to send a whole request (line, headers, body) once "
            "the service is ready for it; a connection still short of one is closed.",
        ),
    ] = 30.0,
) -> None:
    """Run the service (creating the data directory and keys on first start)."""
    from api.server import WorkerFailed
    from api.server import serve as run_server
    from api.settings import Settings, parse_authorities
    from api.setup import load_or_init

    try:
        names = parse_authorities(authority)
    except InvalidInput as exc:
        fail(f"--authority (ENCD_AUTHORITY): {exc.reason}", 2)
    service = load_or_init(data_dir, origin)
    if service.created:
        console.print(
            f"Created {data_dir}/: log key {service.log_key_path}, "
            f"operator key {service.operator_key_path} (party {service.operator_id})"
        )
    if names:
        notice = f"encd: @authority pinned to {', '.join(sorted(names))}"
    else:
        notice = (
            "encd: NOTICE: @authority is not pinned (--authority or ENCD_AUTHORITY): a request "
            "signed for another deployment with the same party keys verifies here; "
            "fine for local use only"
        )
    err.print(notice, markup=False, highlight=False, soft_wrap=True)
    settings = Settings(
        data_dir=data_dir, database_url=db, origin=service.origin, authorities=names
    )
    try:
        run_server(settings, host, port, workers, request_timeout=request_timeout)
    except WorkerFailed as exc:
        fail(str(exc), 1)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where to write the bundle and policy.")] = Path(
        "encd-demo"
    ),
) -> None:
    """The corridor story on an embedded SQLite ledger, through the real HTTP API."""
    from api.demo import run as run_demo

    ok = run_demo(out, console)
    if not ok:
        fail("some step did not behave as expected")
    audited = _audit(out / "ENCD-CQ-2026-000417.encd", out / "policy.txt", None, False)
    if not audited:
        raise typer.Exit(1)
    console.print("[green]OK:[/] every step behaved as expected and the bundle audits offline.")


# --- parties ----------------------------------------------------------------------------


party_app = typer.Typer(help="Parties: registration (operator) and keys.", no_args_is_help=True)
app.add_typer(party_app, name="party")


@party_app.command("register")
def party_register(
    party_id: Annotated[str, typer.Argument(help="The new party's USCC or LEI.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    role: Annotated[list[str], typer.Option(help="A role (repeat for several).")],
    vkey: Annotated[list[str], typer.Option(help="A verifier key of the party (repeat).")],
    agent_for: Annotated[list[str] | None, typer.Option(help="Carrier an agent acts for.")] = None,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("operator.key"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """The operator registers a party."""
    from encd.events import make_event

    c = client(server, key, party)
    body: dict[str, Any] = {"name": name, "roles": role, "keys": vkey}
    if agent_for:
        body["agent_for"] = agent_for
    raw = make_event(
        [c.key],
        type="register",
        party=party_id,
        seq=0,
        prev=None,
        time=datetime.now(UTC),
        body=body,
    )
    result = run(lambda: c.register(raw))
    emit(result, as_json, f"OK: registered {party_id} ({', '.join(role)})")


@party_app.command("show")
def party_show(
    party_id: str,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Look a party up."""
    c = client(server, key, party)
    emit(run(lambda: c.party(party_id)), as_json)


# --- document events ------------------------------------------------------------------------


def _submit(
    server: str,
    key: Path,
    party: str,
    doc: str,
    type_: str,
    body: dict[str, Any],
    as_json: bool,
    propose: bool = False,
) -> None:
    c = client(server, key, party)
    raw = run(lambda: c.next_event(doc, type_, body))
    if propose:
        result = run(lambda: c.propose(raw))
        if result["state"] == "applied":
            emit(
                result, as_json, f"OK: {type_} applied (log index {result['receipt']['log_index']})"
            )
        else:
            emit(
                result,
                as_json,
                f"OK: proposed {type_} as {result['id']}; waiting for "
                + ", ".join(result["missing"]),
            )
        return
    receipt = run(lambda: c.submit(raw))
    emit(
        receipt,
        as_json,
        f"OK: {type_} logged at index {receipt['log_index']} (event {receipt['event_id'][:16]}…)",
    )


@app.command()
def issue(
    content: Annotated[Path, typer.Argument(help="Document content, JSON or YAML.")],
    holder: Annotated[str, typer.Option(help="The first holder's party id.")],
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Issue an eNCD (carrier)."""
    from encd.events import make_event

    value = read_content(content)
    c = client(server, key, party)
    raw = make_event(
        [c.key],
        type="issue",
        doc=value["id"],
        seq=0,
        prev=None,
        time=datetime.now(UTC),
        body={"content": value, "holder": holder},
    )
    receipt = run(lambda: c.submit(raw))
    emit(receipt, as_json, f"OK: issued {value['id']} to {holder} at index {receipt['log_index']}")


@app.command()
def transfer(
    doc: str,
    to: Annotated[str, typer.Option(help="The endorsee's party id.")],
    blank: Annotated[bool, typer.Option(help="Endorse in blank.")] = False,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Endorse the document to another party (holder)."""
    _submit(server, key, party, doc, "transfer", {"to": to, "blank": blank}, as_json)


@app.command()
def reject(
    doc: str,
    reason: Annotated[str | None, typer.Option()] = None,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Reject a transfer just made to you."""
    _submit(server, key, party, doc, "reject_transfer", _reason(reason), as_json)


def _reason(reason: str | None) -> dict[str, Any]:
    return {"reason": reason} if reason else {}


@app.command()
def pledge(
    doc: str,
    bank: Annotated[str, typer.Option(help="The pledgee bank's party id.")],
    loan_ref: Annotated[str, typer.Option()],
    amount: Annotated[str, typer.Option(help="Decimal amount, e.g. 120000.00")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code.")],
    registry_ref: Annotated[str, typer.Option(help="Pledge registry reference.")],
    maturity: Annotated[str, typer.Option(help="YYYY-MM-DD")],
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Propose a pledge (holder or bank); the other countersigns with `encd countersign`."""
    body = {
        "pledgee": bank,
        "loan_ref": loan_ref,
        "amount": amount,
        "currency": currency,
        "registry_ref": registry_ref,
        "maturity": maturity,
    }
    _submit(server, key, party, doc, "pledge", body, as_json, propose=True)


@app.command()
def countersign(
    proposal_id: str,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Sign a proposal waiting for you (applies it when yours is the last signature)."""
    from encd.events import sign_text

    c = client(server, key, party)
    proposal = run(lambda: c.proposal(proposal_id))
    text = proposal["text"].encode()
    signed = text + b"\n" + b"".join(s.line().encode() for s in sign_text(text, [c.key]))
    result = run(lambda: c.countersign(proposal_id, signed))
    if result["state"] == "applied":
        emit(
            result,
            as_json,
            f"OK: {result['type']} applied at index {result['receipt']['log_index']}",
        )
    else:
        emit(result, as_json, f"OK: signed; still waiting for {', '.join(result['missing'])}")


@app.command()
def proposals(
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Open proposals you must sign or have signed."""
    c = client(server, key, party)
    result = run(c.proposals)
    lines = [
        f"{p['id']}  {p['type']:<16} {p['document']:<24} waiting for {', '.join(p['missing'])}"
        for p in result["proposals"]
    ]
    emit(result, as_json, "\n".join(lines) or "no open proposals")


def _simple(type_: str, propose: bool = False, doc_help: str = "") -> Any:
    def command(
        doc: str,
        reason: Annotated[str | None, typer.Option()] = None,
        server: ServerOpt = DEFAULT_SERVER,
        key: KeyOpt = Path("key.pem"),
        party: PartyOpt = "",
        as_json: JsonOpt = False,
    ) -> None:
        _submit(server, key, party, doc, type_, _reason(reason), as_json, propose=propose)

    command.__doc__ = doc_help
    return command


app.command("release")(_simple("release", doc_help="Release the pledge (pledgee)."))
app.command("enforce")(_simple("enforce", doc_help="Enforce the pledge: the bank becomes holder."))
app.command("deliver")(_simple("deliver", doc_help="Deliver the goods (carrier)."))
app.command("refuse")(_simple("refuse", doc_help="Refuse delivery: back to active (carrier)."))
app.command("surrender")(
    _simple(
        "surrender",
        propose=True,
        doc_help="Surrender for delivery (holder; the pledgee countersigns if pledged).",
    )
)
app.command("void")(
    _simple(
        "void", propose=True, doc_help="Void a document issued in error (carrier and first holder)."
    )
)


@app.command()
def instruct(
    doc: str,
    text: str,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Give the carrier an instruction (holder)."""
    _submit(server, key, party, doc, "instruct", {"instruction": text}, as_json)


@app.command()
def acknowledge(
    doc: str,
    instruction: Annotated[str, typer.Argument(help="The instruct event's id.")],
    accept: Annotated[bool, typer.Option("--accept/--decline")] = True,
    note: Annotated[str | None, typer.Option()] = None,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Answer a holder's instruction (carrier)."""
    body: dict[str, Any] = {"instruction": instruction, "accepted": accept}
    if note:
        body["note"] = note
    _submit(server, key, party, doc, "acknowledge", body, as_json)


@app.command()
def milestone(
    doc: str,
    kind: Annotated[
        str,
        typer.Option(
            help="gate_in, departed, arrived, transshipped, loaded, "
            "discharged, customs_cleared, gate_out or other"
        ),
    ],
    locode: Annotated[str, typer.Option(help="UN/LOCODE, e.g. CNQZH")],
    place: Annotated[str, typer.Option(help="Place name")],
    at: Annotated[str | None, typer.Option(help="RFC 3339 UTC time (default: now)")] = None,
    note: Annotated[str | None, typer.Option()] = None,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Record a tracking milestone (carrier or its agent)."""
    from encd.events import format_time

    body: dict[str, Any] = {
        "kind": kind,
        "location": {"locode": locode, "name": place},
        "at": at or format_time(datetime.now(UTC).replace(microsecond=0)),
    }
    if note:
        body["note"] = note
    _submit(server, key, party, doc, "milestone", body, as_json)


@app.command()
def amend(
    doc: str,
    content: Annotated[Path, typer.Argument(help="The new content, JSON or YAML.")],
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Propose an amendment (carrier, holder and pledgee if pledged must sign)."""
    value = read_content(content)
    c = client(server, key, party)
    current = run(lambda: c.document(doc))
    body = {"content": value, "supersedes": current["title"]["content_digest"]}
    _submit(server, key, party, doc, "amend", body, as_json, propose=True)


@app.command("switch-to-paper")
def switch_to_paper(
    doc: str,
    paper_number: Annotated[str, typer.Option(help="The paper document's number.")],
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Propose switching to paper (carrier, holder, and pledgee if pledged)."""
    _submit(
        server,
        key,
        party,
        doc,
        "switch_to_paper",
        {"paper_document_number": paper_number},
        as_json,
        propose=True,
    )


# --- reading --------------------------------------------------------------------------------


@app.command()
def title(
    doc: str,
    log_key: Annotated[
        str | None,
        typer.Option(
            help="The log's verifier key you trust (default: the service's, trusted on first use)."
        ),
    ] = None,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Who holds the document, is it pledged, to whom — verified against the log.

    The head event is proved in the log; a party to the document also has the title
    replayed from the document's bundle (its events, each proved).  Anyone else gets
    the other fields as the service reports them, and is told so."""
    from api.client import ProblemError, verify_title, verify_title_replay
    from encd.errors import VerificationError
    from encd.keys import PublicKey

    c = client(server, key, party)
    trusted = PublicKey.from_vkey(log_key or run(c.service)["log_key"])
    answer = run(lambda: c.title(doc))
    checkpoint = run(lambda: verify_title(answer, trusted, doc))

    pledge = answer.get("pledge")
    named = [  # what the answer says the caller is to the document
        role
        for role, who in (
            ("holder", answer.get("holder")),
            ("controller", answer.get("controller")),
            ("pledgee", pledge.get("pledgee") if isinstance(pledge, dict) else None),
        )
        if who == c.key.name
    ]

    def bundle_if_party() -> bytes | None:
        try:
            return c.bundle(doc)
        except ProblemError as exc:
            if exc.status != 403:
                raise
            if named:  # a party by the answer's own account: its events are yours to see
                raise VerificationError(
                    f"the answer names you as {doc}'s {' and '.join(named)} but the service "
                    "refuses you its events (403): the answer cannot be checked"
                ) from None
            return None  # not a party to the document: its events are not ours

    bundle = run(bundle_if_party)
    if bundle is None:
        replayed = (
            "the other fields as the service reports them (not a party to the document, "
            "you cannot have its events replayed; an auditor's `encd audit` of its bundle can)"
        )
    else:
        entries = run(lambda: verify_title_replay(answer, bundle, trusted))
        replayed = f"replayed from the document's bundle ({entries} entries, each proved)"

    def said(value: Any) -> str:
        """A field of the answer as printed: one not replayed may hold anything, and the
        console reads markup in what it prints, and a terminal escape sequences."""
        if isinstance(value, str) and _PLAIN_FIELD.fullmatch(value):
            return value
        return escape(show(value, 60) if isinstance(value, str) else repr(value)[:60])

    pledge_text = (
        f"pledged to {said(pledge.get('pledgee'))} "
        f"({said(pledge.get('amount'))} {said(pledge.get('currency'))})"
        if isinstance(pledge, dict)
        else "not pledged"
    )
    emit(
        answer | {"replayed": bundle is not None},
        as_json,
        f"OK: {doc} is {said(answer.get('status'))}; holder {said(answer.get('holder'))}, "
        f"control {said(answer.get('controller'))}; {pledge_text}; head {answer['head'][:16]}… "
        f"proved in the log at index {answer['head_index']} of the checkpoint of "
        f"{checkpoint.size} entries the service signed; {replayed}",
    )


@app.command()
def history(
    doc: str,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """The document's events (its parties and auditors only)."""
    from encd.events import Event

    c = client(server, key, party)
    result = run(lambda: c.history(doc))
    lines = []
    for item in result["events"]:
        event = Event.parse(item["event"].encode())
        signers = ", ".join(s.name for s in event.signatures)
        lines.append(f"{item['index']:>8}  seq {event.seq:<4} {event.type:<16} signed by {signers}")
    emit(result, as_json, "\n".join(lines))


@app.command()
def export(
    doc: Annotated[str | None, typer.Argument(help="A document id; omit with --all.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="The full ledger (auditors).")] = False,
    out: Annotated[Path | None, typer.Option(help="Output file.")] = None,
    server: ServerOpt = DEFAULT_SERVER,
    key: KeyOpt = Path("key.pem"),
    party: PartyOpt = "",
) -> None:
    """Download a document bundle (or the full export) for offline audit."""
    if (doc is None) == (not all_):
        fail("give a document id or --all", 2)
    c = client(server, key, party)
    data = run(c.export) if all_ else run(lambda: c.bundle(doc or ""))
    target = out or Path(f"{doc}.encd" if doc else "ledger.encd")
    target.write_bytes(data)
    console.print(f"OK: wrote {target} ({len(data)} bytes)")


# --- the offline auditor --------------------------------------------------------------------


@app.command()
def audit(
    path: Annotated[Path, typer.Argument(help="A document bundle or a full export.")],
    policy: Annotated[
        Path | None, typer.Option(help="Trust policy (docs/verification.md).")
    ] = None,
    trusted_checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="A checkpoint you already trust; the bundle's must be consistent with it."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a bundle offline with encd alone: exit 0 valid, 1 invalid, 2 usage."""
    if not _audit(path, policy, trusted_checkpoint, as_json):
        raise typer.Exit(1)


def _audit(path: Path, policy: Path | None, trusted_checkpoint: Path | None, as_json: bool) -> bool:
    from encd.audit import UsageError, audit_file
    from encd.collector import long_running

    size = path.stat().st_size if path.is_file() else 0
    try:
        with long_running():  # a large export's document states, out of the collector's way
            if size > 4 << 20 and not as_json:  # a long audit shows its progress
                from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

                columns = (BarColumn(), DownloadColumn(), TimeRemainingColumn())
                with Progress(*columns, console=err, transient=True) as bar:
                    task = bar.add_task("audit", total=size)
                    report = audit_file(
                        path, policy, trusted_checkpoint, lambda n: bar.update(task, completed=n)
                    )
            else:
                report = audit_file(path, policy, trusted_checkpoint)
    except UsageError as exc:
        fail(exc.message, 2)
    if as_json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        for line in report.lines():
            (console if report.ok else err).print(line)
    return report.ok


def main() -> None:
    try:
        app()
    except Error as exc:
        err.print(f"[red]FAIL:[/] {exc.message}")
        sys.exit(1)


if __name__ == "__main__":
    main()
