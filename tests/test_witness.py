"""encd.witness: c2sp.org/tlog-witness add-checkpoint, each answer the spec gives, over a
real SQLite state file (ledger.witnessdb) and real Ed25519 keys."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encd.checkpoint import (
    Checkpoint,
    CosignerKey,
    cosign,
    sign_checkpoint,
    verify_cosignatures,
)
from encd.errors import InvalidInput
from encd.keys import SigningKey
from encd.merkle import consistency_proof, leaf_hash, root_naive
from encd.witness import AddCheckpoint, Refused, Witness
from ledger.witnessdb import WitnessDB
from tests.kit import loosened

LOG = SigningKey("log.example/encd", bytes(range(32)))
OTHER_LOG = SigningKey("other.example/log", bytes(range(2, 34)))
WITNESS = SigningKey("witness.bank.example/w1", bytes(range(1, 33)))
LEAVES = [leaf_hash(b"entry %d" % i) for i in range(40)]


def root(size: int, leaves: list[bytes] = LEAVES) -> bytes:
    return root_naive(leaves[:size]) if size else hashlib.sha256(b"").digest()


def signed(size: int, key: SigningKey = LOG, leaves: list[bytes] = LEAVES) -> bytes:
    return sign_checkpoint(Checkpoint(key.name, size, root(size, leaves)), key)


def proof(old: int, new: int, leaves: list[bytes] = LEAVES) -> tuple[bytes, ...]:
    if old == 0:
        return ()

    def node(level: int, index: int) -> bytes:
        return root_naive(leaves[index << level : (index + 1) << level])

    return tuple(consistency_proof(old, new, node))


def request(old: int, new: int, **kwargs: object) -> bytes:
    note = kwargs.get("note") or signed(new)
    hashes = kwargs.get("hashes")
    assert isinstance(note, bytes)
    return AddCheckpoint(
        old,
        proof(old, new) if hashes is None else hashes,
        note,  # type: ignore[arg-type]
    ).to_bytes()


@pytest.fixture()
def witness(tmp_path: Path) -> Witness:
    db = WitnessDB(tmp_path / "witness.db", create=True)
    return Witness(WITNESS, [LOG.public], db, clock=lambda: 1_700_000_000)


def refused(witness: Witness, body: bytes) -> Refused:
    with pytest.raises(Refused) as info:
        witness.add_checkpoint(body)
    return info.value


def test_a_first_checkpoint_is_cosigned_and_the_cosignature_verifies(witness: Witness) -> None:
    line = witness.add_checkpoint(request(0, 5))
    assert line.startswith("— witness.bank.example/w1 ".encode()) and line.endswith(b"\n")
    verified = verify_cosignatures(signed(5) + line, [CosignerKey.of(WITNESS)])
    assert verified == {"witness.bank.example/w1": 1_700_000_000}
    assert witness.state.latest(LOG.name) == (5, root(5))


def test_the_log_grows_with_consistency_proofs(witness: Witness) -> None:
    sizes = [0, 1, 2, 3, 7, 8, 9, 16, 17, 33, 40]
    for old, new in itertools.pairwise(sizes):
        witness.add_checkpoint(request(old, new))
        assert witness.state.latest(LOG.name) == (new, root(new))


def test_the_same_checkpoint_again_is_cosigned_again(witness: Witness) -> None:
    witness.add_checkpoint(request(0, 5))
    witness.add_checkpoint(request(5, 5))
    assert witness.state.latest(LOG.name) == (5, root(5))


def test_an_old_size_that_is_not_the_witness_s_is_409_with_its_size(witness: Witness) -> None:
    witness.add_checkpoint(request(0, 8))
    error = refused(witness, request(0, 9))  # a log that forgot what the witness holds
    assert (error.status, error.size) == (409, 8)
    error = refused(witness, request(5, 9))
    assert (error.status, error.size) == (409, 8)
    assert "old size 5 is not 8, the size last cosigned" in error.message
    witness.add_checkpoint(request(8, 9))  # the log's retry, from the size it was told


def test_a_fork_at_the_same_size_is_409_and_never_cosigned(witness: Witness) -> None:
    witness.add_checkpoint(request(0, 8))
    forked = [*LEAVES[:7], leaf_hash(b"another entry 7")]
    error = refused(witness, request(8, 8, note=signed(8, leaves=forked), hashes=()))
    assert (error.status, error.size) == (409, None)  # not "your old size is stale"
    assert "forked" in error.message
    assert witness.state.latest(LOG.name) == (8, root(8))


def test_an_empty_tree_has_one_root(witness: Witness) -> None:
    wrong = sign_checkpoint(Checkpoint(LOG.name, 0, bytes(32)), LOG)
    error = refused(witness, request(0, 0, note=wrong))
    assert error.status == 400 and "the empty tree's root" in error.message
    assert witness.state.latest(LOG.name) is None
    witness.add_checkpoint(request(0, 0))
    assert witness.state.latest(LOG.name) == (0, hashlib.sha256(b"").digest())


def test_a_history_rewritten_behind_the_witness_is_422(witness: Witness) -> None:
    witness.add_checkpoint(request(0, 8))
    rewritten = [*LEAVES[:3], leaf_hash(b"rewritten"), *LEAVES[4:]]
    body = AddCheckpoint(8, proof(8, 12, rewritten), signed(12, leaves=rewritten)).to_bytes()
    error = refused(witness, body)
    assert error.status == 422 and error.message.startswith("consistency proof: ")
    assert witness.state.latest(LOG.name) == (8, root(8))  # nothing recorded


def test_a_proof_with_old_size_zero_must_be_empty(witness: Witness) -> None:
    error = refused(witness, request(0, 8, hashes=(root(4),)))
    assert error.status == 422
    assert error.message == "the consistency proof must be empty when the old size is 0"


def test_an_unknown_log_is_404_and_a_foreign_signature_403(witness: Witness) -> None:
    error = refused(witness, request(0, 3, note=signed(3, OTHER_LOG)))
    assert error.status == 404
    assert error.message == "this witness does not witness the log 'other.example/log'"
    impostor = SigningKey(LOG.name, bytes(range(5, 37)))  # the log's name, another key
    error = refused(witness, request(0, 3, note=signed(3, impostor)))
    assert error.status == 403 and "no signature from a known key" in error.message
    assert witness.state.latest(LOG.name) is None


def test_another_key_s_line_in_lenient_base64_is_ignored_the_log_s_refused(
    witness: Witness,
) -> None:
    """c2sp.org/signed-note: unknown keys' lines are ignored (Go's note.Open reads their
    base64 leniently); the log's own line must be canonical."""
    stranger = SigningKey("w3.example", bytes(range(4, 36)))
    odd = loosened(cosign(Checkpoint(LOG.name, 3, root(3)).text(), stranger, 1))
    line = witness.add_checkpoint(request(0, 3, note=signed(3) + odd))
    assert verify_cosignatures(signed(3) + line, [CosignerKey.of(WITNESS)])
    error = refused(witness, request(3, 4, note=loosened(signed(4))))
    assert error.status == 403 and "not canonical base64" in error.message
    assert witness.state.latest(LOG.name) == (3, root(3))


