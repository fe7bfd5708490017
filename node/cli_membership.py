"""`siku network init|policy`, `siku enroll request|approve|accept|revoke|import` and
`siku peers`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.config import Config, load_config
from node.enrolment import (
    EnrolmentError,
    Issuer,
    approve_request,
    install_chain,
    issued_subject,
    load_chain,
    load_revocations,
    load_root_key,
    make_request,
    make_revocation,
    network_init,
    read_bundle,
    remember_certificates,
    write_file,
)
from node.errors import NodeError
from node.home import with_store
from node.keys import load_admin_token, load_identity
from node.network import NetworkDescription, load_network
from protocol.errors import ProtocolError
from protocol.hlc import Hlc
from protocol.holdings import ReplicationPolicy, decode_policy, sign_policy
from protocol.identity import public_key_bytes
from protocol.membership import (
    KIND_REVOCATION,
    decode_certificate,
    decode_revocation,
    encode_bundle,
)
from protocol.records import decode_envelope, encode_envelope
from storage.store import Store

__all__ = ["add_membership_parsers", "cmd_peers", "daemon_peers"]

MAX_POLICY_FILE_BYTES = 64 * 1024

PEERS_TIMEOUT_SECONDS = 5.0


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _network_of(config: Config) -> NetworkDescription:
    if not config.network_file.exists():
        raise EnrolmentError(
            f"{config.home} belongs to no network: it was initialised without"
            " --network network.toml (re-run `siku init --force --network FILE ...`)"
        )
    return load_network(config.network_file)


# --- network init, policy ---------------------------------------------------------------------


def cmd_network_init(args: argparse.Namespace) -> int:
    out = Path(args.out)
    key_path, desc_path, network = network_init(out, name=args.name, ark_naan=args.ark_naan)
    _out(f"created network {network.name!r} (id {network.id})")
    _out(f"  root key      {key_path} (mode 0600) — keep it offline; it certifies the")
    _out("                national and provincial libraries and signs the network policy")
    _out(f"  description   {desc_path} — give it to every library: siku init --network FILE")
    return 0


# --- enroll -------------------------------------------------------------------------------------


def cmd_network_policy(args: argparse.Namespace) -> int:
    """Sign the network's replication policy with the root key (--root-key, --network), or take
    one signed before (--import FILE); keep it at --home, whose daemon passes it on."""
    config: Config | None
    if args.import_file:
        if not args.home:
            raise EnrolmentError("--import needs --home: the node that keeps and passes it on")
        config = load_config(Path(args.home))
        network = _network_of(config)
        source = Path(args.import_file)
        if source.stat().st_size > MAX_POLICY_FILE_BYTES:
            raise EnrolmentError(f"{source} is too large to be a policy record")
        envelope = source.read_bytes()
    else:
        if not (args.root_key and args.network):
            raise EnrolmentError("signing a policy needs --root-key and --network")
        network = load_network(Path(args.network))
        root = load_root_key(Path(args.root_key), network)
        now = int(time.time() * 1000)
        try:
            policy = ReplicationPolicy(
                network.id,
                Hlc(now),
                args.copies,
                args.higher_in_province,
                args.outside_province,
            )
        except ProtocolError as e:
            raise EnrolmentError(f"policy: {e.message}") from e
        envelope = encode_envelope(sign_policy(policy, root.key))
        config = load_config(Path(args.home)) if args.home else None
    try:
        signed = decode_envelope(envelope)
        policy = decode_policy(signed)
    except ProtocolError as e:
        raise EnrolmentError(f"not a valid policy record: {e.message}") from e
    if signed.signer != network.root_public_key or policy.network != network.id:
        raise EnrolmentError(f"this policy is not signed by the root of network {network.name!r}")
    rules = (
        f"at least {policy.min_copies} copies of every resource, {policy.min_higher_in_province}"
        f" at a higher tier of its province, {policy.min_outside_province} outside it"
    )
    if config is not None:

        async def keep(store: Store) -> bool:
            held = await store.holdings.policy_envelope()
            if held is not None:
                old = decode_policy(decode_envelope(held))
                if (old.version, held) >= (policy.version, envelope):
                    return False
            await store.holdings.put_policy(envelope, policy.version.wall_ms, local=True)
            return True

        if with_store(config, keep):
            _out(f"network policy kept at {config.home}: {rules}")
            _out("  its daemon passes it to every node")
        else:
            _out(f"{config.home} already holds this policy or a newer one: nothing changed")
    if args.out:
        write_file(Path(args.out), envelope)
        _out(f"written {args.out}: keep it at a node with siku network policy --import FILE")
    if config is None and not args.out:
        raise EnrolmentError("say where the policy goes: --home (a node) or --out (a file)")
    return 0


def cmd_enroll_request(args: argparse.Namespace) -> int:
    config = load_config(Path(args.home))
    identity = load_identity(config.key_file)
    signed = make_request(config, identity, _network_of(config))
    data = encode_bundle([signed])
    path = config.home / "membership" / "request.siku"
    write_file(path, data)
    if args.out:
        write_file(Path(args.out), data)
        path = Path(args.out)
    _out(f"enrolment request for {config.name!r} ({config.tier}, region {config.region})")
    _out(f"  node id   {identity.node_id}   (read it to the approving library by phone)")
    _out(f"  written   {path}")
    _out(
        "Give the file to the parent library, which runs: siku enroll approve --home ITS_HOME FILE"
    )
    return 0


def _issuer(args: argparse.Namespace) -> tuple[Issuer, NetworkDescription, Config | None]:
    """The root (with --root-key and --network) or the node at --home."""
    if args.root_key:
        if not args.network:
            raise EnrolmentError("--root-key needs --network network.toml")
        network = load_network(Path(args.network))
        root = load_root_key(Path(args.root_key), network)
        config = load_config(Path(args.home)) if args.home else None
        return Issuer.root(root.key), network, config
    if not args.home:
        raise EnrolmentError("give --home of the issuing node, or --root-key and --network")
    config = load_config(Path(args.home))
    network = _network_of(config)
    identity = load_identity(config.key_file)
    revocations = with_store(config, load_revocations)
    return Issuer.node(config, identity, network, revocations), network, config


def cmd_enroll_approve(args: argparse.Namespace) -> int:
    issuer, network, config = _issuer(args)
    records = read_bundle(Path(args.request))
    if len(records) != 1:
        raise EnrolmentError(f"{args.request} does not hold exactly one enrolment request")
    days = args.days or network.certificate_days
    request, chain = approve_request(records[0], issuer, network, days=days)
    subject = request.subject
    out = Path(args.out) if args.out else Path(f"{subject.node_id}.cert.siku")
    write_file(out, encode_bundle(chain))
    if config is not None:  # the issuing node remembers what it issued (for revocation)
        with_store(config, lambda store: remember_certificates(store, chain[:1]))
    leaf = decode_certificate(chain[0])
    _out(
        f"certified {subject.name!r} ({subject.tier}, region {subject.region}, code {subject.code})"
    )
    _out(f"  node id   {subject.node_id}   (check it with the requesting library)")
    _out(f"  valid     {days} days")
    _out(f"  serial    {leaf.serial.hex()}")
    _out(
        f"  written   {out} — the library installs it with: siku enroll accept --home ITS_HOME FILE"
    )
    return 0


def cmd_enroll_accept(args: argparse.Namespace) -> int:
    config = load_config(Path(args.home))
    identity = load_identity(config.key_file)
    chain = read_bundle(Path(args.cert))
    leaf = asyncio.run(install_chain(config, identity, _network_of(config), chain))
    days = (leaf.not_after_ms - leaf.not_before_ms) // 86_400_000
    _out(
        f"enrolled {leaf.subject.name!r} as a {leaf.subject.tier} member ({len(chain)}-link chain)"
    )
    _out(f"  certificate valid for {days} days; installed at {config.chain_file}")
    _out(f"restart the daemon to use it: siku run --home {config.home}")
    return 0


def cmd_enroll_revoke(args: argparse.Namespace) -> int:
    issuer, network, config = _issuer(args)
    signer = public_key_bytes(issuer.key)
    if args.cert:
        records = read_bundle(Path(args.cert))
        if not records:
            raise EnrolmentError(f"{args.cert} holds no certificate")
        certificate = decode_certificate(records[0])
        chain_issuers = {decode_certificate(r).issuer for r in records}
        if signer != network.root_public_key and signer not in chain_issuers:
            raise EnrolmentError(
                f"this key did not certify {certificate.subject.name} nor any node above it:"
                " its revocation would count nowhere"
            )
        subject = certificate.subject
    elif args.node:
        if config is None:
            raise EnrolmentError("--node needs --home (the node that issued the certificate)")
        found = with_store(config, lambda store: issued_subject(store, signer, args.node))
        if found is None:
            raise EnrolmentError(
                f"no certificate issued by this key to node {args.node} is on record here;"
                " give the certificate file with --cert"
            )
        subject = found
    else:
        raise EnrolmentError("say which node to revoke: --node NODE_ID or --cert FILE")
    revocation, signed = make_revocation(issuer.key, network, subject.public_key, args.reason or "")
    envelope = encode_envelope(signed)
    if config is not None:
        with_store(
            config,
            lambda store: store.membership.put(
                KIND_REVOCATION, subject.public_key, signed.signer, envelope, revocation.revoked_ms
            ),
        )
    if args.out:
        write_file(Path(args.out), encode_bundle([signed]))
    _out(f"revoked {subject.name!r} ({subject.node_id}) and every certificate it issued")
    if config is not None:
        _out(f"  kept in {config.home}: its daemon passes it to every peer it talks to")
    if args.out:
        _out(f"  written {args.out}: import it at any node with siku enroll import")
    return 0


def cmd_enroll_import(args: argparse.Namespace) -> int:
    config = load_config(Path(args.home))
    network = _network_of(config)
    records = read_bundle(Path(args.file))
    revocations = []
    for signed in records:
        try:
            revocation = decode_revocation(signed)
        except ProtocolError as e:
            raise EnrolmentError(f"{args.file}: not a valid revocation: {e.message}") from e
        if revocation.network != network.id:
            raise EnrolmentError(f"{args.file}: a revocation of another network")
        revocations.append((revocation, signed))

    async def put_all(store: Store) -> int:
        added = 0
        for revocation, signed in revocations:
            added += await store.membership.put(
                KIND_REVOCATION,
                revocation.subject,
                signed.signer,
                encode_envelope(signed),
                revocation.revoked_ms,
            )
        return added

    count = with_store(config, put_all)
    _out(f"imported {count} new revocation(s) of {len(records)} in {args.file}")
    return 0


def cmd_enroll_show(args: argparse.Namespace) -> int:
    config = load_config(Path(args.home))
    chain = load_chain(config)
    if not chain:
        _out("not enrolled: siku enroll request, then accept the certificate")
        return 0
    for signed in chain:
        cert = decode_certificate(signed)
        s = cert.subject
        _out(f"{s.name} ({s.tier}, {s.region}, code {s.code}) {s.node_id}")
    return 0


# --- peers --------------------------------------------------------------------------------------


async def daemon_peers(config: Config) -> list[dict[str, Any]] | None:
    import aiohttp

    token = load_admin_token(config.token_file)
    url = config.admin_listen.url() + "/admin/api/v1/peers"
    timeout = aiohttp.ClientTimeout(total=PEERS_TIMEOUT_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp,
        ):
            if resp.status != 200:
                raise NodeError(f"the daemon answered {resp.status} at {url}")
            data: dict[str, Any] = await resp.json()
            peers: list[dict[str, Any]] = data["peers"]
            return peers
    except (aiohttp.ClientConnectionError, TimeoutError):
        return None


def cmd_peers(args: argparse.Namespace) -> int:
    config = load_config(Path(args.home))
    peers = asyncio.run(daemon_peers(config))
    live = peers is not None
    if peers is None:
        rows = with_store(config, lambda store: store.membership.load_peers())
        peers = [
            {
                "url": r.url,
                "node_id": r.node_id,
                "name": r.name,
                "tier": r.tier,
                "region": r.region,
                "source": r.source,
                "state": r.state,
                "last_seen_ms": r.last_seen_ms,
                "rtt_ms": r.rtt_ms,
                "failures": r.failures,
                "last_error": r.last_error,
            }
            for r in rows
        ]
    if args.json:
        sys.stdout.write(
            json.dumps({"live": live, "peers": peers}, ensure_ascii=False, indent=2) + "\n"
        )
        return 0
    if not live:
        _out("(daemon not running: the peer table as last saved)")
    peers = [p for p in peers if p["state"] != "self"]  # our own address, seen via others
    if not peers:
        _out("no peers known")
        return 0
    _out(f"{'STATE':<11} {'TIER':<10} {'RTT':>7} {'FAIL':>4}  {_fit('NAME', 32)} URL")
    for p in peers:
        rtt = f"{p['rtt_ms']:.1f}ms" if p.get("rtt_ms") is not None else "-"
        _out(
            f"{p['state']:<11} {p.get('tier') or '?':<10} {rtt:>7} {p['failures']:>4}"
            f"  {_fit(p.get('name') or '?', 32)} {p['url']}"
        )
        if p["state"] != "connected" and p.get("last_error"):
            _out(f"{'':<11} {p['last_error']}")
    return 0


def _fit(text: str, width: int) -> str:
    """`text` cut and padded to `width` terminal columns (CJK characters take two)."""
    out, used = "", 0
    for ch in text:
        w = 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        if used + w > width:
            break
        out, used = out + ch, used + w
    return out + " " * (width - used)


# --- parsers ------------------------------------------------------------------------------------


def add_membership_parsers(sub: Any, home: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("network", help="make a new library network (root key, network.toml)")
    nsub = p.add_subparsers(dest="network_command", required=True, metavar="COMMAND")
    q = nsub.add_parser("init", help="create the network root key and network.toml")
    q.add_argument("--out", required=True, help="folder for root.key and network.toml")
    q.add_argument("--name", required=True, help="network name")
    q.add_argument(
        "--ark-naan", default="99999", help="the network's ARK NAAN (default 99999, test)"
    )
    q.set_defaults(fn=cmd_network_init)
    q = nsub.add_parser("policy", help="sign the network's replication policy (root key)")
    q.add_argument("--root-key", help="the network root key")
    q.add_argument("--network", help="network.toml, with --root-key")
    q.add_argument("--copies", type=int, default=3, help="copies of every resource (3)")
    q.add_argument(
        "--higher-in-province", type=int, default=1, help="copies at a higher tier, same province"
    )
    q.add_argument("--outside-province", type=int, default=1, help="copies in another province")
    q.add_argument("--home", help="node that keeps the policy and passes it on")
    q.add_argument("--out", help="also write the signed policy to this file")
    q.add_argument("--import", dest="import_file", help="keep a policy signed earlier (file)")
    q.set_defaults(fn=cmd_network_policy)

    p = sub.add_parser("enroll", help="join the network: request, approve, accept, revoke")
    esub = p.add_subparsers(dest="enroll_command", required=True, metavar="COMMAND")
    q = esub.add_parser("request", help="write this node's signed enrolment request")
    home(q)
    q.add_argument("--out", help="also write the request here")
    q.set_defaults(fn=cmd_enroll_request)

    def issuer(q: argparse.ArgumentParser) -> None:
        q.add_argument("--home", help="home of the issuing node (provincial or municipal)")
        q.add_argument("--root-key", help="the network root key (certifies national, provincial)")
        q.add_argument("--network", help="network.toml, with --root-key")

    q = esub.add_parser("approve", help="issue a certificate for a request from a child library")
    issuer(q)
    q.add_argument("request", metavar="REQUEST")
    q.add_argument("--days", type=int, help="validity in days (default: network.toml's)")
    q.add_argument("--out", help="certificate file to write (default NODE_ID.cert.siku)")
    q.set_defaults(fn=cmd_enroll_approve)

    q = esub.add_parser("accept", help="install the certificate the parent library issued")
    home(q)
    q.add_argument("cert", metavar="CERT")
    q.set_defaults(fn=cmd_enroll_accept)

    q = esub.add_parser("revoke", help="revoke a node this home (or the root) certified")
    issuer(q)
    q.add_argument("--node", help="node id of the node to revoke")
    q.add_argument("--cert", help="or: the node's certificate file")
    q.add_argument("--reason", help="short reason, kept in the revocation")
    q.add_argument("--out", help="also write the revocation to this file")
    q.set_defaults(fn=cmd_enroll_revoke)

    q = esub.add_parser("import", help="import revocations from a file")
    home(q)
    q.add_argument("file", metavar="FILE")
    q.set_defaults(fn=cmd_enroll_import)

    q = esub.add_parser("show", help="show this node's certificate chain")
    home(q)
    q.set_defaults(fn=cmd_enroll_show)

    p = sub.add_parser("peers", help="the peer table: state, last seen, round-trip, failures")
    home(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_peers)
