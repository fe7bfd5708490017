"""Typed errors of the protocol layer: every failure to decode or verify has a stable code."""

from __future__ import annotations

__all__ = [
    "ChainError",
    "DecodeError",
    "ExpiredError",
    "IdentifierError",
    "ProtocolError",
    "RevokedError",
    "SignatureError",
    "UnsupportedVersionError",
    "ValidationError",
    "WrongNetworkError",
]


class ProtocolError(Exception):
    """Root of every error raised by `protocol/`. `code` is stable and safe to show to peers."""

    code = "protocol-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DecodeError(ProtocolError):
    """Bytes that are not a well-formed, canonical encoding of the expected message."""

    code = "decode-error"


class UnsupportedVersionError(DecodeError):
    """A well-formed envelope of a version or kind this node does not speak."""

    code = "unsupported-version"


class ValidationError(ProtocolError):
    """A value that breaks an invariant of its record (bad URI, unknown access status, ...)."""

    code = "invalid-value"


class SignatureError(ProtocolError):
    """A signature that does not verify, or a signer that is not the record's origin."""

    code = "bad-signature"


class IdentifierError(ProtocolError):
    """A persistent identifier that is malformed or whose check character does not match."""

    code = "bad-identifier"


class ChainError(ProtocolError):
    """A certificate chain that does not lead to the network root by the tier rules: a forged or
    missing link, an issuer not allowed to certify its subject, a chain too long."""

    code = "invalid-chain"


class WrongNetworkError(ChainError):
    """A chain, request or record of another network (another root key)."""

    code = "wrong-network"


class RevokedError(ChainError):
    """A chain with a link revoked by its issuer, an issuer above it, or the root."""

    code = "revoked"


class ExpiredError(ChainError):
    """A chain with a link outside its validity period."""

    code = "expired"
