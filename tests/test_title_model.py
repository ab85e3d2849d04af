"""Random event sequences against a small independent model of the title rules.

Hypothesis drives transfers, pledges, releases and the rest — some signed by
the wrong parties, some forged, replayed or stale — through the real
``Replay`` and through ``Model`` below, a plain restatement of design.md §4
written without encd.title, and checks that both agree on every outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from encd.errors import Conflict, RuleViolation, VerificationError
from encd.events import assemble, envelope_text
from encd.keys import SigningKey
from encd.note import NoteSignature
from tests.kit import Cast, corridor_cast, corridor_document

DOC = corridor_document()["id"]
LABELS = ["carrier", "agent", "exporter", "buyer", "bank", "bank2", "auditor"]
HOLDERS = {"exporter", "buyer", "bank", "bank2", "carrier"}
TYPES = [
    "transfer",
    "reject_transfer",
    "pledge",
    "release",
    "enforce",
    "surrender",
    "deliver",
    "refuse",
    "void",
    "milestone",
]


@dataclass
class Model:
    status: str = "active"
    holder: str = "exporter"
    pledgee: str | None = None
    last_transfer_from: str | None = None
    touched: bool = False
    accepted: list[bytes] = field(default_factory=list)

    def allows(self, kind: str, signers: frozenset[str], target: str | None) -> bool:
        active = self.status == "active"
        pledged = self.pledgee is not None
        with_pledgee = {self.holder} | ({self.pledgee} if self.pledgee else set())
        if kind == "transfer":
            return (
                active
                and not pledged
                and signers == {self.holder}
                and target in HOLDERS
                and target != self.holder
            )
        if kind == "reject_transfer":
            return (
                active
                and not pledged
                and self.last_transfer_from is not None
                and signers == {self.holder}
            )
        if kind == "pledge":
            return (
                active
                and not pledged
                and target in {"bank", "bank2"}
                and target != self.holder
                and signers == {self.holder, target}
            )
        if kind == "release":
            return (
                self.status in {"active", "surrendered"} and pledged and signers == {self.pledgee}
            )
        if kind == "enforce":
            return active and pledged and signers == {self.pledgee}
        if kind == "surrender":
            return active and signers == with_pledgee
        if kind in {"deliver", "refuse"}:
            return self.status == "surrendered" and signers == {"carrier"}
        if kind == "void":
            return (
                active
                and not pledged
                and not self.touched
                and signers == {"carrier", "exporter"}
                and self.holder == "exporter"
            )
        if kind == "milestone":
            return (
                self.status in {"active", "surrendered"}
                and bool(signers)
                and signers <= {"carrier", "agent"}
            )
        raise AssertionError(kind)

    def apply(self, kind: str, target: str | None) -> None:
        transfer_from = None
        if kind == "transfer":
            assert target is not None
            transfer_from, self.holder, self.touched = self.holder, target, True
        elif kind == "reject_transfer":
            assert self.last_transfer_from is not None
            self.holder = self.last_transfer_from
        elif kind == "pledge":
            self.pledgee, self.touched = target, True
        elif kind == "release":
            self.pledgee = None
        elif kind == "enforce":
            assert self.pledgee is not None
            self.holder, self.pledgee = self.pledgee, None
        elif kind == "surrender":
            self.status = "surrendered"
        elif kind == "deliver":
            self.status = "delivered"
        elif kind == "refuse":
            self.status = "active"
        elif kind == "void":
            self.status = "void"
        self.last_transfer_from = transfer_from


def body_for(cast: Cast, kind: str, target: str | None) -> dict[str, object]:
    if kind == "transfer":
        return {"to": cast.actor(target or "buyer").id}
    if kind == "pledge":
        return {
            "pledgee": cast.actor(target or "bank").id,
            "loan_ref": "L-1",
            "amount": "1000.00",
            "currency": "USD",
            "registry_ref": "R-1",
            "maturity": "2026-12-31",
        }
    if kind == "milestone":
        return {
            "kind": "arrived",
            "location": {"locode": "CNQZH", "name": "Qinzhou"},
            "at": "2026-05-03T09:00:00Z",
        }
    return {}


class TitleMachine(RuleBasedStateMachine):
    @initialize()
    def issue(self) -> None:
        self.cast = corridor_cast()
        self.model = Model()
        self.labels = {self.cast.actor(label).id: label for label in LABELS}
        self.cast.append(
            self.cast.doc_event(
                DOC,
                "issue",
                {"content": corridor_document(), "holder": self.cast.actor("exporter").id},
                [self.cast.actor("carrier")],
            )
        )
        self.history: list[tuple[int, str]] = [(0, self.state().head)]

    def state(self):  # type: ignore[no-untyped-def]
        return self.cast.replay.documents[DOC]

    def natural_signers(self, kind: str, target: str | None) -> set[str]:
        """The signers a well-behaved client would use (the model still decides)."""
        m = self.model
        if kind in {"transfer", "reject_transfer"}:
            return {m.holder}
        if kind == "pledge":
            return {m.holder, target or "bank"}
        if kind in {"release", "enforce"}:
            return {m.pledgee or m.holder}
        if kind == "surrender":
            return {m.holder} | ({m.pledgee} if m.pledgee else set())
        if kind == "void":
            return {"carrier", "exporter"}
        return {"carrier"}

    @rule(
        kind=st.sampled_from(TYPES),
        honest=st.booleans(),
        random_signers=st.sets(st.sampled_from(LABELS), min_size=1, max_size=3),
        endorsee=st.sampled_from([*LABELS, None]),
    )
    def honest_or_out_of_turn(
        self, kind: str, honest: bool, random_signers: set[str], endorsee: str | None
    ) -> None:
        target = endorsee
        if kind == "transfer" and target is None:
            target = "buyer"
        if kind == "pledge" and target is None:
            target = "bank"
        signers = self.natural_signers(kind, target) if honest else random_signers
        raw = self.cast.doc_event(
            DOC,
            kind,
            body_for(self.cast, kind, target),
            [self.cast.actor(s) for s in sorted(signers)],
        )
        expected = self.model.allows(kind, frozenset(signers), target)
        try:
            self.cast.append(raw)
        except (RuleViolation, VerificationError) as exc:
            assert not expected, f"{kind} by {sorted(signers)} refused: {exc}"
            assert not isinstance(exc, Conflict)
            return
        assert expected, f"{kind} by {sorted(signers)} accepted but the model refuses it"
        self.model.apply(kind, target)
        self.model.accepted.append(raw)
        self.history.append((self.state().seq, self.state().head))

    @rule(signer=st.sampled_from(LABELS), impostor=st.sampled_from(LABELS))
    def forged(self, signer: str, impostor: str) -> None:
        """A signature line naming ``signer`` but made with someone else's key."""
        holder = self.cast.actor(self.model.holder)
        s = self.state()
        text = envelope_text(
            type="milestone",
            doc=DOC,
            seq=s.seq + 1,
            prev=s.head,
            time=self.cast.tick(),
            body=body_for(self.cast, "milestone", None),
        )
        named = self.cast.actor(signer).key
        wrong = (
            SigningKey(named.name, self.cast.actor(impostor).key.seed)
            if impostor != signer
            else SigningKey(named.name, b"\x01" * 32)
        )
        raw = assemble(text, [NoteSignature(named.name, named.public.hash, wrong.sign(text))])
        try:
            self.cast.append(raw)
        except VerificationError:
            return
        raise AssertionError(f"forged signature for {signer} accepted (holder {holder.id})")

    @rule()
    def replayed(self) -> None:
        if not self.model.accepted:
            return
        try:
            self.cast.append(self.model.accepted[-1])
        except Conflict:
            return
        raise AssertionError("a replayed event was accepted")

    @rule(back=st.integers(min_value=1, max_value=5))
    def stale(self, back: int) -> None:
        if len(self.history) <= back:
            return
        seq, head = self.history[-1 - back]
        raw = self.cast.doc_event(
            DOC,
            "milestone",
            body_for(self.cast, "milestone", None),
            [self.cast.actor("carrier")],
            seq=seq + 1,
            prev=head,
        )
        try:
            self.cast.append(raw)
        except Conflict as exc:
            assert exc.current_head == self.state().head
            return
        raise AssertionError("an event signed against an old head was accepted")

    @invariant()
    def agrees_with_model(self) -> None:
        if not hasattr(self, "model"):
            return
        s = self.state()
        assert str(s.status) == self.model.status
        assert self.labels[s.holder] == self.model.holder
        assert (self.labels[s.pledge.pledgee] if s.pledge else None) == self.model.pledgee
        live = s.status in {"active", "surrendered"}
        assert bool(self.cast.replay.cargo) == live


TitleMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_title_state_machine = TitleMachine.TestCase
