"""The offline audit: a bundle, the keys an auditor trusts, and nothing else.

docs/verification.md numbers the steps; steps 1-6 are encd.bundle's, and
this module adds the auditor's own trust:

(7) witnesses: the bundle's checkpoint carries valid cosignatures
    (c2sp.org/tlog-cosignature) from at least ``quorum`` of the witnesses
    the policy names;
(8) trusted checkpoint: the bundle's checkpoint is consistent with a
    checkpoint the auditor already trusts (same tree at the trusted size):
    the log was not rewritten between the two.

A policy file (UTF-8 lines; ``#`` starts a comment)::

    log <the log's C2SP verifier key>          exactly once
    witness <a witness's cosignature verifier key>   any number
    quorum <k>                                  default 0; at most the witnesses named
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from encd.bundle import DOCUMENT, BundleHeader, BundleReport, failed_step, verify_bundle
from encd.checkpoint import Checkpoint, CosignerKey, open_checkpoint, verify_cosignatures
from encd.errors import Error, InvalidInput, VerificationError
from encd.keys import PublicKey
from encd.logentry import LogEntry
from encd.merkle import CompactRange, short
from encd.validation import show

WITNESS_STEP = 7
TRUSTED_STEP = 8


class UsageError(Error):
    """The auditor's own inputs (policy, trusted checkpoint, paths) are unusable: exit 2."""


_QUORUM = re.compile(r"[0-9]{1,3}")


@dataclass(frozen=True)
class Policy:
    log_key: PublicKey
    witnesses: tuple[CosignerKey, ...] = ()
    quorum: int = 0

    @classmethod
    def parse(cls, text: str) -> Policy:
        log_key: PublicKey | None = None
        witnesses: list[CosignerKey] = []
        quorum = quorum_line = 0
        for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            word, *rest = line.split(None, 1)  # a space or a tab after the word
            value = rest[0].strip() if rest else ""
            try:
                if word == "log":
                    if log_key is not None:
                        raise InvalidInput("log", "the log key is given twice")
                    log_key = PublicKey.from_vkey(value)
                elif word == "witness":
                    vkey, *more = value.split() or [""]
                    if more:
                        raise InvalidInput(
                            "witness",
                            "a policy's witness line is 'witness <cosigner vkey>' alone (a "
                            f"witnesses file's URL has no place here), got {show(value, 120)}",
                        )
                    witness = CosignerKey.from_vkey(vkey)
                    if witness in witnesses:
                        raise InvalidInput("witness", f"{witness.key_id} is given twice")
                    witnesses.append(witness)
                elif word == "quorum":
                    if quorum_line:
                        raise InvalidInput(
                            "quorum", f"the quorum is given twice (first on line {quorum_line})"
                        )
                    if not _QUORUM.fullmatch(value):  # (isdigit() is true of "²" and "٣")
                        raise InvalidInput(
                            "quorum", f"expected a whole number (0 to 999), got {show(value)}"
                        )
                    quorum, quorum_line = int(value), number
                else:
                    named = word if word.isascii() and word.isprintable() else show(word)
                    raise InvalidInput(named, "expected 'log', 'witness' or 'quorum'")
            except InvalidInput as exc:
                raise UsageError(f"policy line {number}: {exc.message}") from None
        if log_key is None:
            raise UsageError("policy: no 'log <verifier key>' line")
        if quorum > len(witnesses):
            raise UsageError(
                f"policy: quorum {quorum} is more than the {len(witnesses)} witnesses named"
            )
        return cls(log_key, tuple(witnesses), quorum)


@dataclass
class AuditReport:
    path: str
    ok: bool
    kind: str | None = None
    step: int | None = None
    message: str = ""
    entries: int = 0
    size: int | None = None
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    witnesses: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"warning: {w}" for w in self.warnings]
        if not self.ok:
            where = f"step {self.step}" if self.step else "audit"
            message = (
                self.message if self.message.startswith("step ") else f"{where}: {self.message}"
            )
            out.append(f"FAIL: {self.path}: {message}")
            return out
        for doc_id, state in sorted(self.documents.items()):
            pledge = state["pledge"]
            pledged = f", pledged to {pledge['pledgee']}" if pledge else ""
            out.append(
                f"OK: {doc_id}: {state['status']}, holder {state['holder']}{pledged}; "
                f"{_count(state['seq'] + 1, 'event')}, head {state['head'][:16]}…"
            )
        what = "ledger export" if self.kind == "ledger" else "bundle"
        out.append(
            f"OK: {self.path}: {what} of {_count(self.entries, 'entry', 'entries')} verified against the checkpoint "
            f"at tree size {self.size}"
            + (f", cosigned by {', '.join(self.witnesses)}" if self.witnesses else "")
        )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "kind": self.kind,
            "failed_step": self.step,
            "message": self.message,
            "entries": self.entries,
            "tree_size": self.size,
            "documents": self.documents,
            "witnesses": self.witnesses,
            "warnings": self.warnings,
        }


