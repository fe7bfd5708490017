"""node.toml → frozen settings, parsed once at the edge; every error names the key to fix."""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from node.errors import ConfigError
from protocol import ark
from protocol.errors import IdentifierError, ValidationError
from protocol.membership import region_tier
from protocol.peering import validate_peer_url
from protocol.records import validate_collection
from storage.store import StoreSettings
from sync.windows import Window

__all__ = [
    "CONFIG_FILE",
    "TIERS",
    "Config",
    "HostPort",
    "load_config",
    "parse_host_port",
    "read_toml",
    "render_config",
]

CONFIG_FILE = "node.toml"
MAX_CONFIG_BYTES = 256 * 1024
TIERS = ("national", "provincial", "municipal", "county")
LOG_LEVELS = ("debug", "info", "warning", "error")
GIB = 1 << 30


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        host = "[::1]" if host == "::" else (f"[{host}]" if ":" in host else host)
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class ReplicationConfig:
    """[replication]: what this node keeps for the network, and when it may move it."""

    enabled: bool = True
    interval_seconds: int = 60  # between planning rounds
    subscribe: tuple[str, ...] = ()  # collections taken from libraries above this one
    cache_bytes: int = 64 * GIB  # on-demand cache for readers, within the quota
    bandwidth_bytes_per_s: int = 0  # background transfers; 0: unlimited
    windows: tuple[str, ...] = ()  # "HH:MM-HH:MM" local time for background transfers; (): any
    max_transfers: int = 4  # resources fetched at once


_WINDOW = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)")


@dataclass(frozen=True)
class Config:
    home: Path
    name: str
    code: str
    tier: str
    region: str
    parent: str
    public_url: str
    peers: tuple[str, ...]
    hello_interval_seconds: int
    max_peers: int
    sync_interval_seconds: int
    network_name: str
    ark_naan: str
    listen: HostPort
    admin_listen: HostPort
    admin_allow_remote: bool
    max_body_bytes: int
    quota_bytes: int
    zeroconf: bool
    log_level: str
    replication: ReplicationConfig = ReplicationConfig()

    @property
    def key_file(self) -> Path:
        return self.home / "keys" / "node.key"

    @property
    def token_file(self) -> Path:
        return self.home / "keys" / "admin.token"

    @property
    def network_file(self) -> Path:
        return self.home / "network.toml"

    @property
    def chain_file(self) -> Path:
        """This node's certificate with the chain above it, installed by `siku enroll accept`."""
        return self.home / "membership" / "chain.siku"

    @property
    def store(self) -> StoreSettings:
        return StoreSettings(root=self.home / "store", quota_bytes=self.quota_bytes)


def parse_host_port(value: str, key: str) -> HostPort:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not (0 < int(port) < 65536) or not host:
        raise ConfigError(f"{key}: {value!r} must be HOST:PORT, e.g. 127.0.0.1:8470")
    return HostPort(host, int(port))


def _check_parent(url: str) -> str:
    if not url:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"node.parent: {url!r} must be an http(s) URL of the parent library")
    return url


class _Table:
    """Typed access to one TOML table that remembers which keys were read."""

    def __init__(self, data: dict[str, Any], name: str) -> None:
        self.data, self.name, self.seen = data, name, set[str]()

    def get(self, key: str, kind: type, default: Any = None) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is None:
                raise ConfigError(f"{self.name}.{key} is missing")
            return default
        value = self.data[key]
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise ConfigError(f"{self.name}.{key} must be {kind.__name__}, not {value!r}")
        return value

    def finish(self) -> None:
        extra = set(self.data) - self.seen
        if extra:
            raise ConfigError(f"unknown key {self.name}.{sorted(extra)[0]} in node.toml")


