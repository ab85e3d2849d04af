"""encd.tlogproof: the c2sp.org/tlog-proof text format and its verification."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encd.checkpoint import Checkpoint, CosignerKey, cosign, sign_checkpoint, verify_cosignatures
from encd.errors import Error, InvalidInput, VerificationError
from encd.keys import SigningKey
from encd.merkle import inclusion_proof, leaf_hash, node_hash, root_naive
from encd.note import parse_note, sign_note
from encd.tlogproof import HEADER, TlogProof

LOG = SigningKey("log.example/encd", bytes(range(32)))
OTHER_LOG = SigningKey("log.example/encd", bytes(range(1, 33)))
W1 = SigningKey("w1.example", bytes(range(2, 34)))

LEAVES = [leaf_hash(b"event %d" % i) for i in range(10)]
SIZE = 10
CHECKPOINT = Checkpoint(LOG.name, SIZE, root_naive(LEAVES))
SIGNED = sign_checkpoint(CHECKPOINT, LOG)


def get_node(level: int, index: int) -> bytes:
    return root_naive(LEAVES[index << level : (index + 1) << level])


def receipt(index: int, extra: bytes | None = None, signed: bytes = SIGNED) -> TlogProof:
    return TlogProof(index, tuple(inclusion_proof(index, SIZE, get_node)), signed, extra)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_exact_format() -> None:
    proof = receipt(7)
    assert len(proof.proof) == 4
    expected = (
        f"c2sp.org/tlog-proof@v1\nindex 7\n{''.join(b64(h) + chr(10) for h in proof.proof)}\n"
    ).encode() + SIGNED
    assert proof.to_bytes() == expected
    assert TlogProof.parse(expected) == proof


def test_exact_format_with_extra() -> None:
    proof = receipt(0, extra=b"opaque context")
    data = proof.to_bytes()
    assert data.startswith(f"{HEADER}\nextra {b64(b'opaque context')}\nindex 0\n".encode())
    assert TlogProof.parse(data) == proof
    assert TlogProof.parse(data).extra == b"opaque context"


def test_every_leaf_round_trips_and_verifies() -> None:
    for index in range(SIZE):
        proof = TlogProof.parse(receipt(index).to_bytes())
        assert proof.verify(LEAVES[index], LOG.public) == CHECKPOINT


def test_single_leaf_tree_has_no_hash_lines() -> None:
    cp = Checkpoint(LOG.name, 1, LEAVES[0])
    proof = TlogProof(0, (), sign_checkpoint(cp, LOG))
    assert proof.to_bytes().startswith(b"c2sp.org/tlog-proof@v1\nindex 0\n\nlog.example/encd\n1\n")
    assert TlogProof.parse(proof.to_bytes()).verify(LEAVES[0], LOG.public) == cp


@given(
    index=st.integers(0, 2**64 - 1),
    hashes=st.lists(st.binary(min_size=32, max_size=32), max_size=64),
    extra=st.none() | st.binary(min_size=1, max_size=100),
)
def test_any_proof_round_trips(index: int, hashes: list[bytes], extra: bytes | None) -> None:
    proof = TlogProof(index, tuple(hashes), SIGNED, extra)
    assert TlogProof.parse(proof.to_bytes()) == proof


def test_cosigned_checkpoint_still_verifies_and_cosignatures_can_be_read() -> None:
    signed = SIGNED + cosign(CHECKPOINT.text(), W1, 1_700_000_000)
    proof = TlogProof.parse(receipt(3, signed=signed).to_bytes())
    assert proof.verify(LEAVES[3], LOG.public) == CHECKPOINT
    witnesses = [CosignerKey.of(W1)]
    assert verify_cosignatures(parse_note(proof.signed_checkpoint), witnesses) == {
        "w1.example": 1_700_000_000
    }


# --- verification failures -----------------------------------------------------------------


def test_wrong_leaf_fails() -> None:
    with pytest.raises(VerificationError) as info:
        receipt(7).verify(LEAVES[6], LOG.public)
    assert info.value.message.startswith(
        "tlog-proof: inclusion proof for leaf 7 of 10: computed root "
    )
    assert info.value.message.endswith(f", expected {CHECKPOINT.root[:8].hex()}…")


def test_wrong_index_fails() -> None:
    proof = receipt(7)
    moved = TlogProof(6, proof.proof, proof.signed_checkpoint)
    with pytest.raises(VerificationError):
        moved.verify(LEAVES[7], LOG.public)


def test_tampered_proof_hash_fails() -> None:
    proof = receipt(7)
    bad = (node_hash(proof.proof[0], proof.proof[0]), *proof.proof[1:])
    with pytest.raises(VerificationError):
        TlogProof(7, bad, SIGNED).verify(LEAVES[7], LOG.public)


def test_index_beyond_the_checkpoint_fails() -> None:
    with pytest.raises(VerificationError) as info:
        TlogProof(10, receipt(9).proof, SIGNED).verify(LEAVES[9], LOG.public)
    assert info.value.message == (
        "tlog-proof: inclusion proof for leaf 10 of 10: leaf index 10 is not less than tree size 10"
    )


def test_checkpoint_signed_by_wrong_key_fails() -> None:
    proof = receipt(2, signed=sign_checkpoint(CHECKPOINT, OTHER_LOG))
    with pytest.raises(VerificationError) as info:
        proof.verify(LEAVES[2], LOG.public)
    assert info.value.message == (
        f"checkpoint: note has no signature from a known key (known: {LOG.public.key_id})"
    )


def test_origin_not_the_log_key_name_fails() -> None:
    elsewhere = Checkpoint("elsewhere.example/log", SIZE, CHECKPOINT.root)
    proof = receipt(2, signed=sign_note(elsewhere.text(), [LOG]))
    with pytest.raises(VerificationError) as info:
        proof.verify(LEAVES[2], LOG.public)
    assert info.value.message == (
        "checkpoint: origin 'elsewhere.example/log' is not the log key's name 'log.example/encd'"
    )


# --- malformed proofs ----------------------------------------------------------------------

HASH = b64(LEAVES[1])


def _proof(*lines: str, checkpoint: bytes = SIGNED) -> bytes:
    return "".join(line + "\n" for line in lines).encode() + b"\n" + checkpoint


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"c2sp.org/tlog-proof@v1\nindex 0\n", "tlog-proof: no empty line before the checkpoint"),
        (
            _proof("c2sp.org/tlog-proof@v2", "index 0"),
            "tlog-proof: line 1 must be 'c2sp.org/tlog-proof@v1', got 'c2sp.org/tlog-proof@v2'",
        ),
        (_proof(HEADER), "tlog-proof.index: line 2 must be 'index <N>'"),
        (_proof(HEADER, HASH), f"tlog-proof.index: line 2 must be 'index <N>', got {HASH!r}"),
        (
            _proof(HEADER, "index 07"),
            "tlog-proof.index: index must be ASCII decimal without leading zeros, got '07'",
        ),
        (
            _proof(HEADER, "index -1"),
            "tlog-proof.index: index must be ASCII decimal without leading zeros, got '-1'",
        ),
        (
            _proof(HEADER, "index  1"),
            "tlog-proof.index: index must be ASCII decimal without leading zeros, got ' 1'",
        ),
        (
            _proof(HEADER, f"index {2**64}"),
            "tlog-proof.index: index 18446744073709551616 is more than 18446744073709551615",
        ),
        (
            _proof(HEADER, "extra ", "index 0"),
            "tlog-proof.extra: extra line is empty; omit it when there is no extra data",
        ),
        (_proof(HEADER, "extra !!", "index 0"), "tlog-proof.extra: '!!' is not valid base64"),
        (
            _proof(HEADER, "index 0", "extra QQ=="),  # extra must come before the index
            "tlog-proof.proof[0]: 'extra QQ==' is not valid base64",
        ),
        (
            _proof(HEADER, "index 0", "QQ=="),
            "tlog-proof.proof[0]: line 3 must be a base64 32-byte hash, got 1 bytes",
        ),
        (
            _proof(HEADER, "index 0", HASH, b64(LEAVES[1][:31])),
            "tlog-proof.proof[1]: line 4 must be a base64 32-byte hash, got 31 bytes",
        ),
        (
            _proof(HEADER, "index 0", "not a hash"),
            "tlog-proof.proof[0]: 'not a hash' is not valid base64",
        ),
        (
            "c2sp.org/tlog-proof@v1\nindex 0\n\u00e9\n\n".encode() + SIGNED,
            "tlog-proof: non-ASCII byte at 31 before the checkpoint",
        ),
        (
            _proof(HEADER, "index 0", *[HASH] * 65),
            "tlog-proof.proof: 65 hashes, more than the 64 any tree needs",
        ),
        (
            _proof(HEADER, "index 0", HASH, "", HASH),  # an empty line among the hashes
            "tlog-proof.proof: line 5 is a hash after the empty line that ends the proof's"
            " hashes; an empty line must come only once, just before the checkpoint",
        ),
        (
            _proof(HEADER, "index 0", "", HASH),
            "tlog-proof.proof: line 4 is a hash after the empty line that ends the proof's"
            " hashes; an empty line must come only once, just before the checkpoint",
        ),
        (
            _proof(HEADER, "index 0", checkpoint=b""),
            "tlog-proof checkpoint: no blank line separating text from signatures",
        ),
        (
            _proof(HEADER, "index 0", checkpoint=sign_note(b"hello\n", [LOG])),
            "checkpoint: expected at least 3 lines (origin, tree size, root hash), got 1",
        ),
    ],
)
def test_malformed_proofs_name_the_fault(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        TlogProof.parse(data)
    assert info.value.message == message


def test_constructor_checks() -> None:
    with pytest.raises(InvalidInput) as info:
        TlogProof(-1, (), SIGNED)
    assert info.value.message == "tlog-proof.index: -1 is not in 0..2**64-1"
    with pytest.raises(InvalidInput) as info:
        TlogProof(0, (b"short",), SIGNED)
    assert info.value.message == "tlog-proof.proof[0]: hash must be 32 bytes (SHA-256), got 5"
    with pytest.raises(InvalidInput) as info:
        TlogProof(0, (), SIGNED, b"")
    assert info.value.message == "tlog-proof.extra: must not be empty; use None for no extra data"


def test_extra_data_is_not_authenticated() -> None:
    # tlog-proof: "Applications MUST NOT implicitly trust the extra data"
    changed = receipt(5, extra=b"ctx").to_bytes().replace(b"extra Y3R4", b"extra Y3R5")
    proof = TlogProof.parse(changed)
    assert proof.extra == b"cty"
    assert proof.verify(LEAVES[5], LOG.public) == CHECKPOINT


def test_every_one_bit_change_is_refused() -> None:
    data = receipt(5).to_bytes()
    TlogProof.parse(data).verify(LEAVES[5], LOG.public)
    for position in range(len(data)):
        for bit in range(8):
            changed = bytearray(data)
            changed[position] ^= 1 << bit
            # parse or verify must raise an encd Error, and nothing else
            with pytest.raises(Error):
                TlogProof.parse(bytes(changed)).verify(LEAVES[5], LOG.public)


def test_an_origin_that_looks_like_a_hash_is_an_origin() -> None:
    """tlog-checkpoint allows any origin: one of 44 base64 characters is still one."""
    origin = base64.b64encode(bytes(range(32))).decode()
    key = SigningKey(origin, bytes(32))
    leaves = [leaf_hash(b"a"), leaf_hash(b"b")]
    signed = sign_checkpoint(Checkpoint(origin, 2, root_naive(leaves)), key)
    proof = TlogProof(0, (leaves[1],), signed)
    parsed = TlogProof.parse(proof.to_bytes())
    assert parsed == proof
    assert parsed.verify(leaves[0], key.public).origin == origin
