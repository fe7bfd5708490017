"""A network of member keys and certificates in memory, and catalogue records signed by them:
what the sync unit tests, the simulator (tests/sim) and the sync benchmarks build on."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import ark
from protocol.hlc import Hlc, tick
from protocol.membership import network_id
from protocol.records import (
    CatalogueRecord,
    LangString,
    encode_envelope,
    sign_catalogue,
)
from tests.peer_helpers import Member, certify, now_ms

__all__ = ["NAAN", "Library", "TestNetwork", "catalogue_record", "deletion"]

NAAN = "13030"


@dataclass
class Library:
    """One member: its key, chain (leaf first), library code, tier, and its parent's index."""

    member: Member
    code: str
    tier: str
    region: str
    parent: int | None
    clock: Hlc = field(default_factory=lambda: Hlc(0))

    @property
    def public_key(self) -> bytes:
        return self.member.public_key

    @property
    def node_id(self) -> str:
        return self.member.node_id

    def next_version(self, now: int) -> Hlc:
        self.clock = tick(self.clock, now)
        return self.clock


def _key(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest())


@dataclass
class TestNetwork:
    """Root, then libraries in tier order; `libraries[i].parent` is the index of its parent in
    the gossip tree (the national library for provincial ones)."""

    __test__ = False  # not a pytest test class, despite its name

    root: Member
    libraries: list[Library] = field(default_factory=list)

    @property
    def network(self) -> str:
        return network_id(self.root.public_key)

    @classmethod
    def build(
        cls,
        provinces: int = 1,
        municipal_per_province: int = 1,
        county_per_municipal: int = 1,
        *,
        seed: int = 0,
        not_before_ms: int | None = None,
    ) -> TestNetwork:
        """National + provinces + municipal + county libraries, deterministic keys."""
        start = now_ms() - 3_600_000 if not_before_ms is None else not_before_ms
        root = Member(_key(b"root%d" % seed), ())
        net = cls(root)
        nid = net.network

        def add(
            issuer: Member, name: str, code: str, tier: str, region: str, parent: int | None
        ) -> int:
            key = _key(f"{seed}/{name}".encode())
            member = certify(
                issuer, key, nid, name=name, code=code, tier=tier, region=region,
                not_before_ms=start, not_after_ms=start + 3650 * 86_400_000,
            )  # fmt: skip
            net.libraries.append(Library(member, code, tier, region, parent))
            return len(net.libraries) - 1

        national = add(root, "national", "zg", "national", "000000", None)
        for p in range(provinces):
            prov_region = f"{11 + p:02d}0000"
            prov = add(root, f"p{p}", f"p{_code(p)}", "provincial", prov_region, national)
            prov_member = net.libraries[prov].member
            for m in range(municipal_per_province):
                muni_region = f"{11 + p:02d}{1 + m:02d}00"
                muni = add(
                    prov_member, f"p{p}m{m}", f"m{_code(p)}{_code(m)}", "municipal",
                    muni_region, prov,
                )  # fmt: skip
                muni_member = net.libraries[muni].member
                for c in range(county_per_municipal):
                    add(
                        muni_member, f"p{p}m{m}c{c}", f"c{_code(p)}{_code(m)}{_code(c)}",
                        "county", f"{11 + p:02d}{1 + m:02d}{1 + c:02d}", muni,
                    )  # fmt: skip
        return net

    def certificates(self, index: int) -> list[bytes]:
        """Envelopes of library `index`'s chain (what it publishes about itself)."""
        return [encode_envelope(c) for c in self.libraries[index].member.chain]

    def all_certificates(self) -> list[bytes]:
        return list(
            dict.fromkeys(e for i in range(len(self.libraries)) for e in self.certificates(i))
        )

    def children(self, index: int) -> list[int]:
        return [i for i, lib in enumerate(self.libraries) if lib.parent == index]


def _code(n: int) -> str:
    """Two characters of the ARK alphabet for n < 841."""
    return ark.ALPHABET[n // len(ark.ALPHABET)] + ark.ALPHABET[n % len(ark.ALPHABET)]


def catalogue_record(
    lib: Library,
    now: int,
    *,
    title: str = "县志",
    rng: random.Random | None = None,
    pid: str | None = None,
) -> bytes:
    """A signed catalogue record of `lib` (a new pid unless given), as an envelope."""
    r = rng or random.Random()
    pid = pid or str(ark.mint(NAAN, lib.code, r.randbytes(8)))
    record = CatalogueRecord(
        pid=pid,
        origin=lib.public_key,
        version=lib.next_version(now),
        dc={"title": (LangString(title, "zh"),)},
    )
    return encode_envelope(sign_catalogue(record, lib.member.key))


def deletion(lib: Library, pid: str, now: int) -> bytes:
    record = CatalogueRecord(
        pid=pid, origin=lib.public_key, version=lib.next_version(now), deleted=True
    )
    return encode_envelope(sign_catalogue(record, lib.member.key))
