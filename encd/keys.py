"""Ed25519 keys: generation, PKCS#8 PEM files, C2SP verifier keys and key ids.

A key belongs to a *name* (for a party, its party id; for the log, its
origin).  Following C2SP signed-note, the pair (name, key hash) identifies a
key, where the key hash is the first four bytes of
SHA-256(name || 0x0A || 0x01 || public key).  encd writes a key id as
``<name>+<key hash as 8 hex digits>``; a verifier key is the C2SP text
``<name>+<key hash hex>+<base64(0x01 || public key)>``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InternalError, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from encd.errors import InvalidInput, VerificationError

ED25519 = 0x01
PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
SIGNATURE_SIZE = 64

# C2SP signed-note: key names are non-empty, with no Unicode spaces and no "+"; nor controls.
_NAME_FORBIDDEN = re.compile(r"[\s+\x00-\x1f\x7f]")


def check_key_name(name: str, field: str = "name") -> str:
    if not name:
        raise InvalidInput(field, "key name must not be empty")
    if _NAME_FORBIDDEN.search(name):
        raise InvalidInput(field, f"key name {name!r} must not contain spaces, '+' or controls")
    return name


def key_hash(name: str, public_key: bytes, sig_type: int = ED25519) -> bytes:
    """The 4-byte C2SP key hash of ``public_key`` under ``name``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def _check_public(public_key: bytes, field: str) -> bytes:
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidInput(
            field,
            f"Ed25519 public key must be {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}",
        )
    return public_key


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key under a name."""

    name: str
    raw: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        _check_public(self.raw, "public key")

    @property
    def hash(self) -> bytes:
        return key_hash(self.name, self.raw)

    @property
    def key_id(self) -> str:
        return f"{self.name}+{self.hash.hex()}"

    @property
    def vkey(self) -> str:
        """The C2SP signed-note verifier key text."""
        encoded = base64.b64encode(bytes([ED25519]) + self.raw).decode()
        return f"{self.name}+{self.hash.hex()}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise VerificationError unless ``signature`` is this key's over ``message``."""
        if len(signature) != SIGNATURE_SIZE:
            raise VerificationError(
                f"signature by {self.key_id} must be {SIGNATURE_SIZE} bytes, got {len(signature)}"
            )
        try:
            nacl.signing.VerifyKey(self.raw).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
            raise VerificationError(f"signature by {self.key_id} does not verify") from None

    @classmethod
    def from_vkey(cls, text: str) -> PublicKey:
        """Parse a C2SP verifier key ``name+hash+base64(0x01||key)``; checks the hash."""
        text = text.strip()
        parts = text.split("+", 2)  # the base64 key may itself contain "+"
        if len(parts) != 3:
            raise InvalidInput("vkey", "expected <name>+<8 hex digits>+<base64 key>")
        name, hash_hex, encoded = parts
        check_key_name(name, "vkey")
        if not re.fullmatch(r"[0-9a-f]{8}", hash_hex):
            raise InvalidInput("vkey", f"key hash must be 8 lowercase hex digits, got {hash_hex!r}")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            raise InvalidInput("vkey", "key is not valid base64") from None
        if not blob or blob[0] != ED25519:
            raise InvalidInput("vkey", "key type must be 0x01 (Ed25519)")
        key = cls(name, _check_public(blob[1:], "vkey"))
        if key.hash.hex() != hash_hex:
            raise InvalidInput(
                "vkey", f"key hash {hash_hex} does not match the key (expected {key.hash.hex()})"
            )
        return key


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 private key under a name.  Never leaves the client that made it."""

    name: str
    seed: bytes
    # derived once: making the key pair from the seed costs as much as a signature
    _signer: nacl.signing.SigningKey = field(init=False, repr=False, compare=False)
    _public: PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.seed) != SEED_SIZE:
            raise InvalidInput(
                "private key", f"Ed25519 seed must be {SEED_SIZE} bytes, got {len(self.seed)}"
            )
        signer = nacl.signing.SigningKey(self.seed)
        object.__setattr__(self, "_signer", signer)
        object.__setattr__(self, "_public", PublicKey(self.name, bytes(signer.verify_key)))

    def __repr__(self) -> str:  # never print the seed
        return f"SigningKey({self.public.key_id})"

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        return cls(name, bytes(nacl.signing.SigningKey.generate()))

    @property
    def public(self) -> PublicKey:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return bytes(self._signer.sign(message).signature)

    def to_pem(self, passphrase: bytes | None = None) -> bytes:
        """PKCS#8 PEM; encrypted with the best available scheme when a passphrase is given."""
        private = Ed25519PrivateKey.from_private_bytes(self.seed)
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    @classmethod
    def from_pem(cls, name: str, data: bytes, passphrase: bytes | None = None) -> SigningKey:
        try:
            private = serialization.load_pem_private_key(data, password=passphrase)
        except TypeError as exc:
            # cryptography says whether a passphrase was missing or unexpected
            raise InvalidInput("private key", str(exc)) from None
        except ValueError:
            wrong = ", or the passphrase is wrong" if passphrase is not None else ""
            raise InvalidInput("private key", f"not a PKCS#8 PEM private key{wrong}") from None
        except (UnsupportedAlgorithm, InternalError):
            # an algorithm identifier OpenSSL does not know, or one whose key it cannot set up
            # (an Ed448 identifier over an Ed25519 seed, say)
            raise InvalidInput(
                "private key", "not an Ed25519 key (its algorithm is one encd does not know)"
            ) from None
        if not isinstance(private, Ed25519PrivateKey):
            raise InvalidInput(
                "private key", f"expected an Ed25519 key, got {type(private).__name__}"
            )
        seed = private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return cls(name, seed)

    def save(self, path: Path, passphrase: bytes | None = None) -> None:
        """Write the PEM file readable by its owner only (mode 0600), never overwriting."""
        data = self.to_pem(passphrase)
        with open(path, "xb", opener=lambda p, flags: _open_private(p, flags)) as handle:
            try:
                handle.write(data)
                handle.flush()
            except BaseException:  # a full disk, say: no empty key file left to block a retry
                path.unlink(missing_ok=True)
                raise

    @classmethod
    def load(cls, name: str, path: Path, passphrase: bytes | None = None) -> SigningKey:
        return cls.from_pem(name, path.read_bytes(), passphrase)


def _open_private(path: str, flags: int) -> int:
    import os

    return os.open(path, flags, 0o600)
