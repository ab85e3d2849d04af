"""encd.note against the C2SP signed-note example, and every one-bit change of it."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encd.errors import Error, InvalidInput, VerificationError
from encd.keys import PublicKey, SigningKey
from encd.note import NoteSignature, parse_note, sign_note, verify_note


def load_example(vectors_dir: Path) -> tuple[PublicKey, bytes]:
    """The vkey and note from ../shared/vectors/c2sp-signed-note-example.txt."""
    text = (vectors_dir / "c2sp-signed-note-example.txt").read_text(encoding="utf-8")
    vkey = text.split("\n", 1)[0].removeprefix("vkey: ")
    note = text.split("-----BEGIN NOTE-----\n", 1)[1].split("-----END NOTE-----", 1)[0]
    return PublicKey.from_vkey(vkey), note.encode()


@pytest.fixture(scope="module")
def example(vectors_dir: Path) -> tuple[PublicKey, bytes]:
    return load_example(vectors_dir)


KEY_A = SigningKey("a.example/log", bytes(range(32)))
KEY_B = SigningKey("b.example/witness", bytes(range(1, 33)))


def test_example_verifies(example: tuple[PublicKey, bytes]) -> None:
    key, data = example
    note = parse_note(data)
    assert note.text == b"This is an example message.\n"
    assert note.raw == data
    assert [s.key_id for s in note.signatures] == ["example.com/foo+530d903a"]
    assert verify_note(note, [key]) == (key,)


def test_every_one_bit_change_is_refused(example: tuple[PublicKey, bytes]) -> None:
    key, data = example
    for position in range(len(data)):
        for bit in range(8):
            changed = bytearray(data)
            changed[position] ^= 1 << bit
            # parse or verify must raise an encd Error, and nothing else
            with pytest.raises(Error):
                verify_note(parse_note(bytes(changed)), [key])


def test_non_canonical_signature_base64_is_refused(example: tuple[PublicKey, bytes]) -> None:
    # 'M' -> 'O' changes only the unused low bits of the last base64 character;
    # a lenient decoder would still see the same signature.
    _, data = example
    assert data.endswith(b"aQM=\n")
    changed = data[: -len(b"M=\n")] + b"O=\n"
    assert base64.b64decode(changed.split(b" ")[-1]) == base64.b64decode(data.split(b" ")[-1])
    with pytest.raises(InvalidInput) as info:
        parse_note(changed)
    assert info.value.message == "note signature line 1: signature is not canonical base64"


def test_a_lenient_parse_ignores_an_unknown_key_s_non_canonical_line_only(
    example: tuple[PublicKey, bytes],
) -> None:
    """Checkpoints gather other parties' lines, which signed-note says to ignore: a
    non-canonical line is kept by ``strict=False`` and refused only if its key is known."""
    key, data = example
    changed = data[: -len(b"M=\n")] + b"O=\n"  # the example's own line, made non-canonical
    other = NoteSignature("other.example", b"\x01\x02\x03\x04", bytes(64)).line().encode()
    # unknown: another key's line, spelled the lenient way (last character's low bits set)
    odd = other[: -len(b"A=\n")] + b"B=\n"
    assert base64.b64decode(odd.split(b" ")[-1]) == base64.b64decode(other.split(b" ")[-1])
    note = parse_note(data + odd, strict=False)
    assert [s.canonical for s in note.signatures] == [True, False]
    assert verify_note(note, [key]) == (key,)
    # known: refused, naming the key
    with pytest.raises(VerificationError) as info:
        verify_note(parse_note(changed, strict=False), [key])
    assert info.value.message == (
        "the signature by example.com/foo+530d903a: signature is not canonical base64"
    )
    # and a strict parse still refuses either at once
    for strict_refused in (data + odd, changed):
        with pytest.raises(InvalidInput, match="not canonical base64"):
            parse_note(strict_refused)


def test_unknown_keys_are_ignored(example: tuple[PublicKey, bytes]) -> None:
    key, data = example
    other = NoteSignature("other.example", b"\x01\x02\x03\x04", bytes(64)).line().encode()
    note = parse_note(data + other)
    assert len(note.signatures) == 2
    assert verify_note(note, [key, KEY_A.public]) == (key,)


def test_a_note_may_carry_100_signatures_and_no_more() -> None:
    """Go's sumdb/note limit (c2sp.org/signed-note: a note with too many may be refused)."""
    signed = sign_note(b"hello\n", [KEY_A])
    others = [
        NoteSignature(f"witness{i:03}.example", i.to_bytes(4, "big"), bytes(64)).line().encode()
        for i in range(100)
    ]
    note = parse_note(signed + b"".join(others[:99]))
    assert len(note.signatures) == 100
    assert verify_note(note, [KEY_A.public]) == (KEY_A.public,)
    with pytest.raises(InvalidInput) as info:
        parse_note(signed + b"".join(others))
    assert info.value.message == "note: 101 signatures, more than 100"


