"""The node's secrets on disk: its Ed25519 identity and the admin token, both mode 0600."""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.errors import HomeError
from protocol.identity import node_id, public_key_bytes

__all__ = ["Identity", "create_admin_token", "create_identity", "load_admin_token", "load_identity"]


@dataclass(frozen=True)
class Identity:
    key: Ed25519PrivateKey
    public_key: bytes
    node_id: str


def _write_secret(path: Path, data: bytes, *, force: bool) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    # Created 0600 from the start: the secret is never readable by others, even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if path.exists() and not force:
        tmp.unlink()
        raise HomeError(f"{path} already exists")
    os.replace(tmp, path)


def _read_secret(path: Path) -> bytes:
    try:
        st = path.stat()
    except FileNotFoundError as e:
        raise HomeError(f"{path} is missing: was this home made by `siku init`?") from e
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise HomeError(f"{path} is readable by others: run `chmod 600 {path}`")
    return path.read_bytes()


def create_identity(path: Path, *, force: bool = False) -> Identity:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_secret(path, pem, force=force)
    return _identity(key)


def load_identity(path: Path) -> Identity:
    try:
        key = serialization.load_pem_private_key(_read_secret(path), password=None)
    except ValueError as e:
        raise HomeError(f"{path} is not a PEM Ed25519 private key") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise HomeError(f"{path} is not an Ed25519 key")
    return _identity(key)


def _identity(key: Ed25519PrivateKey) -> Identity:
    pub = public_key_bytes(key)
    return Identity(key, pub, node_id(pub))


def create_admin_token(path: Path, *, force: bool = False) -> str:
    token = secrets.token_urlsafe(32)
    _write_secret(path, token.encode("ascii") + b"\n", force=force)
    return token


def load_admin_token(path: Path) -> str:
    token = _read_secret(path).decode("ascii", "replace").strip()
    if len(token) < 32:
        raise HomeError(f"{path} does not hold an admin token")
    return token
