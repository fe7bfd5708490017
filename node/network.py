"""network.toml: the public description of a library network (name, identifier prefix, root key,
default replication policy), made by `siku network init` and copied into every node's home."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.config import read_toml
from node.errors import ConfigError
from protocol import ark
from protocol.errors import IdentifierError
from protocol.membership import network_id

__all__ = [
    "NETWORK_FILE",
    "NetworkDescription",
    "ReplicationPolicy",
    "load_network",
    "render_network",
]

NETWORK_FILE = "network.toml"
MAX_NETWORK_BYTES = 64 * 1024
MAX_AUTHORITIES = 64
_NODE_ID = re.compile(r"[a-z2-7]{32}")


@dataclass(frozen=True)
class ReplicationPolicy:
    """The network's default replication rule (signed policy records replace it later)."""

    min_copies: int = 3
    min_higher_tier_in_province: int = 1
    min_outside_province: int = 1


@dataclass(frozen=True)
class NetworkDescription:
    name: str
    ark_naan: str
    root_public_key: bytes
    certificate_days: int
    policy: ReplicationPolicy
    # Node ids that may sign new versions of any library's catalogue records.
    catalogue_authorities: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return network_id(self.root_public_key)


def _get(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if value is None:
        raise ConfigError(f"{where}: {key} is missing")
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"{where}: {key} must be {kind.__name__}")
    return value


def load_network(path: Path) -> NetworkDescription:
    data = read_toml(path, MAX_NETWORK_BYTES, "it is made by `siku network init`")
    net, policy, enrol = (data.get(t, {}) for t in ("network", "policy", "enrolment"))
    if not all(isinstance(t, dict) for t in (net, policy, enrol)):
        raise ConfigError(f"{path}: [network], [policy] and [enrolment] must be tables")
    where = f"{path} [network]"
    name = _get(net, "name", str, where)
    if not name.strip() or len(name) > 200 or not name.isprintable():
        raise ConfigError(f"{where}: name must be 1 to 200 printable characters")
    naan = _get(net, "ark_naan", str, where)
    try:
        ark.validate_naan(naan)
    except IdentifierError as e:
        raise ConfigError(f"{where}: ark_naan: {e.message}") from e
    try:
        root = bytes.fromhex(_get(net, "root_public_key", str, where))
    except ValueError as e:
        raise ConfigError(f"{where}: root_public_key must be hex") from e
    if len(root) != 32:
        raise ConfigError(f"{where}: root_public_key must be 32 bytes (64 hex digits)")
    given_id = net.get("id")
    if given_id is not None and given_id != network_id(root):
        raise ConfigError(f"{where}: id does not match root_public_key (file edited?)")
    numbers = {}
    for key in ("min_copies", "min_higher_tier_in_province", "min_outside_province"):
        value = policy.get(key, getattr(ReplicationPolicy, key))
        if isinstance(value, bool) or not isinstance(value, int) or not (0 <= value <= 16):
            raise ConfigError(f"{path} [policy]: {key} must be an integer from 0 to 16")
        numbers[key] = value
    authorities = policy.get("catalogue_authorities", [])
    if (
        not isinstance(authorities, list)
        or len(authorities) > MAX_AUTHORITIES
        or not all(isinstance(a, str) and _NODE_ID.fullmatch(a) for a in authorities)
    ):
        raise ConfigError(
            f"{path} [policy]: catalogue_authorities must be a list of at most"
            f" {MAX_AUTHORITIES} node ids (as `siku status` shows them)"
        )
    days = enrol.get("certificate_days", 730)
    if isinstance(days, bool) or not isinstance(days, int) or not (1 <= days <= 3650):
        raise ConfigError(f"{path} [enrolment]: certificate_days must be 1 to 3650")
    return NetworkDescription(
        name, naan, root, days, ReplicationPolicy(**numbers), tuple(authorities)
    )


def render_network(*, name: str, ark_naan: str, root_public_key: bytes) -> str:
    policy = ReplicationPolicy()
    return f"""\
# siku network description. Public: give this file to every library of the network, which
# passes it to `siku init --network network.toml`. Do not edit [network] after nodes enrol.

[network]
# Name of the library network.
name = {json.dumps(name, ensure_ascii=False)}
# ARK Name Assigning Authority Number: the prefix of every persistent identifier in the network.
ark_naan = {json.dumps(ark_naan)}
# The network root public key (Ed25519, hex). Its private key stays offline at the national
# library; a node is admitted only with a certificate chain that ends at this key.
root_public_key = "{root_public_key.hex()}"
# Derived from root_public_key; checked when the file is read.
id = "{network_id(root_public_key)}"

[policy]
# Default replication policy: copies of every resource the network keeps,
min_copies = {policy.min_copies}
# of which at a higher tier of the resource's own province,
min_higher_tier_in_province = {policy.min_higher_tier_in_province}
# and outside its province.
min_outside_province = {policy.min_outside_province}
# Nodes (their node ids) that may correct any library's catalogue records, e.g. a national
# cataloguing centre: ["b553p3lj2lrskpivmp6vor5bamznmizm"]. Each library alone edits its own.
catalogue_authorities = []

[enrolment]
# How long certificates issued with `siku enroll approve` are valid, in days (1 to 3650).
certificate_days = 730
"""