def test_same_name_other_key_is_ignored(example: tuple[PublicKey, bytes]) -> None:
    key, data = example
    impostor = SigningKey("example.com/foo", bytes(32))
    assert impostor.public.hash != key.hash
    signed = (
        data
        + NoteSignature(
            impostor.name, impostor.public.hash, impostor.sign(b"This is an example message.\n")
        )
        .line()
        .encode()
    )
    assert verify_note(parse_note(signed), [key]) == (key,)
    with pytest.raises(VerificationError) as info:
        verify_note(parse_note(signed), [KEY_A.public])
    assert info.value.message == (
        f"note has no signature from a known key (known: {KEY_A.public.key_id})"
    )


def test_known_key_with_bad_signature_rejects(example: tuple[PublicKey, bytes]) -> None:
    key, data = example
    sig = parse_note(data).signatures[0]
    bad = NoteSignature(sig.name, sig.key_hash, bytes(64)).line().encode()
    text = b"This is an example message.\n\n"
    # a bad signature by a known key rejects the note even beside a good one
    for lines in (bad, bad + sig.line().encode(), sig.line().encode() + bad):
        with pytest.raises(VerificationError) as info:
            verify_note(parse_note(text + lines), [key])
        assert info.value.message == "signature by example.com/foo+530d903a does not verify"


def test_sign_and_verify_round_trip() -> None:
    data = sign_note(b"hello\n\nworld\n", [KEY_A, KEY_B])
    note = parse_note(data)
    assert note.text == b"hello\n\nworld\n"  # the text may hold empty lines
    assert verify_note(note, [KEY_B.public]) == (KEY_B.public,)
    assert verify_note(note, [KEY_A.public, KEY_B.public]) == (KEY_A.public, KEY_B.public)


def test_no_known_key() -> None:
    with pytest.raises(VerificationError) as info:
        verify_note(parse_note(sign_note(b"x\n", [KEY_A])), [])
    assert info.value.message == "note has no signature from a known key (known: none)"


def test_sign_note_needs_a_final_newline() -> None:
    with pytest.raises(InvalidInput) as info:
        sign_note(b"no newline", [KEY_A])
    assert info.value.message == "note text: must end with a newline"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"text only\n", "note: no blank line separating text from signatures"),
        (b"text\n\n", "note: signature block must end with a newline"),
        (
            b"text\n\n- a.example AAAAAAA=\n",
            "note signature line 1: must start with an em dash and a space",
        ),
        (
            "text\n\n— a.example\n".encode(),
            "note signature line 1: expected '— <key name> <base64 signature>'",
        ),
        (
            "text\n\n— a.example !!!!\n".encode(),
            "note signature line 1: signature is not valid base64",
        ),
        (
            "text\n\n— a.example AAAA\n".encode(),
            "note signature line 1: signature is 3 bytes, too short for a key hash",
        ),
        (b"te\rxt\n\n", "note: control character U+000D at position 2"),
        (b"\xff\n\n", "note: not valid UTF-8 at byte 0"),
    ],
)
def test_malformed_notes(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_note(data)
    assert info.value.message == message


@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=30))
def test_control_characters_are_found_as_the_regex_finds_them(text: str) -> None:
    """_check_chars skips its regex when no control byte is there; the answer is the regex's."""
    from encd.note import _CONTROL, _check_chars

    found = _CONTROL.search(text)
    if found is None:
        assert _check_chars(text.encode(), "f") == text
    else:
        with pytest.raises(InvalidInput) as info:
            _check_chars(text.encode(), "f")
        code = ord(found.group())
        assert info.value.reason == f"control character U+{code:04X} at position {found.start()}"
