"""A real encd service on uvicorn, on loopback, over a fresh data directory and database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from api.client import Client
from api.server import running
from api.settings import Settings
from encd.events import make_event
from encd.keys import SigningKey
from tests.kit import T0, Actor, corridor_cast


@dataclass
class World:
    """The corridor's parties, each with its own client (own key), against one server."""

    url: str
    data_dir: Path
    operator: Client
    actors: dict[str, Actor]
    clients: dict[str, Client]
    log_key: SigningKey

    def client(self, label: str) -> Client:
        return self.clients[label]

    def id(self, label: str) -> str:
        return self.actors[label].id

    def register(self, label: str) -> None:
        actor = self.actors[label]
        body: dict[str, object] = {
            "name": actor.name,
            "roles": actor.roles,
            "keys": [actor.key.public.vkey],
        }
        if actor.agent_for:
            body["agent_for"] = actor.agent_for
        raw = make_event(
            [self.operator.key],
            type="register",
            party=actor.id,
            seq=0,
            prev=None,
            time=T0,
            body=body,
        )
        self.operator.register(raw)


@pytest.fixture()
def settings(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Settings:
    """The service's settings; ``@pytest.mark.settings(field=value)`` changes fields."""
    marker = request.node.get_closest_marker("settings")
    fields = {"origin": "encd.test/log", "stream_poll": 0.2, **(marker.kwargs if marker else {})}
    return Settings(data_dir=tmp_path / "data", database_url=database_url, **fields)


@pytest.fixture()
def world(settings: Settings) -> Iterator[World]:
    with running(settings) as url:
        service = Client(url, SigningKey.generate("nobody")).service()
        operator_key = SigningKey.load(service["operator"], settings.data_dir / "operator.key")
        log_key = SigningKey.load(service["origin"], settings.data_dir / "log.key")
        cast = corridor_cast()
        actors = {label: a for label, a in cast.actors.items() if label != "operator"}
        clients = {label: Client(url, a.key) for label, a in actors.items()}
        operator = Client(url, operator_key)
        w = World(url, settings.data_dir, operator, actors, clients, log_key)
        for label in ("carrier", "exporter", "buyer", "bank", "bank2", "agent", "auditor"):
            w.register(label)
        try:
            yield w
        finally:
            for c in [operator, *clients.values()]:
                c.close()


@pytest.fixture()
def doc_id(world: World) -> str:
    """The corridor document, issued by the carrier with the exporter as holder."""
    from tests.kit import corridor_document

    content = corridor_document()
    carrier = world.client("carrier")
    raw = make_event(
        [carrier.key],
        type="issue",
        doc=content["id"],
        seq=0,
        prev=None,
        time=T0,
        body={"content": content, "holder": world.id("exporter")},
    )
    carrier.submit(raw)
    return str(content["id"])