def read_toml(path: Path, max_bytes: int, missing: str) -> dict[str, Any]:
    """A bounded UTF-8 TOML file as a dict; every failure a ConfigError naming the file
    (`missing` says what to do when it does not exist)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise ConfigError(f"{path} not found: {missing}") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    if len(raw) > max_bytes:
        raise ConfigError(f"{path} is larger than {max_bytes} bytes")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from e


def load_config(home: Path) -> Config:
    data = read_toml(home / CONFIG_FILE, MAX_CONFIG_BYTES, f"run `siku init --home {home}` first")
    return parse_config(data, home.resolve())


def parse_config(data: dict[str, Any], home: Path) -> Config:
    tables = {}
    names = ("node", "network", "http", "peers", "sync", "storage", "discovery", "log")
    for name in (*names, "replication"):
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] must be a table")
        tables[name] = _Table(value, name)
    extra = set(data) - set(tables)
    if extra:
        raise ConfigError(f"unknown table [{sorted(extra)[0]}] in node.toml")
    n, net, http, peers_table, sync_table, st, disc, lg, rep = tables.values()

    name = n.get("name", str).strip()
    if not name or len(name) > 200 or not name.isprintable():
        raise ConfigError("node.name must be 1 to 200 printable characters on one line")
    tier = n.get("tier", str)
    if tier not in TIERS:
        raise ConfigError(f"node.tier must be one of {', '.join(TIERS)}, not {tier!r}")
    try:
        code = n.get("code", str)
        naan = net.get("ark_naan", str, "99999")
        ark.validate_prefix(naan, code)
    except IdentifierError as e:
        raise ConfigError(f"node.code / network.ark_naan: {e.message}") from e
    parent = _check_parent(n.get("parent", str, ""))
    region = n.get("region", str, "")
    if region:
        try:
            if region_tier(region) != tier:
                raise ConfigError(
                    f"node.region {region} is a {region_tier(region)} code, not {tier}"
                )
        except ValidationError as e:
            raise ConfigError(f"node.region: {e.message}") from e
    listen = parse_host_port(http.get("listen", str, "127.0.0.1:8470"), "http.listen")
    public_url = http.get("public_url", str, "") or listen.url()
    try:
        public_url = validate_peer_url(public_url)
        static = peers_table.get("urls", list, [])
        if len(static) > 64 or not all(isinstance(u, str) for u in static):
            raise ConfigError("peers.urls must be a list of at most 64 URLs")
        static_peers = tuple(validate_peer_url(u) for u in static)
        if parent:
            parent = validate_peer_url(parent)
    except ValidationError as e:
        raise ConfigError(f"http.public_url / peers.urls / node.parent: {e.message}") from e
    hello_interval = peers_table.get("hello_interval_seconds", int, 30)
    if not (1 <= hello_interval <= 3600):
        raise ConfigError("peers.hello_interval_seconds must be between 1 and 3600")
    sync_interval = sync_table.get("interval_seconds", int, 30)
    if not (1 <= sync_interval <= 86_400):
        raise ConfigError("sync.interval_seconds must be between 1 and 86400")
    max_peers = peers_table.get("max_peers", int, 256)
    if not (1 <= max_peers <= 4096):
        raise ConfigError("peers.max_peers must be between 1 and 4096")
    admin = parse_host_port(http.get("admin_listen", str, "127.0.0.1:8471"), "http.admin_listen")
    allow_remote = http.get("admin_allow_remote", bool, False)
    if not admin.is_loopback and not allow_remote:
        raise ConfigError(
            "http.admin_listen must be a loopback address (127.0.0.1 or ::1); the admin console"
            " is not for the network. Set http.admin_allow_remote = true only behind TLS."
        )
    max_body = http.get("max_body_bytes", int, 1 << 20)
    if not (1024 <= max_body <= 64 << 20):
        raise ConfigError("http.max_body_bytes must be between 1024 and 67108864")
    quota_gib = st.get("quota_gib", int, 4096)
    if not (1 <= quota_gib <= 1 << 24):
        raise ConfigError("storage.quota_gib must be between 1 and 16777216")
    replication = _replication(rep, quota_gib * GIB)
    level = lg.get("level", str, "info")
    if level not in LOG_LEVELS:
        raise ConfigError(f"log.level must be one of {', '.join(LOG_LEVELS)}")
    config = Config(
        home=home,
        name=name,
        code=code,
        tier=tier,
        region=region,
        parent=parent,
        public_url=public_url,
        peers=static_peers,
        hello_interval_seconds=hello_interval,
        max_peers=max_peers,
        sync_interval_seconds=sync_interval,
        network_name=net.get("name", str, "siku"),
        ark_naan=naan,
        listen=listen,
        admin_listen=admin,
        admin_allow_remote=allow_remote,
        max_body_bytes=max_body,
        quota_bytes=quota_gib * GIB,
        zeroconf=disc.get("zeroconf", bool, False),
        log_level=level,
        replication=replication,
    )
    for t in tables.values():
        t.finish()
    return config


def _replication(t: _Table, quota_bytes: int) -> ReplicationConfig:
    interval = t.get("interval_seconds", int, 60)
    if not (1 <= interval <= 86_400):
        raise ConfigError("replication.interval_seconds must be between 1 and 86400")
    subscribe = t.get("subscribe", list, [])
    if len(subscribe) > 256 or not all(isinstance(c, str) for c in subscribe):
        raise ConfigError("replication.subscribe must be a list of at most 256 collection names")
    try:
        for collection in subscribe:
            validate_collection(collection)
    except ValidationError as e:
        raise ConfigError(f"replication.subscribe: {e.message}") from e
    cache_mib = t.get("cache_mib", int, min(65_536, quota_bytes // (1 << 20) // 4))
    if not (0 <= cache_mib * (1 << 20) <= quota_bytes):
        raise ConfigError("replication.cache_mib must be between 0 and the storage quota")
    mbit = t.get("bandwidth_mbit", int, 0)
    if not (0 <= mbit <= 1_000_000):
        raise ConfigError("replication.bandwidth_mbit must be between 0 (no limit) and 1000000")
    windows = t.get("windows", list, [])
    if len(windows) > 16 or not all(isinstance(w, str) and _WINDOW.fullmatch(w) for w in windows):
        raise ConfigError(
            'replication.windows must be a list of at most 16 "HH:MM-HH:MM" times,'
            ' e.g. ["22:00-06:00"]'
        )
    try:
        for window in windows:
            Window.parse(window)
    except ValueError as e:
        raise ConfigError(f"replication.windows: {e}") from e
    transfers = t.get("max_transfers", int, 4)
    if not (1 <= transfers <= 64):
        raise ConfigError("replication.max_transfers must be between 1 and 64")
    return ReplicationConfig(
        enabled=t.get("enabled", bool, True),
        interval_seconds=interval,
        subscribe=tuple(subscribe),
        cache_bytes=cache_mib << 20,
        bandwidth_bytes_per_s=mbit * 125_000,
        windows=tuple(windows),
        max_transfers=transfers,
    )


def _toml_str(value: str) -> str:
    # JSON string escapes (\", \\, \n, \uXXXX, ...) are all valid in a TOML basic string.
    return json.dumps(value, ensure_ascii=False)


def render_config(
    *,
    name: str,
    code: str,
    tier: str,
    region: str = "",
    parent: str = "",
    listen: str = "127.0.0.1:8470",
    public_url: str = "",
    admin_listen: str = "127.0.0.1:8471",
    network_name: str = "siku",
    ark_naan: str = "99999",
    quota_gib: int = 4096,
    zeroconf: bool = False,
    hello_interval_seconds: int = 30,
    sync_interval_seconds: int = 30,
    replication_interval_seconds: int = 60,
    subscribe: tuple[str, ...] = (),
    cache_mib: int = 0,
    replication: bool = True,
) -> str:
    """node.toml text with every key commented; also the documented example in the repo."""
    return f"""\
