"""Parties and their keys, derived only by replaying party events.

A party is registered by an operator with its legal identifier (a USCC under
GB 32100 or an LEI under ISO 17442, which is also its party id and the name
of its keys), a display name, its roles and one or more Ed25519 keys.

| event      | signed by                  | body                                   |
|------------|----------------------------|----------------------------------------|
| register   | an operator (the very first | name, roles, keys (vkeys), agent_for   |
|            | event: the new operator's   |                                        |
|            | own declared key)           |                                        |
| add_key    | the party or an operator   | key (vkey)                             |
| rotate_key | the party or an operator   | old (key id), new (vkey)               |
| revoke_key | the party or an operator   | key_id                                 |
| set_roles  | an operator                | roles, agent_for                       |

A signature counts only if its key is active (registered and not revoked)
in the registry as it stands just before the event in the log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from encd.document import plain_text
from encd.errors import Conflict, InvalidInput, RuleViolation, VerificationError
from encd.events import Event
from encd.identifiers import check_legal_id
from encd.keys import PublicKey
from encd.validation import parse_model


class Role(StrEnum):
    CARRIER = "carrier"
    AGENT = "agent"
    TRADER = "trader"
    BANK = "bank"
    AUDITOR = "auditor"
    OPERATOR = "operator"


# Roles whose holders may hold title to a document.
HOLDER_ROLES = frozenset({Role.TRADER, Role.BANK, Role.CARRIER})


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key: PublicKey
    revoked: bool = False
    #: ``key.hash`` (a SHA-256), computed once: signatures find their key by it.
    key_hash: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_hash", self.key.hash)

    @property
    def key_id(self) -> str:
        return self.key.key_id


@dataclass(frozen=True, slots=True)
class Party:
    id: str
    scheme: str  # "USCC" or "LEI"
    name: str
    roles: frozenset[Role]
    keys: tuple[KeyRecord, ...]
    agent_for: frozenset[str]
    seq: int
    head: str

    def key_by_hash(self, key_hash: bytes) -> bytes | None:
        """The raw public key of this party's key (active or revoked) with that key hash."""
        for record in self.keys:
            if record.key_hash == key_hash:
                return record.key.raw
        return None

    def active_keys(self) -> tuple[PublicKey, ...]:
        return tuple(record.key for record in self.keys if not record.revoked)

    def has(self, role: Role) -> bool:
        return role in self.roles

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "scheme": self.scheme,
            "name": self.name,
            "roles": sorted(self.roles),
            "keys": [
                {"key_id": r.key.key_id, "vkey": r.key.vkey, "revoked": r.revoked}
                for r in self.keys
            ],
            "agent_for": sorted(self.agent_for),
            "seq": self.seq,
            "head": self.head,
        }


def load_party(value: Mapping[str, Any]) -> Party:
    """The inverse of ``Party.to_json`` (for stores that keep the projection)."""
    return Party(
        id=value["id"],
        scheme=value["scheme"],
        name=value["name"],
        roles=frozenset(Role(r) for r in value["roles"]),
        keys=tuple(
            KeyRecord(PublicKey.from_vkey(k["vkey"]), bool(k["revoked"])) for k in value["keys"]
        ),
        agent_for=frozenset(value["agent_for"]),
        seq=value["seq"],
        head=value["head"],
    )


MAX_KEYS = 16  # active keys a party may have (register declares 1 to 16)
_Strict = ConfigDict(frozen=True, extra="forbid", strict=True)
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(plain_text)]
RoleName = Literal["carrier", "agent", "trader", "bank", "auditor", "operator"]


class RegisterBody(BaseModel):
    model_config = _Strict
    name: Name
    roles: list[RoleName] = Field(min_length=1)
    keys: list[str] = Field(min_length=1, max_length=MAX_KEYS)
    agent_for: list[str] = Field(default_factory=list)

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, roles: list[str]) -> list[str]:
        if len(set(roles)) != len(roles):
            raise ValueError(f"roles must not repeat, got {roles}")
        return roles


class AddKeyBody(BaseModel):
    model_config = _Strict
    key: str


class RotateKeyBody(BaseModel):
    model_config = _Strict
    old: str
    new: str


class RevokeKeyBody(BaseModel):
    model_config = _Strict
    key_id: str


class SetRolesBody(BaseModel):
    model_config = _Strict
    roles: list[RoleName] = Field(min_length=1)
    agent_for: list[str] = Field(default_factory=list)


def _vkey(text: str, party_id: str, field: str) -> PublicKey:
    try:
        key = PublicKey.from_vkey(text)
    except InvalidInput as exc:
        raise InvalidInput(field, exc.reason) from None
    if key.name != party_id:
        raise InvalidInput(field, f"key name must be the party id {party_id}, got {key.name}")
    if text != key.vkey:  # white space around it, or base64 that is not the canonical form
        raise InvalidInput(field, f"a verifier key is written exactly as {key.vkey}")
    return key


