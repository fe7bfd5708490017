"""Replication converges: every node runs the planner on the shared holdings view, its fetches and
drops are carried out (all at once, or a random part per round to model slow transfers), and the
network reaches a fixpoint where the policy holds wherever the membership allows, dark content
sits only with its origin, the origin's issuers and national, subscribers hold their
subscriptions, no node is over quota, and nothing is fetched twice."""

from __future__ import annotations

import datetime
import hashlib
import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.placement import (
    RULE_COPIES,
    RULE_HIGHER,
    RULE_OUTSIDE,
    RULES,
    LocalCopy,
    Member,
    Plan,
    Policy,
    Resource,
    Settings,
    is_dark,
    place,
    plan,
)

TODAY = datetime.date(2025, 6, 1)
MAX_ROUNDS = 80
ROOMY = 10**9
ACCESS = ["open", "open", "open", "network", "onsite", "restricted", "embargoed", "embargoed"]

sim_settings = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def member(node_id: str, tier: str, region: str, ancestors: tuple[str, ...]) -> Member:
    return Member(node_id, hashlib.sha256(node_id.encode()).digest(), tier, region, ancestors)


def build_members() -> list[Member]:
    """1 national, 3 provincial, 6 municipal (2 each), 12 county (2 per municipal)."""
    found = [member("nat", "national", "000000", ())]
    for p in ("11", "32", "44"):
        found.append(member(f"p{p}", "provincial", f"{p}0000", ()))
        for m in ("01", "02"):
            found.append(member(f"m{p}{m}", "municipal", f"{p}{m}00", (f"p{p}",)))
            for c in ("01", "02"):
                found.append(member(f"c{p}{m}{c}", "county", f"{p}{m}{c}", (f"m{p}{m}", f"p{p}")))
    return found


MEMBERS = build_members()
BY_ID = {m.node_id: m for m in MEMBERS}
COUNTIES = [m.node_id for m in MEMBERS if m.tier == "county"]


def resource(pid: str, origin: str, size: int, access: str, collection: str) -> Resource:
    until = TODAY + datetime.timedelta(days=30) if access == "embargoed" else None
    if access == "embargoed" and int(hashlib.sha256(pid.encode()).hexdigest(), 16) % 2:
        until = TODAY - datetime.timedelta(days=30)  # an embargo that has ended
    return Resource(
        pid=pid,
        key=hashlib.sha256(pid.encode()).digest()[:8],
        origin=origin,
        content_key=hashlib.sha256(b"c" + pid.encode()).digest(),
        size=size,
        collection=collection,
        access=access,
        embargo_until=until,
    )


@dataclass
class World:
    policy: Policy
    resources: list[Resource]
    settings: dict[str, Settings]
    held: dict[str, dict[str, LocalCopy]]
    tight: set[str]
    full: set[str] = field(default_factory=set)
    fetched: set[tuple[str, str]] = field(default_factory=set)

    def holders(self) -> dict[str, frozenset[str]]:
        found: dict[str, set[str]] = {}
        for node, copies in self.held.items():
            for pid in copies:
                found.setdefault(pid, set()).add(node)
        return {pid: frozenset(nodes) for pid, nodes in found.items()}

    def used(self, node: str) -> int:
        return sum(c.size for c in self.held[node].values())


