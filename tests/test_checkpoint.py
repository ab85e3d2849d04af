"""encd.checkpoint: C2SP tlog-checkpoint notes and tlog-cosignature/v1 witness cosignatures."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encd.checkpoint import (
    Checkpoint,
    CosignerKey,
    cosign,
    cosignature_message,
    open_checkpoint,
    sign_checkpoint,
    verify_cosignatures,
)
from encd.errors import InvalidInput, VerificationError
from encd.keys import SigningKey
from encd.merkle import leaf_hash
from encd.note import NoteSignature, parse_note, sign_note
from tests.kit import loosened

LOG = SigningKey("log.example/encd", bytes(range(32)))
OTHER_LOG = SigningKey("log.example/encd", bytes(range(1, 33)))  # same name, other key
W1 = SigningKey("w1.example", bytes(range(2, 34)))
W2 = SigningKey("w2.example", bytes(range(3, 35)))
ROOT = leaf_hash(b"root")
CP = Checkpoint("log.example/encd", 5, ROOT)

# The example of c2sp.org/tlog-checkpoint and c2sp.org/tlog-cosignature.
SPEC_TEXT = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_COSIGNATURE = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2"
    "oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- the checkpoint text -------------------------------------------------------------------


def test_spec_example_parses() -> None:
    cp = Checkpoint.parse(SPEC_TEXT)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.extensions == ()
    assert cp.text() == SPEC_TEXT


def test_text_round_trip() -> None:
    assert CP.text() == f"log.example/encd\n5\n{b64(ROOT)}\n".encode()
    assert Checkpoint.parse(CP.text()) == CP
    with_ext = Checkpoint("log.example/encd", 0, ROOT, ("ext one", "ext two"))
    assert with_ext.text().endswith(b"\next one\next two\n")
    assert Checkpoint.parse(with_ext.text()) == with_ext


@given(
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(
        st.text(
            st.characters(min_codepoint=0x20, exclude_characters="\x7f", exclude_categories=["Cs"]),
            min_size=1,
        ),
        max_size=3,
    ),
)
def test_any_checkpoint_round_trips(size: int, root: bytes, extensions: list[str]) -> None:
    cp = Checkpoint("o.example/log", size, root, tuple(extensions))
    assert Checkpoint.parse(cp.text()) == cp


def test_a_lone_surrogate_cannot_make_a_checkpoint() -> None:
    with pytest.raises(InvalidInput, match="lone surrogate U\\+D800 is not valid Unicode"):
        Checkpoint("o.example/log", 0, bytes(32), ("\ud800",))


def _text(origin: str = "log", size: str = "5", root: str = b64(ROOT), *rest: str) -> bytes:
    return "".join(line + "\n" for line in (origin, size, root, *rest)).encode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            _text(size="007"),
            "checkpoint.size: line 2 (tree size) must be ASCII decimal without leading zeros, got '007'",
        ),
        (
            _text(size="five"),
            "checkpoint.size: line 2 (tree size) must be ASCII decimal without leading zeros, got 'five'",
        ),
        (
            _text(size="-1"),
            "checkpoint.size: line 2 (tree size) must be ASCII decimal without leading zeros, got '-1'",
        ),
        (
            _text(size="+5"),
            "checkpoint.size: line 2 (tree size) must be ASCII decimal without leading zeros, got '+5'",
        ),
        (
            _text(size=" 5"),
            "checkpoint.size: line 2 (tree size) must be ASCII decimal without leading zeros, got ' 5'",
        ),
        (
            _text(size="٥"),  # ARABIC-INDIC DIGIT FIVE: a digit, but not ASCII
            "checkpoint.size: line 2 (tree size) must be ASCII decimal without leading zeros, got '٥'",
        ),
        (
            _text(size=str(2**64)),
            "checkpoint.size: line 2 (tree size) 18446744073709551616 is more than 18446744073709551615",
        ),
        (
            _text(size="1" * 5000),
            "checkpoint.size: line 2 (tree size) has 5000 digits, more than 18446744073709551615",
        ),
        (
            _text(root=b64(ROOT[:31])),
            "checkpoint.root: line 3 (root hash) must be 32 bytes, got 31",
        ),
        (
            _text(root=b64(ROOT + b"x")),
            "checkpoint.root: line 3 (root hash) must be 32 bytes, got 33",
        ),
        (_text(root="not base64!"), "checkpoint.root: 'not base64!' is not valid base64"),
        (
            _text(root=base64.urlsafe_b64encode(b"\xff" * 32).decode()),
            "checkpoint.root: '__________________________________________8=' is not valid base64",
        ),
        (
            _text(root=b64(ROOT).rstrip("=")),
            f"checkpoint.root: {b64(ROOT).rstrip('=')!r} is not valid base64",
        ),
        (
            # 'A' -> 'B' in the last character changes only unused bits: same bytes
            _text(root="A" * 42 + "B="),
            "checkpoint.root: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=' is not canonical base64",
        ),
        (
            b"log\n5\n",
            "checkpoint: expected at least 3 lines (origin, tree size, root hash), got 2",
        ),
        (_text()[:-1], "checkpoint: text must end with a newline"),
        (_text(origin=""), "checkpoint.origin: line 1 (origin) must not be empty"),
        (
            _text("log", "5", b64(ROOT), "ext", "", "more"),
            "checkpoint.extensions: line 5 is empty; extension lines must not be",
        ),
        (b"log\n5\n\xff\n", "checkpoint: not valid UTF-8 at byte 6"),
        (_text(origin="lo\tg"), "checkpoint.origin: control character U+0009 is not allowed"),
    ],
)
def test_malformed_checkpoints_name_the_fault(text: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Checkpoint.parse(text)
    assert info.value.message == message


def test_constructor_checks() -> None:
    with pytest.raises(InvalidInput) as info:
        Checkpoint("log", 1, b"short")
    assert info.value.message == "checkpoint.root: root hash must be 32 bytes, got 5"
    with pytest.raises(InvalidInput) as info:
        Checkpoint("log", -1, ROOT)
    assert info.value.message == "checkpoint.size: tree size -1 is not in 0..2**64-1"
    with pytest.raises(InvalidInput) as info:
        Checkpoint("log", 1, ROOT, ("",))
    assert info.value.message == "checkpoint.extensions[0]: must not be empty"
    with pytest.raises(InvalidInput):
        Checkpoint("log\nx", 1, ROOT)


# --- signing and opening -------------------------------------------------------------------


def test_sign_and_open_round_trip() -> None:
    data = sign_checkpoint(CP, LOG)
    assert data.startswith(CP.text() + b"\n\xe2\x80\x94 log.example/encd ")
    assert open_checkpoint(data, LOG.public) == CP


def test_signature_by_wrong_key_fails() -> None:
    data = sign_checkpoint(CP, OTHER_LOG)
    with pytest.raises(VerificationError) as info:
        open_checkpoint(data, LOG.public)
    assert info.value.message == (
        f"checkpoint: note has no signature from a known key (known: {LOG.public.key_id})"
    )


def test_bad_signature_by_the_log_key_fails() -> None:
    data = sign_checkpoint(CP, LOG)
    forged = sign_checkpoint(Checkpoint(CP.origin, 6, CP.root), LOG)
    # the text of one checkpoint with the signature line of another
    spliced = CP.text() + forged[len(Checkpoint(CP.origin, 6, CP.root).text()) :]
    assert spliced != data
    with pytest.raises(VerificationError) as info:
        open_checkpoint(spliced, LOG.public)
    assert info.value.message == f"checkpoint: signature by {LOG.public.key_id} does not verify"


def test_origin_must_be_the_log_key_name() -> None:
    other_origin = Checkpoint("elsewhere.example/log", 5, ROOT)
    with pytest.raises(InvalidInput) as info:
        sign_checkpoint(other_origin, LOG)
    assert info.value.message == (
        "key: log key name 'log.example/encd' must equal the checkpoint origin"
        " 'elsewhere.example/log'"
    )
    # signed anyway (as a plain note) by the log key: the signature verifies, the origin does not
    data = sign_note(other_origin.text(), [LOG])
    with pytest.raises(VerificationError) as failure:
        open_checkpoint(data, LOG.public)
    assert failure.value.message == (
        "checkpoint: origin 'elsewhere.example/log' is not the log key's name 'log.example/encd'"
    )


def test_open_refuses_a_signed_non_checkpoint() -> None:
    data = sign_note(b"log.example/encd\nnot a size\n", [LOG])
    with pytest.raises(InvalidInput) as info:
        open_checkpoint(data, LOG.public)
    assert info.value.field == "checkpoint"


def test_open_ignores_cosignatures() -> None:
    data = sign_checkpoint(CP, LOG) + cosign(CP.text(), W1, 1_700_000_000)
    assert open_checkpoint(data, LOG.public) == CP


# --- cosignatures --------------------------------------------------------------------------


def test_cosigned_message_matches_the_spec_example() -> None:
    assert cosignature_message(SPEC_TEXT, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\n" + SPEC_TEXT
    )


def test_spec_example_cosignature_layout() -> None:
    """The spec's example line is key ID || u64 big-endian timestamp || 64-byte signature."""
    note = parse_note(SPEC_TEXT + b"\n" + SPEC_COSIGNATURE.encode())
    (sig,) = note.signatures
    assert sig.name == "witness.example.com/w1"
    assert len(sig.signature) == 8 + 64
    assert int.from_bytes(sig.signature[:8], "big") == 1679315147  # the time in the spec's message


