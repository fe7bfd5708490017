"""Node identity: Ed25519 signing and verification, and the node id derived from a public key."""

from __future__ import annotations

import base64
import functools
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.errors import SignatureError, ValidationError

__all__ = [
    "PUBLIC_KEY_BYTES",
    "SIGNATURE_BYTES",
    "node_id",
    "private_key_from_bytes",
    "private_key_to_bytes",
    "public_key_bytes",
    "sign",
    "verify",
]

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


@functools.lru_cache(maxsize=4096)  # peers are looked up by id on every request
def node_id(public_key: bytes) -> str:
    """Stable, printable id of a node: base32 of the first 20 bytes of SHA-256(public key)."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValidationError("an Ed25519 public key is 32 bytes")
    digest = hashlib.sha256(public_key).digest()[:20]
    return base64.b32encode(digest).decode("ascii").lower()


@functools.lru_cache(maxsize=16)  # a node signs with one key, often: serialising costs ~10 µs
def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def private_key_to_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def private_key_from_bytes(raw: bytes) -> Ed25519PrivateKey:
    if len(raw) != 32:
        raise ValidationError("an Ed25519 private key is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    return key.sign(message)


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise SignatureError unless `signature` is `public_key`'s signature of `message`."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        raise SignatureError("malformed key or signature")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError) as e:
        raise SignatureError("signature does not verify") from e