def make_world(rng: random.Random, min_copies: int, messy: bool) -> World:
    resources: list[Resource] = []
    held: dict[str, dict[str, LocalCopy]] = {m.node_id: {} for m in MEMBERS}

    def ingest(origin: str, pid: str, collection: str, access: str) -> None:
        res = resource(pid, origin, rng.randint(1, 10), access, collection)
        resources.append(res)
        held[origin][pid] = LocalCopy(pid, "own", res.size, 0)

    for county in COUNTIES:
        for i in range(rng.randint(2, 4)):
            ingest(county, f"{county}-{i}", "local", rng.choice(ACCESS))
    for i in range(4):
        ingest("nat", f"ebook-{i}", "ebooks", "open")
    ingest("nat", "ebook-dark", "ebooks", "restricted")
    for p in ("p11", "p32"):
        ingest(p, f"{p}-gazette", "gazettes", rng.choice(["open", "onsite"]))

    own = {n: sum(c.size for c in copies.values()) for n, copies in held.items()}
    tight = set(rng.sample(COUNTIES, 3)) | {rng.choice(["m1101", "m3202"])}
    node_settings: dict[str, Settings] = {}
    for m in MEMBERS:
        subs: frozenset[str] = frozenset()
        if m.tier in ("provincial", "municipal") or m.node_id in ("c110101", "c440202"):
            subs = frozenset({"ebooks", "gazettes"})
        quota = own[m.node_id] + rng.randint(0, 12) if m.node_id in tight else ROOMY
        node_settings[m.node_id] = Settings(quota, rng.choice([0, 15, ROOMY]), subs)
    for s in (m.node_id for m in MEMBERS):
        if s in tight:
            node_settings[s] = Settings(node_settings[s].quota_bytes, 5, frozenset())

    world = World(Policy(min_copies=min_copies), resources, node_settings, held, tight)
    if messy:  # random extra copies of any class, and copies of deleted resources
        extras = [*resources, *(resource(f"gone-{i}", "nat", 3, "open", "x") for i in range(4))]
        for _ in range(60):
            res = rng.choice(extras)
            node = rng.choice(MEMBERS).node_id
            if res.pid in held[node]:
                continue
            if world.used(node) + res.size > node_settings[node].quota_bytes:
                continue
            klass = rng.choice(["preservation", "subscription", "cache"])
            held[node][res.pid] = LocalCopy(res.pid, klass, res.size, rng.randint(0, 99))
    return world


def run_round(world: World, rng: random.Random, delay: bool, round_no: int) -> bool:
    """Every node plans on one snapshot, then the plans are carried out. True if anything
    changed (or is still waiting to be fetched)."""
    holders = world.holders()
    plans: dict[str, Plan] = {}
    for m in MEMBERS:
        node = m.node_id
        plans[node] = plan(
            node,
            MEMBERS,
            world.policy,
            world.settings[node],
            world.resources,
            holders,
            list(world.held[node].values()),
            TODAY,
            frozenset(world.full),
        )
    sizes = {r.pid: r.size for r in world.resources}
    changed = False
    for node, p in plans.items():
        quota = world.settings[node].quota_bytes
        assert sum(p.usage.values()) <= quota, (node, p.usage, quota)
        copies = world.held[node]
        for pid in p.drop:
            del copies[pid]
            changed = True
        for pid, klass in p.keep.items():
            if copies[pid].klass != klass:
                copies[pid] = LocalCopy(pid, klass, copies[pid].size, copies[pid].last_used_ms)
                changed = True
        for want in p.fetch:
            assert want.sources, (node, want)
            changed = True  # done now or still to do
            if delay and rng.random() < 0.5:
                continue
            assert (node, want.pid) not in world.fetched, f"{node} fetched {want.pid} twice"
            world.fetched.add((node, want.pid))
            copies[want.pid] = LocalCopy(want.pid, want.klass, sizes[want.pid], round_no)
        if p.deferred_for_quota[0] and node not in world.full:
            world.full.add(node)  # what its status record would say
            changed = True
        assert world.used(node) <= quota, (node, world.used(node), quota)
    return changed


def settle(world: World, rng: random.Random, delay: bool) -> int:
    for round_no in range(1, MAX_ROUNDS + 1):
        if not run_round(world, rng, delay, round_no):
            return round_no
    raise AssertionError(f"no fixpoint after {MAX_ROUNDS} rounds")