def test_cosigner_key_id_uses_type_0x04() -> None:
    w1 = CosignerKey.of(W1)
    assert w1.hash != W1.public.hash  # type 0x04, not 0x01
    assert w1.vkey.startswith(f"w1.example+{w1.hash.hex()}+")
    assert base64.b64decode(w1.vkey.split("+", 2)[2])[0] == 0x04
    assert CosignerKey.from_vkey(w1.vkey) == w1
    assert CosignerKey.of(W1.public) == w1


def test_cosigner_vkey_errors() -> None:
    w1 = CosignerKey.of(W1)
    name, _, encoded = w1.vkey.split("+", 2)
    with pytest.raises(InvalidInput) as info:
        CosignerKey.from_vkey(f"{name}+00000000+{encoded}")
    assert info.value.message == (
        f"vkey: key ID 00000000 does not match the key (expected {w1.hash.hex()})"
    )
    with pytest.raises(InvalidInput) as info:
        CosignerKey.from_vkey(
            f"{name}+{w1.hash.hex()}+" + base64.b64encode(b"\x02" + W1.public.raw).decode()
        )
    assert info.value.message == (
        "vkey: key type must be 0x04 (tlog-cosignature/v1 Ed25519) or 0x01 (Ed25519)"
    )
    # a type 0x01 (note signing) vkey names the same cosigner, with its own ID checked
    assert CosignerKey.from_vkey(W1.public.vkey) == w1
    assert w1.vkey != W1.public.vkey and w1.key_id != W1.public.key_id
    with pytest.raises(InvalidInput) as info:
        CosignerKey.from_vkey(W1.public.vkey.replace(W1.public.hash.hex(), w1.hash.hex()))
    assert info.value.message == (
        f"vkey: key ID {w1.hash.hex()} does not match the key (expected {W1.public.hash.hex()})"
    )