def audit_file(
    path: Path,
    policy_path: Path | None = None,
    trusted_checkpoint: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> AuditReport:
    """Audit the bundle at ``path``.  Raises UsageError for unusable auditor inputs.

    ``progress`` is called with the number of bytes read as the entries stream by.
    """
    policy = read_policy(policy_path) if policy_path is not None else None
    trusted = _read(trusted_checkpoint) if trusted_checkpoint is not None else None
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if not path.is_file():
        raise UsageError(f"{path} is not a file")
    with path.open("rb") as handle:
        return audit(handle, str(path), policy, trusted, progress)


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def read_policy(path: Path) -> Policy:
    """The policy file at ``path``; UsageError if it cannot be read or is not one."""
    try:
        text = _read(path).decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    return Policy.parse(text)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def audit(
    source: BinaryIO,
    name: str,
    policy: Policy | None,
    trusted: bytes | None,
    progress: Callable[[int], None] | None = None,
) -> AuditReport:
    """Audit a bundle read from ``source`` (streamed); never raises for a bad bundle."""
    report = AuditReport(name, ok=False)
    try:
        first = source.readline()
        if not first:
            raise InvalidInput("", "the bundle is empty; line 1 must be its header")
        header = BundleHeader.parse_line(first[:-1] if first.endswith(b"\n") else first)
    except Error as exc:
        report.step, report.message = 1, f"step 1: line 1: {exc.message}"
        return report
    source.seek(0)
    if policy is None:
        policy = Policy(header.log_key)
        report.warnings.append(
            "no --policy: the log key was taken from the bundle itself, so this checks the "
            "bundle's integrity, not that it comes from the log you trust"
        )
    trusted_cp: Checkpoint | None = None
    if trusted is not None:
        try:
            trusted_cp = open_checkpoint(trusted, policy.log_key)
        except Error as exc:
            raise UsageError(f"trusted checkpoint: {exc.message}") from None
    # (1)-(6): the bundle itself
    try:
        lines = source if progress is None else _counted(source, progress)
        result = verify_bundle(lines, policy.log_key)
    except Error as exc:
        report.step, report.message = failed_step(exc), exc.message
        return report
    report.kind, report.entries, report.size = result.kind, result.entries, result.checkpoint.size
    report.documents = {doc_id: state.to_json() for doc_id, state in result.documents.items()}
    # (7) witnesses
    try:
        cosigned = (
            verify_cosignatures(header.checkpoint, policy.witnesses) if policy.witnesses else {}
        )
    except Error as exc:
        return _fail(report, WITNESS_STEP, f"cosignature: {exc.message}")
    report.witnesses = sorted(cosigned)
    if len(cosigned) < policy.quorum:
        return _fail(
            report,
            WITNESS_STEP,
            f"{len(cosigned)} of the policy's witnesses cosigned the checkpoint; "
            f"the quorum is {policy.quorum} (a service sends its checkpoints to its "
            "witnesses after appending: download with `encd export --witnessed --policy "
            "<this policy file>` for one the policy's witnesses cosigned)",
        )
    # (8) consistency with the checkpoint the auditor already trusts
    if trusted_cp is not None:
        try:
            _consistent(source, result, trusted_cp)
        except Error as exc:
            return _fail(report, TRUSTED_STEP, exc.message)
    report.ok = True
    if result.kind == DOCUMENT:
        report.warnings.append(
            f"a document bundle shows {result.document}'s title as of the bundle's last event; "
            f"it cannot show that the log of {result.checkpoint.size} entries holds no later "
            "event of it (compare its head with the service's, `encd title`, or audit a "
            "ledger export)"
        )
    return report


def _counted(source: BinaryIO, progress: Callable[[int], None]) -> Iterator[bytes]:
    read = 0
    for line in source:
        read += len(line)
        progress(read)
        yield line


def _fail(report: AuditReport, step: int, message: str) -> AuditReport:
    report.ok, report.step, report.message = False, step, f"step {step}: {message}"
    return report


def _consistent(source: BinaryIO, result: BundleReport, trusted: Checkpoint) -> None:
    checkpoint = result.checkpoint
    if trusted.size > checkpoint.size:
        raise VerificationError(
            f"the bundle's checkpoint (size {checkpoint.size}) is older than the trusted one "
            f"(size {trusted.size})"
        )
    if trusted.size == checkpoint.size:
        if trusted.root != checkpoint.root:
            raise VerificationError(
                f"two checkpoints of size {trusted.size} with different roots: "
                f"{short(trusted.root)} trusted, {short(checkpoint.root)} in the bundle"
            )
        return
    if result.kind != "ledger":
        raise VerificationError(
            f"a document bundle cannot show that its checkpoint (size {checkpoint.size}) extends "
            f"the trusted one (size {trusted.size}); audit a full export, or check "
            f"GET /v1/log/consistency?size1={trusted.size}&size2={checkpoint.size}"
        )
    # a full export holds every entry: recompute the tree at the trusted size
    source.seek(0)
    source.readline()
    tree = CompactRange()
    for line in source:
        if tree.size == trusted.size:
            break
        entry = _entry(line)
        tree, _ = tree.append(entry.leaf_hash)
    if tree.root() != trusted.root:
        raise VerificationError(
            f"the log was rewritten: its first {trusted.size} entries hash to "
            f"{short(tree.root())}, the trusted checkpoint says {short(trusted.root)}"
        )


def _entry(line: bytes) -> LogEntry:
    import hashlib

    from encd.canonical import parse_canonical

    value = parse_canonical(line.rstrip(b"\n"))
    raw = value["event"].encode()
    return LogEntry(hashlib.sha256(raw).hexdigest(), value["sequenced_at"])


def audit_bytes(
    data: bytes, policy: Policy | None = None, trusted: bytes | None = None
) -> AuditReport:
    """Audit an in-memory bundle (tests and tools)."""
    return audit(io.BytesIO(data), "<bundle>", policy, trusted)


__all__ = ["AuditReport", "Policy", "UsageError", "audit", "audit_bytes", "audit_file"]