def test_an_old_size_above_the_checkpoint_s_is_400(witness: Witness) -> None:
    error = refused(witness, request(9, 8, hashes=()))
    assert error.status == 400
    assert error.message == "old size 9 is more than the checkpoint's size 8"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"old 0\n", "add-checkpoint: no empty line before the checkpoint"),
        (b"new 0\n\n" + signed(1), "add-checkpoint.old: line 1 must be 'old <size>', got 'new 0'"),
        (
            b"old 01\n\n" + signed(1),
            "add-checkpoint.old: old size must be ASCII decimal without leading zeros, got '01'",
        ),
        (
            b"old 0\nAAAA\n\n" + signed(1),
            "add-checkpoint.proof[0]: line 2 must be a base64 32-byte hash, got 3 bytes",
        ),
        (
            b"old 0\n" + b"".join([b"x\n"] * 64) + b"\n" + signed(1),
            "add-checkpoint.proof: 64 consistency proof lines, more than 63",
        ),
        (b"old 0\n\nnot a note", "checkpoint: no blank line separating text from signatures"),
    ],
)
def test_malformed_requests_are_400_naming_the_fault(
    witness: Witness, body: bytes, message: str
) -> None:
    error = refused(witness, body)
    assert (error.status, error.message) == (400, message)


@given(old=st.integers(0, 40), new=st.integers(0, 40))
def test_any_request_round_trips(old: int, new: int) -> None:
    hashes = proof(min(old, new), max(old, new)) if min(old, new) else ()
    body = AddCheckpoint(old, hashes, signed(new)).to_bytes()
    assert AddCheckpoint.parse(body) == AddCheckpoint(old, hashes, signed(new))


def test_the_state_survives_a_restart_and_two_requests_cannot_roll_it_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "witness.db"
    with WitnessDB(path, create=True) as db:
        Witness(WITNESS, [LOG.public], db).add_checkpoint(request(0, 8))
    with WitnessDB(path) as db:
        assert db.latest(LOG.name) == (8, root(8))
        # the compare-and-set: of two writers that read size 8, only one records
        assert db.replace(LOG.name, (8, root(8)), (9, root(9)))
        assert not db.replace(LOG.name, (8, root(8)), (12, root(12)))
        assert db.latest(LOG.name) == (9, root(9))


def test_a_missing_or_foreign_state_file_is_refused_not_started_over(tmp_path: Path) -> None:
    """A witness that forgot what it cosigned would cosign a fork: only init creates."""
    path = tmp_path / "witness.db"
    with pytest.raises(InvalidInput, match="is missing: a witness must not forget") as info:
        WitnessDB(path)
    assert info.value.field == "witness.db" and not path.exists()
    path.write_bytes(b"not a database at all, but long enough to have a header" * 20)
    with pytest.raises(InvalidInput, match="is not a witness's state"):
        WitnessDB(path)
    path.unlink()
    sqlite3.connect(path).execute("CREATE TABLE other (x)").connection.commit()
    with pytest.raises(InvalidInput, match=r"is not a witness's state.*no such table"):
        WitnessDB(path)
    with sqlite3.connect(path) as other:  # refused without being changed
        assert other.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_concurrent_requests_for_one_log_never_roll_it_back(tmp_path: Path) -> None:
    """Many threads race from the same old size: exactly one wins, the rest get 409."""
    with WitnessDB(tmp_path / "witness.db", create=True) as db:
        witness = Witness(WITNESS, [LOG.public], db)
        witness.add_checkpoint(request(0, 8))
        outcomes: list[int] = []

        def send(new: int) -> None:
            try:
                witness.add_checkpoint(request(8, new))
                outcomes.append(200)
            except Refused as exc:
                outcomes.append(exc.status)

        threads = [threading.Thread(target=send, args=(n,)) for n in range(9, 40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes.count(200) == 1 and set(outcomes) <= {200, 409}
        size, _ = db.latest(LOG.name) or (0, b"")
        assert size >= 9


def test_two_keys_for_one_log_are_refused(tmp_path: Path) -> None:
    twin = SigningKey(LOG.name, bytes(range(7, 39)))
    with (
        WitnessDB(tmp_path / "w.db", create=True) as db,
        pytest.raises(InvalidInput, match="two keys"),
    ):
        Witness(WITNESS, [LOG.public, twin.public], db)