# siku node configuration. Read once at start; restart the daemon after editing.
# Sizes are in the unit named by the key (bytes unless it says _gib); addresses are HOST:PORT.

[node]
# Library name shown to readers and to other libraries.
name = {_toml_str(name)}
# Library code: 2-12 characters of 0-9 and b c d f g h j k m n p q r s t v w x z
# (with a 5-digit ark_naan; the NAAN and the code together are at most 17 characters).
# Part of every persistent identifier this library mints: never change it after ingesting.
code = {_toml_str(code)}
# Tier in the network: national, provincial, municipal or county.
tier = {_toml_str(tier)}
# Region: the six-digit GB/T 2260 administrative division code the library serves
# (000000 national, PP0000 provincial, PPCC00 municipal, PPCCDD county). Certificates check it.
region = {_toml_str(region)}
# Peer URL of the parent library (empty for the national library), e.g. "http://10.20.0.5:8470".
parent = {_toml_str(parent)}

[network]
# Name of the library network this node belongs to.
name = {_toml_str(network_name)}
# ARK Name Assigning Authority Number of the network (5-9 digits; 99999 is the test prefix).
ark_naan = {_toml_str(ark_naan)}

[http]
# Public listener: search, records, content, /id/ landing pages, and the peer API /peer/v1.
listen = {_toml_str(listen)}
# URL other libraries use to reach the public listener (empty: http://<listen>). Set it when
# listening on 0.0.0.0 or behind NAT, e.g. "http://10.20.3.7:8470".
public_url = {_toml_str(public_url)}
# Admin listener: status API and console. Loopback only unless admin_allow_remote = true.
admin_listen = {_toml_str(admin_listen)}
# Allow a non-loopback admin_listen (only behind a TLS-terminating proxy). true or false.
admin_allow_remote = false
# Largest request body accepted, in bytes (1024 to 67108864).
max_body_bytes = 1048576

