"""Enrolment as admins do it, with the real `siku` CLI: network init, then request → approve →
accept down the four tiers, and the refusals an admin must get (exit 65, a sentence saying why).

One network is enrolled per module; the refusal tests add the homes they need to it.
"""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from node.enrolment import read_bundle
from node.network import load_network
from protocol.membership import decode_certificate, verify_chain
from tests.conftest import ROOT, siku_command, siku_env

EX_DATAERR = 65
EX_CONFIG = 78


def _siku(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        siku_command(*map(str, args)),
        capture_output=True,
        text=True,
        env=siku_env(),
        cwd=ROOT,
        timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"siku {' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout}{proc.stderr}"
        )
    return proc


def _siku_side_by_side(*commands: list[str | Path]) -> list[subprocess.CompletedProcess[str]]:
    """Run independent `siku` commands at the same time; all must succeed."""
    running = [
        subprocess.Popen(
            siku_command(*map(str, args)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=siku_env(),
            cwd=ROOT,
        )
        for args in commands
    ]
    done = []
    for args, child in zip(commands, running, strict=True):
        stdout, stderr = child.communicate(timeout=60)
        assert child.returncode == 0, f"siku {' '.join(map(str, args))}: {stdout}{stderr}"
        done.append(subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr))
    return done


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@dataclass(frozen=True)
class Library:
    key: str
    name: str
    code: str
    tier: str
    region: str
    parent: str | None  # key of the issuing library; None: the network root


LIBRARIES = (
    Library("national", "国家图书馆 National Library", "zg", "national", "000000", None),
    Library("gansu", "甘肃省图书馆 Gansu Provincial", "gs", "provincial", "620000", None),
    Library("jiuquan", "酒泉市图书馆 Jiuquan Municipal", "jq", "municipal", "620900", "gansu"),
    Library("dunhuang", "敦煌市图书馆 Dunhuang County", "dh", "county", "620982", "jiuquan"),
)


@dataclass
class Network:
    root: Path
    folder: Path  # root.key and network.toml
    homes: dict[str, Path] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    steps: dict[tuple[str, str], subprocess.CompletedProcess[str]] = field(default_factory=dict)

    @property
    def description(self) -> Path:
        return self.folder / "network.toml"

    def init_args(self, lib: Library, network: Path | None = None) -> list[str | Path]:
        self.homes[lib.key] = home = self.root / lib.key
        return [
            "init", "--home", home, "--name", lib.name, "--code", lib.code, "--tier", lib.tier,
            "--region", lib.region, "--network", network or self.description,
        ]  # fmt: skip

    def request_args(self, lib: Library) -> list[str | Path]:
        return ["enroll", "request", "--home", self.homes[lib.key], "--out", self.request_file(lib)]

    def request_file(self, lib: Library) -> Path:
        return self.root / f"{lib.key}.request.siku"

    def requested(self, lib: Library, proc: subprocess.CompletedProcess[str]) -> Path:
        self.steps[(lib.key, "request")] = proc
        (node_id,) = [line.split()[2] for line in proc.stdout.splitlines() if "node id" in line]
        self.ids[lib.key] = node_id
        return self.request_file(lib)

    def init(self, lib: Library, *, network: Path | None = None) -> Path:
        """`siku init` a home for `lib` in this network (or the given network.toml)."""
        _siku(*self.init_args(lib, network))
        return self.homes[lib.key]

    def request(self, lib: Library) -> Path:
        return self.requested(lib, _siku(*self.request_args(lib)))

    def approve_args(self, issuer: str | None) -> list[str | Path]:
        if issuer is None:
            return ["--root-key", self.folder / "root.key", "--network", self.description]
        return ["--home", self.homes[issuer]]

    def approve(
        self, request: Path, issuer: str | None, key: str, *, check: bool = True
    ) -> tuple[subprocess.CompletedProcess[str], Path]:
        out = self.root / f"{key}.cert.siku"
        args = ["enroll", "approve", *self.approve_args(issuer), request, "--out", out]
        return _siku(*args, check=check), out


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("enrol")
    net = Network(root, root / "network")
    proc = _siku("network", "init", "--out", net.folder, "--name", "四库 test network")
    net.steps[("network", "init")] = proc
    # Each library makes its home and its request on its own; approval goes down the tiers.
    _siku_side_by_side(*(net.init_args(lib) for lib in LIBRARIES))
    requested = _siku_side_by_side(*(net.request_args(lib) for lib in LIBRARIES))
    for lib, proc in zip(LIBRARIES, requested, strict=True):
        net.requested(lib, proc)
    for lib in LIBRARIES:
        proc, cert = net.approve(net.request_file(lib), lib.parent, lib.key)
        net.steps[(lib.key, "approve")] = proc
        net.steps[(lib.key, "accept")] = _siku(
            "enroll", "accept", "--home", net.homes[lib.key], cert
        )
    yield net


# --- the happy path -----------------------------------------------------------------------------