def _roles_and_agency(
    roles: Sequence[str], agent_for: Sequence[str], parties: Mapping[str, Party], field: str
) -> tuple[frozenset[Role], frozenset[str]]:
    role_set = frozenset(Role(r) for r in roles)
    if len(set(agent_for)) != len(agent_for):
        raise InvalidInput(f"{field}.agent_for", "a carrier must not be named twice")
    if agent_for and Role.AGENT not in role_set:
        raise InvalidInput(
            f"{field}.agent_for", "only a party with the agent role acts for carriers"
        )
    for i, carrier in enumerate(agent_for):
        known = parties.get(carrier)
        if known is None or Role.CARRIER not in known.roles:
            raise InvalidInput(f"{field}.agent_for[{i}]", f"{carrier} is not a registered carrier")
    if Role.AGENT in role_set and not agent_for:
        raise InvalidInput(f"{field}.agent_for", "an agent must act for at least one carrier")
    return role_set, frozenset(agent_for)


def signing_keys(event: Event, parties: Mapping[str, Party]) -> dict[tuple[str, bytes], PublicKey]:
    """The active keys that may have made ``event``'s signatures, by (name, key hash).

    The very first event of a ledger (no parties yet) is the operator's own
    registration, which its declared keys sign.
    """
    if not parties and event.type == "register":
        keys = event.body.get("keys")
        if isinstance(keys, list):
            found: dict[tuple[str, bytes], PublicKey] = {}
            for i, text in enumerate(keys):
                if isinstance(text, str):
                    key = _vkey(text, event.subject, f"body.keys[{i}]")
                    found[(key.name, key.hash)] = key
            return found
    return {}


Preverified = Mapping[tuple[str, bytes], bytes]
"""(key name, key hash) -> the public key under which that signature of the event already
verified (checked ahead, e.g. on another core); the registry must still hold that very key."""


def verify_signers(
    event: Event, parties: Mapping[str, Party], preverified: Preverified | None = None
) -> frozenset[str]:
    """Verify every signature of ``event`` against keys active now; return the signing parties.

    Every signature must verify: an event's bytes are exact, so a signature
    that is not wanted has no place in them.  A signature in ``preverified``
    is not checked again if the key active now is the key it verified under.
    """
    bootstrap = signing_keys(event, parties)
    signers: set[str] = set()
    for sig in event.signatures:
        key = bootstrap.get((sig.name, sig.key_hash))
        if key is None:
            party = parties.get(sig.name)
            if party is None:
                raise VerificationError(
                    f"signature by {sig.key_id}: {sig.name} is not a registered party"
                )
            record = next((r for r in party.keys if r.key_hash == sig.key_hash), None)
            if record is None:
                raise VerificationError(
                    f"signature by {sig.key_id}: no such key of party {sig.name}"
                )
            if record.revoked:
                raise VerificationError(f"signature by {sig.key_id}: the key was revoked")
            key = record.key
        if not preverified or preverified.get((sig.name, sig.key_hash)) != key.raw:
            key.verify(event.text, sig.signature)
        if sig.name in signers:
            raise VerificationError(f"party {sig.name} signed twice; one signature per party")
        signers.add(sig.name)
    return frozenset(signers)


def preverify(event: Event, parties: Mapping[str, Party]) -> dict[tuple[str, bytes], bytes]:
    """Check ``event``'s signatures under the keys ``parties`` hold (active or not), ahead of
    admitting it; returns those that verified.  No rule is applied: ``verify_signers``
    decides, later, against the registry at the event's place in the log."""
    checked: dict[tuple[str, bytes], bytes] = {}
    for sig in event.signatures:
        party = parties.get(sig.name)
        record = (
            None
            if party is None
            else next((r for r in party.keys if r.key_hash == sig.key_hash), None)
        )
        if record is None:
            continue
        try:
            record.key.verify(event.text, sig.signature)
        except VerificationError:
            continue
        checked[(sig.name, sig.key_hash)] = record.key.raw
    return checked


def _require_signer(rule: str, signers: frozenset[str], allowed: set[str], what: str) -> None:
    extra = signers - allowed
    if not signers & allowed or extra:
        raise RuleViolation(
            rule,
            f"{rule} must be signed by {what}; signed by {', '.join(sorted(signers))}",
        )


def _operators(parties: Mapping[str, Party]) -> set[str]:
    return {p.id for p in parties.values() if Role.OPERATOR in p.roles}