[peers]
# Other libraries to connect to besides the parent, as peer URLs, e.g. ["http://10.20.0.9:8470"].
urls = []
# Seconds between hellos to each connected peer (the heartbeat), 1 to 3600.
hello_interval_seconds = {hello_interval_seconds}
# Most peers kept in the peer table (configured, discovered and exchanged), 1 to 4096.
max_peers = 256

[sync]
# Seconds between anti-entropy rounds: each round reconciles the whole catalogue with one
# connected peer in turn (new records also spread at once by push gossip), 1 to 86400.
interval_seconds = {sync_interval_seconds}

[storage]
# Most content this node may hold, in GiB (2^30 bytes). Ingest refuses to go past it.
quota_gib = {quota_gib}

[replication]
# Keep copies of other libraries' content as the network policy places them (preservation),
# take subscribed collections, and cache what readers download. true or false.
enabled = {"true" if replication else "false"}
# Seconds between planning rounds (which copies to fetch or drop), 1 to 86400.
interval_seconds = {replication_interval_seconds}
# Collections of libraries above this one to hold a copy of, e.g. ["national-ebooks"].
subscribe = {json.dumps(list(subscribe), ensure_ascii=False)}
# On-demand cache for readers, in MiB (2^20 bytes), counted within the quota. Cached copies
# are evicted least recently used first; a copy the policy needs is never evicted.
cache_mib = {cache_mib or min(65_536, quota_gib * 1024 // 4)}
# Bandwidth for background transfers, in Mbit/s (0: no limit). Reader downloads are not limited.
bandwidth_mbit = 0
# Local times when background transfers may run, e.g. ["22:00-06:00"] ([]: at any time).
windows = []
# Resources fetched at once, 1 to 64.
max_transfers = 4

[discovery]
# Advertise and browse _siku._tcp by mDNS on the local network. true or false.
# Leave false unless the LAN is the library's own: it multicasts on every interface.
zeroconf = {"true" if zeroconf else "false"}

[log]
# Log level: debug, info, warning or error. Logs go to standard error (journald under systemd).
level = "info"
"""