def test_network_init_makes_a_secret_root_key_and_a_public_description(network: Network) -> None:
    out = network.steps[("network", "init")].stdout
    description = load_network(network.description)
    assert description.id in out and "keep it offline" in out
    assert _mode(network.folder / "root.key") == 0o600
    assert _mode(network.description) & 0o044 == 0o044  # given to every library


def test_four_tiers_enrol_by_request_approve_accept(network: Network) -> None:
    root_key = load_network(network.description).root_public_key
    for depth, lib in zip((1, 1, 2, 3), LIBRARIES, strict=True):
        home, node_id = network.homes[lib.key], network.ids[lib.key]
        approved = network.steps[(lib.key, "approve")].stdout
        assert node_id in approved and f"region {lib.region}" in approved
        accepted = network.steps[(lib.key, "accept")].stdout
        assert f"as a {lib.tier} member ({depth}-link chain)" in accepted
        for secret in ("keys/node.key", "keys/admin.token"):
            assert _mode(home / secret) == 0o600, f"{lib.key}: {secret}"
        # The installed chain is what the daemon will present: it admits exactly this node.
        chain = read_bundle(home / "membership" / "chain.siku")
        leaf = verify_chain(
            chain, root=root_key, now_ms=decode_certificate(chain[0]).not_before_ms + 1
        )
        assert leaf.subject.node_id == node_id and leaf.subject.region == lib.region
    shown = _siku("enroll", "show", "--home", network.homes["dunhuang"]).stdout.splitlines()
    assert [line.split(" (")[0] for line in shown] == [
        "敦煌市图书馆 Dunhuang County",
        "酒泉市图书馆 Jiuquan Municipal",
        "甘肃省图书馆 Gansu Provincial",
    ]


def test_network_init_refuses_to_overwrite(network: Network) -> None:
    before = {p.name: p.read_bytes() for p in network.folder.iterdir()}
    proc = _siku("network", "init", "--out", network.folder, "--name", "again", check=False)
    assert proc.returncode == EX_CONFIG
    assert "already exists" in proc.stderr and "Traceback" not in proc.stderr
    assert {p.name: p.read_bytes() for p in network.folder.iterdir()} == before


# --- refusals -----------------------------------------------------------------------------------


def _refused(proc: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert proc.returncode == EX_DATAERR, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("siku: ") and "Traceback" not in proc.stderr, proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr, proc.stderr


def test_approve_refuses_a_sibling_provinces_request(network: Network) -> None:
    guangzhou = Library("guangzhou", "广州图书馆 Guangzhou", "gz", "municipal", "440100", None)
    network.init(guangzhou)
    proc, cert = network.approve(network.request(guangzhou), "gansu", "guangzhou", check=False)
    _refused(proc, "cannot approve", "620000", "another province", "440100")
    assert not cert.exists()


def test_approve_refuses_a_county_at_a_provincial_node(network: Network) -> None:
    guazhou = Library("guazhou", "瓜州县图书馆 Guazhou", "gzx", "county", "620923", None)
    network.init(guazhou)
    request = network.request(guazhou)
    proc, cert = network.approve(request, "gansu", "guazhou", check=False)
    _refused(proc, "cannot approve", "provincial node cannot certify a county")
    assert not cert.exists()
    # The request itself is fine: its municipal library approves it.
    network.approve(request, "jiuquan", "guazhou")
    assert cert.exists()


def test_approve_refuses_a_request_of_another_network(network: Network) -> None:
    elsewhere = network.root / "elsewhere"
    _siku("network", "init", "--out", elsewhere, "--name", "another network")
    stranger = Library("stranger", "别处 Elsewhere Municipal", "bc", "municipal", "620100", None)
    network.init(stranger, network=elsewhere / "network.toml")
    proc, cert = network.approve(network.request(stranger), "gansu", "stranger", check=False)
    _refused(proc, "another network")
    assert not cert.exists()
    # Nor does the other network's root key pass for this network's.
    args: list[str | Path] = [
        "--root-key",
        elsewhere / "root.key",
        "--network",
        network.description,
    ]
    request = network.root / "stranger.request.siku"
    proc = _siku("enroll", "approve", *args, request, "--out", cert, check=False)
    _refused(proc, "is not the root key of network")
    assert not cert.exists()


def test_accept_refuses_a_certificate_made_for_another_node(network: Network) -> None:
    # A certificate issued by Jiuquan for a second county, installed at Dunhuang by mistake.
    yumen = Library("yumen", "玉门市图书馆 Yumen", "jm", "county", "620981", "jiuquan")
    network.init(yumen)
    _, cert = network.approve(network.request(yumen), "jiuquan", "yumen")
    home = network.homes["dunhuang"]
    chain_before = (home / "membership" / "chain.siku").read_bytes()
    proc = _siku("enroll", "accept", "--home", home, cert, check=False)
    _refused(proc, f"is for node {network.ids['yumen']}", network.ids["dunhuang"])
    assert (home / "membership" / "chain.siku").read_bytes() == chain_before
    # The node it was made for accepts it.
    accepted = _siku("enroll", "accept", "--home", network.homes["yumen"], cert).stdout
    assert "as a county member (3-link chain)" in accepted