def test_cosignature_round_trip() -> None:
    signed = sign_checkpoint(CP, LOG)
    line = cosign(CP.text(), W1, 1_700_000_000)
    assert line.startswith("— w1.example ".encode())
    assert line.endswith(b"\n")
    blob = base64.b64decode(line.split(b" ")[-1])
    assert blob[:4] == CosignerKey.of(W1).hash
    assert int.from_bytes(blob[4:12], "big") == 1_700_000_000
    data = signed + line + cosign(CP.text(), W2, 1_700_000_005)
    witnesses = [CosignerKey.of(W1), CosignerKey.of(W2)]
    assert verify_cosignatures(data, witnesses) == {
        "w1.example": 1_700_000_000,
        "w2.example": 1_700_000_005,
    }
    assert verify_cosignatures(parse_note(data), witnesses[:1]) == {"w1.example": 1_700_000_000}
    assert verify_cosignatures(signed, witnesses) == {}


def test_unknown_cosigners_and_the_log_signature_are_ignored() -> None:
    stranger = SigningKey("w3.example", bytes(range(4, 36)))
    data = sign_checkpoint(CP, LOG) + cosign(CP.text(), stranger, 1) + cosign(CP.text(), W1, 2)
    assert verify_cosignatures(data, [CosignerKey.of(W1)]) == {"w1.example": 2}


