"""The JSON answers docs/api.md shows are the answers the service gives.

docs/api.md §4 ("Answers") shows each JSON answer as an example, each under a
comment ``<!-- answer: <name> -->``.  A client written from the page relies on
those members, so this test runs the corridor over real HTTP and checks every
answer against its example: the same members at every depth (an object's keys;
a list's items against the example's first item), and JSON values of the same
kind.  A value written ``"…"`` in an example is elided: its member must be there,
and what it holds is not compared.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from encd.events import assemble, make_event, sign_text
from encd.keys import SigningKey
from tests.api.conftest import World
from tests.api.test_lifecycle import DOC, issue, pledge_body
from tests.kit import T0, uscc

API_MD = Path(__file__).parents[2] / "docs" / "api.md"
ELIDED = "…"
EXAMPLE = re.compile(r"<!-- answer: ([a-z_]+) -->\s*```json\n(.*?)```", re.S)


def documented() -> dict[str, Any]:
    """Each example answer of docs/api.md by its name."""
    examples = {}
    for name, text in EXAMPLE.findall(API_MD.read_text()):
        assert name not in examples, f"two examples named {name}"
        examples[name] = json.loads(text)
    return examples


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def differences(example: Any, answer: Any, where: str = "") -> list[str]:
    """How ``answer`` differs in shape from ``example`` (nothing when it has its shape)."""
    if example == ELIDED:
        return []
    if kind(example) != kind(answer) and None not in (example, answer):
        return [f"{where or 'the answer'}: documented {kind(example)}, answered {kind(answer)}"]
    found: list[str] = []
    if isinstance(example, dict) and isinstance(answer, dict):
        for name in sorted(example.keys() - answer.keys()):
            found.append(f"{where}.{name}: documented, not answered")
        for name in sorted(answer.keys() - example.keys()):
            found.append(f"{where}.{name}: answered, not documented")
        for name in sorted(example.keys() & answer.keys()):
            found += differences(example[name], answer[name], f"{where}.{name}")
    elif isinstance(example, list) and isinstance(answer, list) and example:
        for i, item in enumerate(answer):
            found += differences(example[0], item, f"{where}[{i}]")
    return found


def answers(world: World) -> dict[str, Any]:
    """Every JSON answer the page shows, from a corridor run over real HTTP."""
    out: dict[str, Any] = {}
    operator, auditor = world.operator, world.client("auditor")
    exporter, bank, agent = world.client("exporter"), world.client("bank"), world.client("agent")
    newcomer = uscc("91500000MA7000000")
    raw = make_event(
        [operator.key],
        type="register",
        party=newcomer,
        seq=0,
        prev=None,
        time=T0,
        body={
            "name": "Newcomer Trading",
            "roles": ["trader"],
            "keys": [SigningKey(newcomer, bytes(32)).public.vkey],
        },
    )
    out["party_posted"] = operator.register(raw)
    out["party"] = exporter.party(world.id("agent"))
    out["receipt"] = issue(world)
    milestone = {
        "kind": "departed",
        "location": {"locode": "CNCKG", "name": "Luoqi, Jiangjin"},
        "at": "2026-05-01T09:00:00Z",
    }
    agent.submit(agent.next_event(DOC, "milestone", milestone))
    exporter.submit(exporter.next_event(DOC, "instruct", {"instruction": "Hold at Qinzhou."}))
    proposal = exporter.propose(exporter.next_event(DOC, "pledge", pledge_body(world, "bank")))
    out["proposal"] = proposal
    out["proposals"] = bank.proposals()
    text = proposal["text"].encode()
    out["proposal_applied"] = bank.countersign(
        proposal["id"], assemble(text, sign_text(text, [bank.key]))
    )
    event_id = out["proposal_applied"]["event_id"]
    out["receipt_read"] = auditor.get(f"/v1/events/{event_id}/receipt")
    out["title"] = bank.title(DOC)
    out["document"] = auditor.document(DOC)
    out["history"] = auditor.history(DOC)
    out["service"] = auditor.service()
    size = out["service"]["log_size"]
    out["inclusion"] = auditor.get("/v1/log/inclusion", index=3, size=size)
    out["consistency"] = auditor.get("/v1/log/consistency", size1=3, size2=size)
    out["readyz"] = auditor.http.get("/readyz").json()
    return out


def test_every_documented_answer_is_the_shape_the_service_answers(world: World) -> None:
    examples, answered = documented(), answers(world)
    assert examples.keys() == answered.keys(), "the page's examples and the answers run here"
    found = [
        f"{name}{difference}"
        for name in sorted(examples)
        for difference in differences(examples[name], answered[name])
    ]
    assert not found, "docs/api.md differs from the service:\n" + "\n".join(found)


def test_the_comparison_finds_a_member_missing_added_or_of_another_kind() -> None:
    example = {"a": 1, "b": {"c": "x"}, "d": [{"e": True}], "f": ELIDED}
    assert differences(example, {"a": 2, "b": {"c": "y"}, "d": [], "f": [1]}) == []
    changed = {"a": 2, "b": {"c": "y"}, "d": [{"e": 1}], "f": 1, "g": 0}
    assert sorted(differences(example, changed)) == [
        ".d[0].e: documented boolean, answered number",
        ".g: answered, not documented",
    ]
    assert sorted(differences(example, {"b": {}, "d": [{"e": False}], "f": None})) == [
        ".a: documented, not answered",
        ".b.c: documented, not answered",
    ]
