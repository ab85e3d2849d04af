"""encd.keys: Ed25519 against RFC 8032 §7.1, key files, and C2SP verifier keys."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from encd.errors import InvalidInput, VerificationError
from encd.keys import PublicKey, SigningKey, key_hash

# RFC 8032 §7.1 "Test Vectors for Ed25519": (name, SECRET KEY, PUBLIC KEY, MESSAGE, SIGNATURE).
# TEST 1024 is left out: its 1023-byte message could not be taken from the RFC text itself.
RFC8032 = [
    (
        "TEST 1",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "TEST 2",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "TEST 3",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "TEST SHA(abc)",
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
        "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
]
IDS = [v[0] for v in RFC8032]

# The verifier key of the C2SP signed-note example (c2sp.org/signed-note).
EXAMPLE_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_sha_abc_message_is_sha512_of_abc() -> None:
    assert RFC8032[3][3] == hashlib.sha512(b"abc").hexdigest()


@pytest.mark.parametrize(("name", "secret", "public", "message", "signature"), RFC8032, ids=IDS)
def test_rfc8032_signing(name: str, secret: str, public: str, message: str, signature: str) -> None:
    key = SigningKey("rfc8032", bytes.fromhex(secret))
    assert key.public.raw.hex() == public
    assert key.sign(bytes.fromhex(message)).hex() == signature


@pytest.mark.parametrize(("name", "secret", "public", "message", "signature"), RFC8032, ids=IDS)
def test_rfc8032_verifying(
    name: str, secret: str, public: str, message: str, signature: str
) -> None:
    key = PublicKey("rfc8032", bytes.fromhex(public))
    msg, sig = bytes.fromhex(message), bytes.fromhex(signature)
    key.verify(msg, sig)
    for bit in (0, 255, 256, 511):  # R and S, low and high bits
        with pytest.raises(VerificationError) as info:
            key.verify(msg, flip(sig, bit))
        assert info.value.message == f"signature by {key.key_id} does not verify"
    if msg:
        with pytest.raises(VerificationError):
            key.verify(flip(msg, 0), sig)
    with pytest.raises(VerificationError):
        key.verify(msg + b"\x00", sig)


def test_signature_length_is_checked() -> None:
    key = SigningKey("a.example", bytes(32)).public
    with pytest.raises(VerificationError) as info:
        key.verify(b"m", bytes(63))
    assert info.value.message == f"signature by {key.key_id} must be 64 bytes, got 63"


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_wrong_length_public_keys_are_refused(size: int) -> None:
    with pytest.raises(InvalidInput) as info:
        PublicKey("a.example", bytes(size))
    assert info.value.message == f"public key: Ed25519 public key must be 32 bytes, got {size}"


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_wrong_length_seeds_are_refused(size: int) -> None:
    with pytest.raises(InvalidInput) as info:
        SigningKey("a.example", bytes(size))
    assert info.value.message == f"private key: Ed25519 seed must be 32 bytes, got {size}"


@pytest.mark.parametrize("name", ["", "has space", "has+plus", "tab\there", "nl\n"])
def test_bad_key_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        PublicKey(name, bytes(32))


def test_repr_never_shows_the_seed() -> None:
    key = SigningKey("a.example", bytes(range(32)))
    assert bytes(range(32)).hex() not in repr(key)
    assert repr(key) == f"SigningKey({key.public.key_id})"


# --- PEM files -----------------------------------------------------------------------------

SEED = bytes.fromhex(RFC8032[0][1])


def test_pem_round_trip_plain() -> None:
    key = SigningKey("a.example", SEED)
    pem = key.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert SigningKey.from_pem("a.example", pem) == key


def test_pem_round_trip_with_passphrase() -> None:
    key = SigningKey("a.example", SEED)
    pem = key.to_pem(b"correct horse")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert SEED not in pem
    assert SigningKey.from_pem("a.example", pem, b"correct horse") == key


def test_wrong_passphrase() -> None:
    pem = SigningKey("a.example", SEED).to_pem(b"correct horse")
    with pytest.raises(InvalidInput) as info:
        SigningKey.from_pem("a.example", pem, b"battery staple")
    assert info.value.message == (
        "private key: not a PKCS#8 PEM private key, or the passphrase is wrong"
    )


def test_missing_passphrase() -> None:
    pem = SigningKey("a.example", SEED).to_pem(b"correct horse")
    with pytest.raises(InvalidInput) as info:
        SigningKey.from_pem("a.example", pem)
    assert info.value.message == "private key: Password was not given but private key is encrypted"


def test_unexpected_passphrase() -> None:
    pem = SigningKey("a.example", SEED).to_pem()
    with pytest.raises(InvalidInput) as info:
        SigningKey.from_pem("a.example", pem, b"pw")
    assert info.value.field == "private key"
    assert "not encrypted" in info.value.reason


def test_not_pem() -> None:
    with pytest.raises(InvalidInput) as info:
        SigningKey.from_pem("a.example", b"hello")
    assert info.value.field == "private key"


def test_non_ed25519_pem_is_refused() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(InvalidInput) as info:
        SigningKey.from_pem("a.example", pem)
    assert info.value.field == "private key"
    assert info.value.reason.startswith("expected an Ed25519 key, got ")


@pytest.mark.parametrize("passphrase", [None, b"s3cret"])
def test_saved_file_is_private_and_loads(tmp_path: Path, passphrase: bytes | None) -> None:
    key = SigningKey("a.example", SEED)
    path = tmp_path / "key.pem"
    key.save(path, passphrase)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKey.load("a.example", path, passphrase) == key


def test_save_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        SigningKey("a.example", SEED).save(path)
    assert path.read_bytes() == b"precious"


# --- verifier keys -------------------------------------------------------------------------


def test_c2sp_example_vkey() -> None:
    key = PublicKey.from_vkey(EXAMPLE_VKEY)
    assert key.name == "example.com/foo"
    assert key.hash.hex() == "530d903a"
    assert key_hash("example.com/foo", key.raw) == bytes.fromhex("530d903a")
    assert key.vkey == EXAMPLE_VKEY
    assert key.key_id == "example.com/foo+530d903a"


def test_vkey_round_trip() -> None:
    for _, secret, *_ in RFC8032:
        key = SigningKey("log.example/encd", bytes.fromhex(secret)).public
        assert PublicKey.from_vkey(key.vkey) == key


def test_vkey_whose_base64_contains_plus() -> None:
    # base64 uses "+": only the first two "+" separate the parts
    key = PublicKey("log.example/encd", bytes.fromhex(RFC8032[0][2]))
    assert "+" in key.vkey.split("+", 2)[2]
    assert PublicKey.from_vkey(key.vkey) == key


def test_vkey_with_wrong_key_hash_is_refused() -> None:
    name, _, encoded = EXAMPLE_VKEY.split("+")
    with pytest.raises(InvalidInput) as info:
        PublicKey.from_vkey(f"{name}+00000000+{encoded}")
    assert (
        info.value.message == "vkey: key hash 00000000 does not match the key (expected 530d903a)"
    )
    # the same key under another name has another hash
    with pytest.raises(InvalidInput):
        PublicKey.from_vkey(f"example.com/bar+530d903a+{encoded}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("example.com/foo+530d903a", "vkey: expected <name>+<8 hex digits>+<base64 key>"),
        (
            "example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "vkey: key hash must be 8 lowercase hex digits, got '530D903A'",
        ),
        ("example.com/foo+530d903a+!!!!", "vkey: key is not valid base64"),
        (
            "example.com/foo+530d903a+BekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "vkey: key type must be 0x01 (Ed25519)",
        ),
        ("example.com/foo+530d903a+AQAA", "vkey: Ed25519 public key must be 32 bytes, got 2"),
    ],
)
def test_malformed_vkeys(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        PublicKey.from_vkey(text)
    assert info.value.message == message