def check_fixpoint(world: World) -> None:
    holders = world.holders()
    full = frozenset(world.full)
    live = {r.pid: r for r in world.resources}
    # nothing of deleted resources is left
    assert set(holders) <= set(live)
    expected_unplaceable = dict.fromkeys(RULES, 0)
    for res in world.resources:
        held = holders.get(res.pid, frozenset())
        p = place(res, MEMBERS, holders, world.policy, TODAY, full)
        # the whole target holds it, and every rule that can be met is met
        assert set(p.target) <= held, (res.pid, p.target, held)
        assert set(p.unmet) == set(p.unplaceable), (res.pid, p)
        for rule in p.unplaceable:
            expected_unplaceable[rule] += 1
        origin = BY_ID[res.origin]
        if is_dark(res, TODAY):
            allowed = {res.origin, *origin.ancestors} | {"nat"}
            assert held <= allowed, (res.pid, held)
            assert all(world.held[n][res.pid].klass in ("own", "preservation") for n in held)
            # with national and the chain present, dark county content fits the default rules
            if origin.tier == "county" and world.policy.min_copies <= 4 and "nat" not in full:
                assert p.unplaceable == ()
        else:
            # open content has room enough in this network
            assert p.unplaceable == (), (res.pid, p)
        if RULE_COPIES not in p.unplaceable:
            assert len(held) >= min(2, world.policy.min_copies)
        # subscribers with room hold what they subscribe to from above
        for m in MEMBERS:
            s = world.settings[m.node_id]
            if (
                res.collection in s.subscriptions
                and not is_dark(res, TODAY)
                and origin.rank < m.rank
                and m.node_id not in world.tight
            ):
                assert m.node_id in held, (m.node_id, res.pid)
                assert world.held[m.node_id][res.pid].klass in ("preservation", "subscription")
    # every node reports the same health, and it matches the placements
    healths = set()
    for m in MEMBERS:
        pl = plan(
            m.node_id,
            MEMBERS,
            world.policy,
            world.settings[m.node_id],
            world.resources,
            holders,
            list(world.held[m.node_id].values()),
            TODAY,
            full,
        )
        assert pl.fetch == [] and pl.drop == []
        assert pl.health.below_policy == pl.health.unplaceable == expected_unplaceable
        assert pl.health.resources == len(world.resources)
        healths.add(repr(pl.health))
    assert len(healths) == 1


@sim_settings
@given(
    seed=st.integers(0, 2**32 - 1),
    min_copies=st.sampled_from([3, 3, 5]),
    messy=st.booleans(),
    delay=st.booleans(),
)
def test_replication_reaches_a_fixpoint_that_meets_the_policy(
    seed: int, min_copies: int, messy: bool, delay: bool
) -> None:
    rng = random.Random(seed)
    world = make_world(rng, min_copies, messy)
    rounds = settle(world, rng, delay)
    assert rounds <= (MAX_ROUNDS if delay else 12)
    check_fixpoint(world)


def test_dark_content_beyond_the_chain_is_reported_unplaceable() -> None:
    # 5 copies of restricted county content: only the county, its municipal and provincial
    # issuers and national may hold it, so the copies rule cannot be met.
    rng = random.Random(1)
    world = make_world(rng, 5, messy=False)
    settle(world, rng, delay=False)
    check_fixpoint(world)
    holders = world.holders()
    dark = [r for r in world.resources if is_dark(r, TODAY) and BY_ID[r.origin].tier == "county"]
    assert dark
    for res in dark:
        p = place(res, MEMBERS, holders, world.policy, TODAY, frozenset(world.full))
        assert RULE_COPIES in p.unplaceable
        assert RULE_HIGHER not in p.unplaceable and RULE_OUTSIDE not in p.unplaceable
        allowed = {res.origin, *BY_ID[res.origin].ancestors, "nat"}
        assert allowed - world.full <= holders[res.pid] <= allowed


def test_tight_quotas_make_nodes_full_and_the_rest_take_over() -> None:
    rng = random.Random(2)
    world = make_world(rng, 3, messy=False)
    settle(world, rng, delay=False)
    check_fixpoint(world)
    assert world.full  # some tight node ran out of room ...
    assert world.full <= world.tight
    for node in world.tight:  # ... and none is over quota
        assert world.used(node) <= world.settings[node].quota_bytes
