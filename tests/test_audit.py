"""`encd audit`: the auditor's policy (step 7), a trusted checkpoint (step 8), the CLI contract."""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from encd.audit import Policy, UsageError, audit_bytes
from encd.canonical import canonical_bytes, parse_canonical
from encd.checkpoint import Checkpoint, CosignerKey, cosign, sign_checkpoint
from encd.cli import app
from encd.note import parse_note
from ledger.export import export_document, export_ledger
from ledger.ledger import Ledger
from tests.kit import corridor_cast, corridor_document, seeded_key

LOG_KEY = seeded_key("encd.test/log", "log")
WITNESS = seeded_key("witness.bank.example", "witness")
DOC = corridor_document()["id"]
runner = CliRunner()


@dataclass
class Exports:
    bundle: bytes
    ledger: bytes
    early_checkpoint: bytes  # a checkpoint from before the last appends
    early_size: int
    dir: Path


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exports]:
    tmp = tmp_path_factory.mktemp("audit")
    cast = corridor_cast()
    raw = cast.doc_event(
        DOC,
        "issue",
        {"content": corridor_document(), "holder": cast.actor("exporter").id},
        [cast.actor("carrier")],
    )
    cast.append(raw)
    with Ledger(f"sqlite:///{tmp / 'ledger.db'}", LOG_KEY) as ledger:
        for raw in cast.log:
            ledger.append(raw)
        early_size = ledger.size()
        early = ledger.checkpoint()
        for to in ("buyer", "exporter"):
            holder = "exporter" if to == "buyer" else "buyer"
            raw = cast.doc_event(DOC, "transfer", {"to": cast.actor(to).id}, [cast.actor(holder)])
            cast.append(raw)
            ledger.append(raw)
        bundle, whole = io.BytesIO(), io.BytesIO()
        export_document(ledger, DOC, bundle)
        export_ledger(ledger, whole)
    yield Exports(bundle.getvalue(), whole.getvalue(), early, early_size, tmp)


def policy(witnesses: int = 0, quorum: int = 0) -> Policy:
    keys = (CosignerKey.of(WITNESS),) if witnesses else ()
    return Policy(LOG_KEY.public, keys, quorum)


def with_cosignature(bundle: bytes, timestamp: int = 1_777_700_000) -> bytes:
    head, rest = bundle.split(b"\n", 1)
    header = parse_canonical(head)
    note = header["checkpoint"].encode()
    text = parse_note(note).text
    header["checkpoint"] = (note + cosign(text, WITNESS, timestamp)).decode()
    return canonical_bytes(header) + b"\n" + rest


def test_policy_file_format() -> None:
    text = f"# trust\nlog {LOG_KEY.public.vkey}\nwitness {CosignerKey.of(WITNESS).vkey}  # a bank\nquorum 1\n"
    parsed = Policy.parse(text)
    assert parsed.log_key == LOG_KEY.public and parsed.quorum == 1 and len(parsed.witnesses) == 1
    with pytest.raises(
        UsageError, match="policy line 1: frobnicate: expected 'log', 'witness' or 'quorum'"
    ):
        Policy.parse("frobnicate 3\n")
    with pytest.raises(UsageError, match="policy: no 'log <verifier key>' line"):
        Policy.parse("quorum 0\n")
    with pytest.raises(UsageError, match="quorum 2 is more than the 0 witnesses named"):
        Policy.parse(f"log {LOG_KEY.public.vkey}\nquorum 2\n")
    # digits that str.isdigit() takes and int() does not (or reads as another number),
    # and a number of thousands of digits, are no quorum: each raised a traceback
    for quorum in ("\u00b2", "\u0663", "9" * 5000, "-1", "1.0"):
        with pytest.raises(UsageError, match="policy line 2: quorum: expected a whole number"):
            Policy.parse(f"log {LOG_KEY.public.vkey}\nquorum {quorum}\n")
    # a line given twice would weaken the policy (the last quorum) or fake its size
    witness_line = f"witness {CosignerKey.of(WITNESS).vkey}\n"
    head = f"log {LOG_KEY.public.vkey}\n{witness_line}"
    for text, message in [
        (head + "quorum 1\nquorum 0\n", "policy line 4: quorum: the quorum is given twice"),
        (head + witness_line, f"policy line 3: witness: {CosignerKey.of(WITNESS).key_id} is"),
        (
            head.strip() + " https://w.example\n",
            "policy line 2: witness: a policy's witness line is 'witness <cosigner vkey>' alone",
        ),
        (f"log {LOG_KEY.public.vkey}\nwitness\n", "policy line 2: vkey: expected <name>+"),
    ]:
        with pytest.raises(UsageError) as info:
            Policy.parse(text)
        assert str(info.value).startswith(message), str(info.value)
    # a byte-order mark and a tab, as editors write them, are read as a careful user means
    tabbed = Policy.parse(f"\ufefflog\t{LOG_KEY.public.vkey}\n")
    assert tabbed.log_key == LOG_KEY.public
    with pytest.raises(UsageError) as invisible:
        Policy.parse(f"\u200blog {LOG_KEY.public.vkey}\n")  # an invisible character, shown
    assert "policy line 1: '\\u200blog': expected" in str(invisible.value)


