"""node.toml parsing: every error names the key; defaults are safe (loopback, no zeroconf)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from node.config import load_config, parse_config, render_config
from node.errors import ConfigError

HOME = Path("/srv/siku")


def _data(**changes: object) -> dict[str, object]:
    data = tomllib.loads(render_config(name="Test", code="620982", tier="county"))
    for dotted, value in changes.items():
        table, key = dotted.split("__")
        data.setdefault(table, {})[key] = value  # type: ignore[index]
    return data


def test_rendered_config_round_trips_with_safe_defaults() -> None:
    config = parse_config(_data(), HOME)
    assert config.admin_listen.is_loopback and config.listen.host == "127.0.0.1"
    assert config.zeroconf is False
    assert config.quota_bytes == 4096 << 30
    assert config.key_file == HOME / "keys" / "node.key"
    rep = config.replication
    assert rep.enabled and rep.windows == () and rep.bandwidth_bytes_per_s == 0
    assert rep.cache_bytes == 64 << 30  # a quarter of the quota, at most 64 GiB


def test_replication_settings() -> None:
    config = parse_config(
        _data(
            replication__subscribe=["national-ebooks"],
            replication__windows=["22:00-06:00", "12:00-13:30"],
            replication__bandwidth_mbit=100,
            replication__cache_mib=512,
        ),
        HOME,
    )
    rep = config.replication
    assert rep.subscribe == ("national-ebooks",)
    assert rep.windows == ("22:00-06:00", "12:00-13:30")
    assert rep.bandwidth_bytes_per_s == 12_500_000
    assert rep.cache_bytes == 512 << 20


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"node__tier": "village"}, "node.tier"),
        ({"node__code": "AB"}, "node.code"),
        ({"node__name": ""}, "node.name"),
        ({"node__parent": "gopher://x"}, "node.parent"),
        ({"http__listen": "8470"}, "http.listen"),
        ({"http__admin_listen": "10.0.0.5:8471"}, "http.admin_listen"),
        ({"http__max_body_bytes": 10}, "http.max_body_bytes"),
        ({"storage__quota_gib": 0}, "storage.quota_gib"),
        ({"storage__quota_gib": "4096"}, "storage.quota_gib"),
        ({"storage__quota_gib": True}, "storage.quota_gib"),
        ({"discovery__zeroconf": "yes"}, "discovery.zeroconf"),
        ({"log__level": "loud"}, "log.level"),
        ({"storage__quota_tb": 4}, "storage.quota_tb"),
        ({"network__ark_naan": "12"}, "ark_naan"),
        ({"node__region": "620900"}, "node.region"),
        ({"node__region": "62"}, "node.region"),
        ({"http__public_url": "ftp://x"}, "http.public_url"),
        ({"peers__urls": ["http://a b"]}, "peers.urls"),
        ({"peers__hello_interval_seconds": 0}, "peers.hello_interval_seconds"),
        ({"peers__max_peers": 0}, "peers.max_peers"),
        ({"replication__interval_seconds": 0}, "replication.interval_seconds"),
        ({"replication__subscribe": ["Not A Slug"]}, "replication.subscribe"),
        ({"replication__subscribe": "national-ebooks"}, "replication.subscribe"),
        ({"replication__cache_mib": -1}, "replication.cache_mib"),
        ({"replication__cache_mib": 5 << 30}, "replication.cache_mib"),
        ({"replication__bandwidth_mbit": -5}, "replication.bandwidth_mbit"),
        ({"replication__windows": ["22:00"]}, "replication.windows"),
        ({"replication__windows": ["25:00-06:00"]}, "replication.windows"),
        ({"replication__windows": ["08:00-08:00"]}, "replication.windows"),
        ({"replication__windows": ["22:00-24:30"]}, "replication.windows"),
        ({"replication__max_transfers": 0}, "replication.max_transfers"),
        ({"replication__enabled": "yes"}, "replication.enabled"),
        ({"replication__speed": 1}, "replication.speed"),
    ],
)
def test_bad_values_name_their_key(change: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_data(**change), HOME)
    assert key in info.value.message


def test_unknown_table_and_remote_admin_opt_in() -> None:
    with pytest.raises(ConfigError, match=r"\[archive\]"):
        parse_config({**_data(), "archive": {}}, HOME)
    config = parse_config(
        _data(http__admin_listen="0.0.0.0:8471", http__admin_allow_remote=True), HOME
    )
    assert not config.admin_listen.is_loopback


def test_missing_oversized_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="siku init"):
        load_config(tmp_path)
    (tmp_path / "node.toml").write_text("[node\nname=", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"node\.toml"):
        load_config(tmp_path)
    (tmp_path / "node.toml").write_bytes(b"#" * (300 * 1024))
    with pytest.raises(ConfigError, match="larger"):
        load_config(tmp_path)
