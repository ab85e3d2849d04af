"""The party rules of events.md §5.2 that bound what a party's keys and agency may be."""

from __future__ import annotations

import pytest

from encd.errors import InvalidInput, RuleViolation
from tests.kit import Cast, corridor_cast, seeded_key


@pytest.fixture()
def cast() -> Cast:
    return corridor_cast()


def test_a_verifier_key_in_a_body_is_written_exactly(cast: Cast) -> None:
    """One key, one spelling: white space around it is refused, not stripped."""
    exporter = cast.actor("exporter")
    added = seeded_key(exporter.id, "second").public.vkey
    for written in (f" {added}", f"{added}\n"):
        raw = cast.party_event(exporter, "add_key", {"key": written}, [exporter.key])
        with pytest.raises(InvalidInput) as info:
            cast.append(raw)
        assert info.value.field == "body.key"
        assert f"a verifier key is written exactly as {added}" in info.value.reason
    cast.append(cast.party_event(exporter, "add_key", {"key": added}, [exporter.key]))
    assert len(cast.replay.parties[exporter.id].active_keys()) == 2


def test_a_party_has_at_most_sixteen_active_keys(cast: Cast) -> None:
    exporter = cast.actor("exporter")
    for i in range(15):
        key = seeded_key(exporter.id, f"extra {i}").public.vkey
        cast.append(cast.party_event(exporter, "add_key", {"key": key}, [exporter.key]))
    assert len(cast.replay.parties[exporter.id].active_keys()) == 16
    seventeenth = seeded_key(exporter.id, "one too many").public.vkey
    raw = cast.party_event(exporter, "add_key", {"key": seventeenth}, [exporter.key])
    with pytest.raises(RuleViolation) as info:
        cast.append(raw)
    assert info.value.rule == "add_key"
    assert (
        str(info.value)
        == f"{exporter.id} has 16 active keys, the most a party may have: revoke one"
    )
    # a rotation replaces one key with another: the count stays at 16
    rotate = {"old": exporter.key.public.key_id, "new": seventeenth}
    cast.append(cast.party_event(exporter, "rotate_key", rotate, [exporter.key]))
    assert len(cast.replay.parties[exporter.id].active_keys()) == 16


def test_rotating_a_revoked_key_names_rotate_key(cast: Cast) -> None:
    exporter = cast.actor("exporter")
    spare = seeded_key(exporter.id, "spare")
    cast.append(cast.party_event(exporter, "add_key", {"key": spare.public.vkey}, [exporter.key]))
    revoke = {"key_id": spare.public.key_id}
    cast.append(cast.party_event(exporter, "revoke_key", revoke, [exporter.key]))
    rotate = {"old": spare.public.key_id, "new": seeded_key(exporter.id, "new").public.vkey}
    with pytest.raises(RuleViolation) as info:
        cast.append(cast.party_event(exporter, "rotate_key", rotate, [exporter.key]))
    assert info.value.rule == "rotate_key"
    assert str(info.value) == f"key {spare.public.key_id} is already revoked"


def test_a_carrier_named_twice_for_an_agent_is_refused(cast: Cast) -> None:
    carrier = cast.actor("carrier").id
    agent = cast.add_actor("agent2", "91500000MA5U0A0X7Q", "Agent Two", ["agent"], [carrier] * 2)
    with pytest.raises(InvalidInput) as info:
        cast.append(cast.register_event(agent))
    assert (info.value.field, info.value.reason) == (
        "body.agent_for",
        "a carrier must not be named twice",
    )
    assert agent.id not in cast.replay.parties