def test_an_unknown_cosigner_s_non_canonical_line_is_ignored_a_known_one_s_refused() -> None:
    """signed-note: lines of unknown keys are ignored, however their base64 is spelled
    (Go's note.Open decodes leniently); a known witness's line must be canonical."""
    stranger = SigningKey("w3.example", bytes(range(4, 36)))
    odd = loosened(cosign(CP.text(), stranger, 1))
    data = sign_checkpoint(CP, LOG) + odd + cosign(CP.text(), W1, 2)
    assert open_checkpoint(data, LOG.public) == CP
    assert verify_cosignatures(data, [CosignerKey.of(W1)]) == {"w1.example": 2}
    mine = sign_checkpoint(CP, LOG) + loosened(cosign(CP.text(), W1, 2))
    with pytest.raises(VerificationError) as info:
        verify_cosignatures(mine, [CosignerKey.of(W1)])
    assert info.value.message == (
        f"cosignature by {CosignerKey.of(W1).key_id}: signature is not canonical base64"
    )
    with pytest.raises(VerificationError) as info:
        open_checkpoint(loosened(sign_checkpoint(CP, LOG)), LOG.public)
    assert "not canonical base64" in info.value.message


def test_plain_note_signature_by_a_witness_key_is_not_a_cosignature() -> None:
    # same name and key, but signature type 0x01: another key ID, so ignored
    data = sign_note(CP.text(), [LOG, W1])
    assert verify_cosignatures(data, [CosignerKey.of(W1)]) == {}


def test_latest_timestamp_wins_when_a_witness_cosigns_twice() -> None:
    data = sign_checkpoint(CP, LOG) + cosign(CP.text(), W1, 9) + cosign(CP.text(), W1, 7)
    assert verify_cosignatures(data, [CosignerKey.of(W1)]) == {"w1.example": 9}


def _replace_timestamp(line: bytes, timestamp: int) -> bytes:
    prefix, encoded = line.rstrip(b"\n").rsplit(b" ", 1)
    blob = base64.b64decode(encoded)
    blob = blob[:4] + timestamp.to_bytes(8, "big") + blob[12:]
    return prefix + b" " + base64.b64encode(blob) + b"\n"


def test_tampered_timestamp_fails() -> None:
    line = cosign(CP.text(), W1, 1_700_000_000)
    data = sign_checkpoint(CP, LOG) + _replace_timestamp(line, 1_700_000_001)
    with pytest.raises(VerificationError) as info:
        verify_cosignatures(data, [CosignerKey.of(W1)])
    assert info.value.message == (
        f"cosignature by {CosignerKey.of(W1).key_id} (time 1700000001) does not verify"
    )


def test_cosignature_over_another_checkpoint_fails() -> None:
    line = cosign(Checkpoint(CP.origin, 6, CP.root).text(), W1, 5)
    with pytest.raises(VerificationError):
        verify_cosignatures(sign_checkpoint(CP, LOG) + line, [CosignerKey.of(W1)])


def test_timestamp_beyond_2_63_fails() -> None:
    w1 = CosignerKey.of(W1)
    line = NoteSignature(w1.name, w1.hash, (2**63).to_bytes(8, "big") + bytes(64)).line()
    with pytest.raises(VerificationError) as info:
        verify_cosignatures(sign_checkpoint(CP, LOG) + line.encode(), [w1])
    assert info.value.message == (
        f"cosignature by {w1.key_id}: timestamp 9223372036854775808 is more than 2**63-1"
    )


def test_cosignature_of_wrong_length_fails() -> None:
    w1 = CosignerKey.of(W1)
    line = NoteSignature(w1.name, w1.hash, bytes(64)).line()
    with pytest.raises(VerificationError) as info:
        verify_cosignatures(sign_checkpoint(CP, LOG) + line.encode(), [w1])
    assert info.value.message == (
        f"cosignature by {w1.key_id} is 64 bytes, expected 72 (timestamp and signature)"
    )


def test_cosign_checks_its_inputs() -> None:
    with pytest.raises(InvalidInput) as info:
        cosign(CP.text(), W1, -1)
    assert info.value.message == "timestamp: must be in 0..2**63-1, got -1"
    with pytest.raises(InvalidInput) as info:
        cosign(CP.text(), W1, 2**63)
    assert info.value.message == "timestamp: must be in 0..2**63-1, got 9223372036854775808"
    with pytest.raises(InvalidInput):
        cosign(b"not a checkpoint\n", W1, 1)
    assert cosign(CP.text(), W1, 2**63 - 1)  # the largest allowed