def apply_party(
    party: Party | None, event: Event, signers: frozenset[str], parties: Mapping[str, Party]
) -> Party:
    """The party's state after ``event``; raises RuleViolation naming the rule broken."""
    pid = event.subject
    if event.type == "register":
        if party is not None:
            raise RuleViolation("register", f"party {pid} is already registered")
        scheme, _ = _legal_id(pid)
        body = parse_model(RegisterBody, event.body, "body")
        if parties:
            _require_signer("register", signers, _operators(parties), "an operator")
        else:
            if "operator" not in body.roles:
                raise RuleViolation("register", "the first party of a ledger must be its operator")
            _require_signer("register", signers, {pid}, f"the new operator {pid} itself")
        keys = tuple(
            KeyRecord(_vkey(text, pid, f"body.keys[{i}]")) for i, text in enumerate(body.keys)
        )
        if len({r.key_hash for r in keys}) != len(keys):
            raise InvalidInput("body.keys", "two keys with the same key hash")
        roles, agent_for = _roles_and_agency(body.roles, body.agent_for, parties, "body")
        _check_chain(None, event)
        return Party(pid, scheme, body.name, roles, keys, agent_for, event.seq, event.id)

    if party is None:
        raise RuleViolation(event.type, f"party {pid} is not registered")
    _check_chain(party, event)
    self_or_operator = {pid} | _operators(parties)
    if event.type == "add_key":
        _require_signer("add_key", signers, self_or_operator, f"{pid} or an operator")
        add = parse_model(AddKeyBody, event.body, "body")
        keys = _with_key(party, _vkey(add.key, pid, "body.key"), "body.key", "add_key")
    elif event.type == "revoke_key":
        _require_signer("revoke_key", signers, self_or_operator, f"{pid} or an operator")
        revoke = parse_model(RevokeKeyBody, event.body, "body")
        keys = _without_key(party, revoke.key_id, "body.key_id", "revoke_key")
    elif event.type == "rotate_key":
        _require_signer("rotate_key", signers, self_or_operator, f"{pid} or an operator")
        rotate = parse_model(RotateKeyBody, event.body, "body")
        old = _without_key(party, rotate.old, "body.old", "rotate_key", last_ok=True)
        keys = _with_key(
            replace(party, keys=old), _vkey(rotate.new, pid, "body.new"), "body.new", "rotate_key"
        )
    elif event.type == "set_roles":
        _require_signer("set_roles", signers, _operators(parties), "an operator")
        roles_body = parse_model(SetRolesBody, event.body, "body")
        roles, agent_for = _roles_and_agency(
            roles_body.roles, roles_body.agent_for, parties, "body"
        )
        if (
            Role.OPERATOR in party.roles
            and Role.OPERATOR not in roles
            and _operators(parties) == {pid}
        ):
            raise RuleViolation("set_roles", f"{pid} is the last operator and must keep that role")
        return replace(party, roles=roles, agent_for=agent_for, seq=event.seq, head=event.id)
    else:  # pragma: no cover - Event.parse admits only the types above
        raise InvalidInput("event.type", f"unknown party event {event.type!r}")
    return replace(party, keys=keys, seq=event.seq, head=event.id)


def _legal_id(pid: str) -> tuple[str, str]:
    try:
        return check_legal_id(pid)
    except ValueError as exc:
        raise InvalidInput("event.party", str(exc)) from None


def _check_chain(party: Party | None, event: Event) -> None:

    seq, head = (0, None) if party is None else (party.seq + 1, party.head)
    if event.seq != seq or event.prev != head:
        raise Conflict(
            f"party {event.subject}: chain broken: expected seq {seq} after "
            f"{head or 'nothing'}, got seq {event.seq} after {event.prev or 'nothing'}",
            current_seq=seq - 1,
            current_head=head,
        )


def _with_key(party: Party, key: PublicKey, field: str, rule: str) -> tuple[KeyRecord, ...]:
    if any(r.key_hash == key.hash for r in party.keys):
        raise InvalidInput(field, f"key {key.key_id} is already registered for {party.id}")
    if len(party.active_keys()) >= MAX_KEYS:
        raise RuleViolation(
            rule, f"{party.id} has {MAX_KEYS} active keys, the most a party may have: revoke one"
        )
    return (*party.keys, KeyRecord(key))


def _without_key(
    party: Party, key_id: str, field: str, rule: str, last_ok: bool = False
) -> tuple[KeyRecord, ...]:
    found = False
    records = []
    for record in party.keys:
        if record.key_id == key_id:
            if record.revoked:
                raise RuleViolation(rule, f"key {key_id} is already revoked")
            found = True
            record = KeyRecord(record.key, revoked=True)
        records.append(record)
    if not found:
        raise InvalidInput(field, f"{party.id} has no key {key_id}")
    if not last_ok and not any(not r.revoked for r in records):
        raise RuleViolation(
            "revoke_key", f"{key_id} is the last active key of {party.id}; rotate it instead"
        )
    return tuple(records)
