"""The public log over HTTP: checkpoints, C2SP tlog-tiles, entry bundles and proofs.

Everything a client gets here is checked against what it can compute itself:
tile hashes rebuild the checkpoint's root, entry bundles hash to the level-0
tile, and proofs verify with encd.merkle against signed checkpoints.
"""

from __future__ import annotations

import base64
import hashlib
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest

from api.client import Client
from encd.checkpoint import Checkpoint, open_checkpoint
from encd.events import make_event
from encd.keys import SigningKey
from encd.logentry import ENTRY_SIZE, LogEntry
from encd.merkle import (
    HASH_SIZE,
    leaf_hash,
    node_hash,
    root_naive,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from tests.api.conftest import World
from tests.kit import T0

TILE = 256


def checkpoint(world: World) -> Checkpoint:
    """The latest checkpoint, after its signature by the log key verifies."""
    return open_checkpoint(world.operator.checkpoint(), world.log_key.public)


def fetch(world: World, path: str) -> httpx.Response:
    return world.operator.http.get(path)  # the log paths are public: no signature


def grow(world: World, per_party: int) -> None:
    """Append ``per_party`` add_key and revoke_key events to each party's own chain.

    The chains are independent, so each party posts in its own thread and the
    sequencer commits them in shared batches (group commit): a full tile's worth
    of entries in about a second.
    """
    clients = [world.operator, *world.clients.values()]

    def add_keys(client: Client) -> None:
        pid = client.key.name
        me = client.party(pid)
        seq, prev = me["seq"], me["head"]
        for n in range(per_party):  # add a key, revoke it, add another: at most 16 active
            key = SigningKey(pid, hashlib.sha256(f"{pid} {n // 2}".encode()).digest())
            added = n % 2 == 0
            raw = make_event(
                [client.key],
                type="add_key" if added else "revoke_key",
                party=pid,
                seq=seq + 1,
                prev=prev,
                time=T0 + timedelta(minutes=n),
                body={"key": key.public.vkey} if added else {"key_id": key.public.key_id},
            )
            seq, prev = seq + 1, client.party_event(pid, raw)["receipt"]["event_id"]

    with ThreadPoolExecutor(len(clients)) as pool:
        for done in [pool.submit(add_keys, c) for c in clients]:
            done.result()


def split_hashes(data: bytes) -> list[bytes]:
    assert len(data) % HASH_SIZE == 0
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def split_entries(data: bytes) -> list[bytes]:
    """An entry bundle: each entry a big-endian uint16 length and that many bytes."""
    entries, at = [], 0
    while at < len(data):
        length = int.from_bytes(data[at : at + 2], "big")
        entries.append(data[at + 2 : at + 2 + length])
        at += 2 + length
    assert at == len(data)
    return entries


@pytest.fixture()
def big_log(world: World, doc_id: str) -> World:
    """A log of a full tile and a partial one: 8 registrations, the issue and 38 key
    additions by each of the 8 parties (313 entries)."""
    grow(world, 38)
    return world


def test_checkpoint_verifies_with_the_log_key(world: World) -> None:
    note = fetch(world, "/log/checkpoint")
    assert note.status_code == 200 and note.headers["content-type"].startswith("text/plain")
    cp = open_checkpoint(note.content, world.log_key.public)
    assert cp.origin == "encd.test/log"
    assert cp.size == world.operator.service()["log_size"] == 8
    assert world.operator.service()["log_key"] == world.log_key.public.vkey


def test_tiles_entries_and_proofs_reproduce_the_checkpoint(big_log: World) -> None:
    world = big_log
    cp = checkpoint(world)
    size = cp.size
    assert size == 313
    full, width = divmod(size, TILE)  # one full level-0 tile and a partial one of 57
    assert (full, width) == (1, 57)

    # (1) level-0 tiles: the leaf hashes
    tile0 = fetch(world, "/log/tile/0/000")
    assert tile0.status_code == 200
    assert tile0.headers["content-type"] == "application/octet-stream"
    partial = fetch(world, f"/log/tile/0/001.p/{width}")
    assert partial.status_code == 200
    leaves = split_hashes(tile0.content) + split_hashes(partial.content)
    assert len(leaves) == size
    # a narrower partial tile is the one a client at an older, smaller checkpoint needs
    older = fetch(world, "/log/tile/0/001.p/5")
    assert older.status_code == 200 and older.content == partial.content[: 5 * HASH_SIZE]
    # once full, a tile's partial forms stay: what a client at an older checkpoint reads
    # (golang.org/x/mod/sumdb/tlog never falls back to the full tile)
    for width_then in (1, 10, 255):
        then = fetch(world, f"/log/tile/0/000.p/{width_then}")
        assert then.status_code == 200 and then.content == tile0.content[: width_then * HASH_SIZE]
        assert then.headers["cache-control"] == "public, max-age=31536000, immutable"
    # a tile at a path never changes: caches may keep it; the checkpoint they must not
    for answer in (tile0, partial, older):
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert fetch(world, "/log/checkpoint").headers["cache-control"] == "no-cache"

    # (2) level 1: one hash per full level-0 tile, here a partial tile of width 1
    level1 = fetch(world, "/log/tile/1/000.p/1")
    assert level1.status_code == 200
    (tile0_root,) = split_hashes(level1.content)
    assert tile0_root == root_naive(split_hashes(tile0.content))

    # (3) the checkpoint's root from the tiles: the level-1 hash for the first 256
    # leaves, the partial tile's hashes for the rest (tlog-tiles reads no more)
    def get_node(level: int, index: int) -> bytes:
        if level == 8:
            assert index == 0
            return tile0_root
        if level == 0:
            return leaves[index]
        return node_hash(get_node(level - 1, 2 * index), get_node(level - 1, 2 * index + 1))

    assert tree_root(size, get_node) == cp.root
    assert root_naive(leaves) == cp.root

    # (4) entry bundles: uint16-length-prefixed 40-byte entries hashing to the level-0 tile
    bundle0 = fetch(world, "/log/tile/entries/000")
    bundle1 = fetch(world, f"/log/tile/entries/001.p/{width}")
    assert bundle0.status_code == bundle1.status_code == 200
    assert bundle0.headers["cache-control"] == bundle1.headers["cache-control"]
    assert "immutable" in bundle0.headers["cache-control"]
    bundle0_then = fetch(world, "/log/tile/entries/000.p/10")
    assert bundle0_then.status_code == 200
    assert split_entries(bundle0_then.content) == split_entries(bundle0.content)[:10]
    entries = split_entries(bundle0.content) + split_entries(bundle1.content)
    assert len(entries) == size
    assert all(len(e) == ENTRY_SIZE for e in entries)
    for entry, expected in zip(entries, leaves, strict=True):
        assert hashlib.sha256(b"\x00" + entry).digest() == expected == leaf_hash(entry)
    # each entry names the event at its index (which the document's parties can fetch)
    for item in world.client("carrier").history("ENCD-CQ-2026-000417")["events"]:
        logged = LogEntry(hashlib.sha256(item["event"].encode()).hexdigest(), item["sequenced_at"])
        assert entries[item["index"]] == logged.to_bytes()

    # (5) inclusion proofs against the latest checkpoint
    for index in (0, 1, 7, 255, 256, 257, size - 1):
        answer = world.operator.get("/v1/log/inclusion", index=index, size=size)
        assert answer["index"] == index and answer["size"] == size
        proof = [base64.b64decode(h) for h in answer["proof"]]
        verify_inclusion(leaves[index], index, size, proof, cp.root)

    # (6) consistency proofs, from the trees the tiles describe and from an older
    # checkpoint the log signed (the one in the issue's receipt)
    for size1 in (1, 8, 9, 255, 256, 257, size):
        answer = world.operator.get("/v1/log/consistency", size1=size1, size2=size)
        proof = [base64.b64decode(h) for h in answer["proof"]]
        verify_consistency(size1, size, proof, root_naive(leaves[:size1]), cp.root)
    issue_id = LogEntry.parse(entries[8]).event_id
    receipt = world.client("carrier").get(f"/v1/events/{issue_id}/receipt")
    old = open_checkpoint(receipt["checkpoint"].encode(), world.log_key.public)
    assert old.size == 9
    answer = world.operator.get("/v1/log/consistency", size1=old.size, size2=size)
    proof = [base64.b64decode(h) for h in answer["proof"]]
    verify_consistency(old.size, size, proof, old.root, cp.root)

    # (7) tiles that do not exist at this size, and paths that are not tiles: 404 problems
    for path in (
        "/log/tile/0/001",  # the second tile is not full yet
        "/log/tile/0/001.p/58",  # wider than the tree
        "/log/tile/0/002.p/1",
        "/log/tile/0/001.p/0",
        "/log/tile/0/001.p/256",
        "/log/tile/0/001.p/abc",
        "/log/tile/0/001.p/057",
        "/log/tile/1/000",
        "/log/tile/1/000.p/2",
        "/log/tile/2/000.p/1",
        "/log/tile/0/1",
        "/log/tile/0/x000",
        "/log/tile/0/x001/000",
        "/log/tile/0/",
        "/log/tile/a/000",
        "/log/tile/entries/001",
        "/log/tile/entries/001.p/58",
        "/log/tile/entries/abc",
        # one path for each tile: these name the partial tile served above, but not as
        # tlog-tiles writes it (other scripts' digits, a leading x000 group, a level "00")
        f"/log/tile/0/%D9%A0%D9%A0%D9%A1.p/{width}",  # Arabic-Indic digits
        f"/log/tile/%EF%BC%90/001.p/{width}",  # a fullwidth zero
        f"/log/tile/0/001.p/{width // 10}%D9%A{width % 10}",
        f"/log/tile/entries/%D9%A0%D9%A0%D9%A1.p/{width}",
        f"/log/tile/0/x000/001.p/{width}",
        f"/log/tile/entries/x000/001.p/{width}",
        f"/log/tile/00/001.p/{width}",
        "/log/tile/64/000",
        "/log/tile/0/" + "x999/" * 7 + "999",
        "/log/tile/0/" + "x000/" * 1500 + "000",  # int() of over 4,300 digits raised: a 500
        "/log/tile/entries/" + "x999/" * 2000 + "999.p/1",
    ):
        response = fetch(world, path)
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json", path
        assert response.json()["type"] == "urn:encd:problem:not-found", path