def test_both_exports_audit_ok(exports: Exports) -> None:
    for data in (exports.bundle, exports.ledger):
        report = audit_bytes(data, policy())
        assert report.ok, report.message
    assert (
        audit_bytes(exports.bundle, policy()).documents[DOC]["holder"]
        == corridor_document()["consignor"]["legal_id"]
    )
    # a document bundle cut after any of its events still verifies: the audit says what
    # it cannot show, every time; a ledger export shows it all
    (warning,) = audit_bytes(exports.bundle, policy()).warnings
    assert f"shows {DOC}'s title as of the bundle's last event" in warning
    assert "holds no later event" in warning
    assert audit_bytes(exports.ledger, policy()).warnings == []


def test_step_7_a_missing_witness_quorum_fails(exports: Exports) -> None:
    report = audit_bytes(exports.bundle, policy(witnesses=1, quorum=1))
    assert not report.ok and report.step == 7
    assert report.message == (
        "step 7: 0 of the policy's witnesses cosigned the checkpoint; the quorum is 1"
        " (a service sends its checkpoints to its witnesses after appending: download with"
        " `encd export --witnessed --policy <this policy file>` for one the policy's"
        " witnesses cosigned)"
    )


def test_step_7_one_cosignature_short_of_the_quorum_says_how_to_download(
    exports: Exports,
) -> None:
    report = audit_bytes(with_cosignature(exports.bundle), policy(witnesses=2, quorum=2))
    assert not report.ok and report.step == 7
    assert report.message.startswith(
        "step 7: 1 of the policy's witnesses cosigned the checkpoint; the quorum is 2"
    )
    assert report.message.endswith(
        "`encd export --witnessed --policy <this policy file>` for one the policy's witnesses cosigned)"
    )


def test_step_7_a_cosigned_checkpoint_meets_the_quorum(exports: Exports) -> None:
    report = audit_bytes(with_cosignature(exports.bundle), policy(witnesses=1, quorum=1))
    assert report.ok, report.message
    assert report.witnesses == ["witness.bank.example"]


def test_step_7_a_forged_cosignature_fails(exports: Exports) -> None:
    head, rest = with_cosignature(exports.bundle).split(b"\n", 1)
    header = parse_canonical(head)
    note, cosig_line = header["checkpoint"].rstrip("\n").rsplit("\n", 1)
    name, encoded = cosig_line.removeprefix("— ").split(" ")
    blob = bytearray(base64.b64decode(encoded))
    blob[-1] ^= 1  # the witness's key and timestamp, a signature that does not verify
    header["checkpoint"] = f"{note}\n— {name} {base64.b64encode(bytes(blob)).decode()}\n"
    report = audit_bytes(canonical_bytes(header) + b"\n" + rest, policy(witnesses=1, quorum=1))
    assert not report.ok and report.step == 7
    assert report.message.startswith("step 7: cosignature: ")


def test_step_8_an_earlier_trusted_checkpoint_is_consistent_with_the_export(
    exports: Exports,
) -> None:
    report = audit_bytes(exports.ledger, policy(), exports.early_checkpoint)
    assert report.ok, report.message


def test_step_8_a_rewritten_log_fails(exports: Exports) -> None:
    forked = Checkpoint("encd.test/log", exports.early_size, bytes(32))
    report = audit_bytes(exports.ledger, policy(), sign_checkpoint(forked, LOG_KEY))
    assert not report.ok and report.step == 8
    assert report.message.startswith(
        f"step 8: the log was rewritten: its first {exports.early_size} entries hash to "
    )


def test_step_8_a_document_bundle_cannot_prove_consistency(exports: Exports) -> None:
    report = audit_bytes(exports.bundle, policy(), exports.early_checkpoint)
    assert not report.ok and report.step == 8
    assert "a document bundle cannot show that its checkpoint" in report.message


def test_step_8_a_bundle_older_than_the_trusted_checkpoint_fails(exports: Exports) -> None:
    newer = Checkpoint("encd.test/log", 10_000, bytes(32))
    report = audit_bytes(exports.ledger, policy(), sign_checkpoint(newer, LOG_KEY))
    assert not report.ok and report.step == 8 and "is older than the trusted one" in report.message


# --- the command line --------------------------------------------------------------------------


def write(exports: Exports, name: str, data: bytes) -> Path:
    path = exports.dir / name
    path.write_bytes(data)
    return path


def policy_file(exports: Exports) -> Path:
    return write(exports, "policy.txt", f"log {LOG_KEY.public.vkey}\n".encode())


def test_cli_ok_exits_0(exports: Exports) -> None:
    result = runner.invoke(
        app,
        [
            "audit",
            str(write(exports, "doc.encd", exports.bundle)),
            "--policy",
            str(policy_file(exports)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"OK: {DOC}: active" in result.output


def test_cli_json(exports: Exports) -> None:
    result = runner.invoke(
        app,
        [
            "audit",
            str(write(exports, "doc.encd", exports.bundle)),
            "--policy",
            str(policy_file(exports)),
            "--json",
        ],
    )
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["documents"][DOC]["status"] == "active"


def test_cli_usage_errors_exit_2(exports: Exports) -> None:
    missing = runner.invoke(app, ["audit", str(exports.dir / "nope.encd")])
    assert missing.exit_code == 2 and "nope.encd: no such file" in missing.output
    folder = runner.invoke(app, ["audit", str(exports.dir)])
    assert folder.exit_code == 2 and "is not a file" in folder.output
    bad_policy = write(exports, "bad-policy.txt", b"quorum x\n")
    result = runner.invoke(
        app, ["audit", str(write(exports, "doc.encd", exports.bundle)), "--policy", str(bad_policy)]
    )
    assert (
        result.exit_code == 2 and "policy line 1: quorum: expected a whole number" in result.output
    )


def test_cli_flipping_any_bit_fails_with_exit_1_and_no_traceback(exports: Exports) -> None:
    """Each of the header's bytes (one bit each, rotating) and a sample across the rest.

    tests/test_bundle.py flips every 7th bit of a whole bundle through the
    verifier; this runs the command itself, so it samples.
    """
    data = exports.bundle
    path = exports.dir / "flipped.encd"
    pol = str(policy_file(exports))
    header_end = data.index(b"\n") + 1
    rng = random.Random(7)
    flips = [(i, i % 8) for i in range(header_end)]
    flips += [(i, rng.randrange(8)) for i in rng.sample(range(header_end, len(data)), 250)]
    for byte, bit in flips:
        flipped = bytearray(data)
        flipped[byte] ^= 1 << bit
        path.write_bytes(bytes(flipped))
        result = runner.invoke(app, ["audit", str(path), "--policy", pol])
        assert result.exit_code == 1, (
            f"byte {byte} bit {bit}: exit {result.exit_code}\n{result.output}"
        )
        assert "FAIL" in result.output and "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_an_audit_says_the_same_with_its_signature_checks_in_worker_processes(
    exports: Exports, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large export's signatures are checked in worker processes (encd.sigcheck); forced
    here on the small one, in chunks of 2, every verdict and message is the threads' own."""
    import encd.bundle

    data = exports.ledger
    rng = random.Random(11)
    header_end = data.index(b"\n") + 1
    samples = [data]
    for byte in rng.sample(range(header_end, len(data)), 150):
        flipped = bytearray(data)
        flipped[byte] ^= 1 << rng.randrange(8)
        samples.append(bytes(flipped))

    def verdicts() -> list[tuple[bool, int | None, list[str]]]:
        reports = [audit_bytes(sample, policy()) for sample in samples]
        return [(r.ok, r.step, r.lines()) for r in reports]

    monkeypatch.setattr(encd.bundle, "REPLAY_CHUNK", 2)
    on_threads = verdicts()
    monkeypatch.setattr(encd.bundle, "PROCESS_MIN_ENTRIES", 0)
    assert verdicts() == on_threads
    assert on_threads[0][0] and not any(ok for ok, _, _ in on_threads[1:])


def test_an_empty_file_is_said_to_be_empty() -> None:
    report = audit_bytes(b"", policy())
    assert not report.ok and report.step == 1
    assert "the bundle is empty; line 1 must be its header" in report.message, report.message
