"""The replication planner (sync/placement.py): the three policy rules, rights, subscriptions,
quota and cache, safe drops, determinism, and the per-node fast path against `place`."""

from __future__ import annotations

import datetime
import hashlib
import random
from collections.abc import Iterable, Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.placement import (
    AT_RISK_HOLDERS,
    PRIORITY_PRESERVATION,
    PRIORITY_REPAIR,
    PRIORITY_SUBSCRIPTION,
    RULE_COPIES,
    RULE_HIGHER,
    RULE_OUTSIDE,
    RULES,
    LocalCopy,
    Member,
    Placement,
    Plan,
    Policy,
    Resource,
    Settings,
    is_dark,
    place,
    plan,
    score,
)

TODAY = datetime.date(2025, 6, 1)
BIG = 10**15
POLICY = Policy()
ROOMY = Settings(quota_bytes=BIG, cache_bytes=BIG, subscriptions=frozenset())
NOBODY: Mapping[str, frozenset[str]] = {}


def member(node_id: str, region: str, ancestors: tuple[str, ...] = ()) -> Member:
    if region == "000000":
        tier = "national"
    elif region[2:] == "0000":
        tier = "provincial"
    elif region[4:] == "00":
        tier = "municipal"
    else:
        tier = "county"
    return Member(node_id, hashlib.sha256(node_id.encode()).digest(), tier, region, ancestors)


def network(
    provinces: Iterable[str] = ("11", "12"),
    municipals: int = 2,
    counties: int = 2,
    national: bool = True,
) -> list[Member]:
    """nat; p11; m1101 (under p11); c110101 (under m1101, p11); ..."""
    found = [member("nat", "000000")] if national else []
    for p in provinces:
        found.append(member(f"p{p}", f"{p}0000"))
        for m in range(1, municipals + 1):
            found.append(member(f"m{p}{m:02}", f"{p}{m:02}00", (f"p{p}",)))
            for c in range(1, counties + 1):
                found.append(
                    member(f"c{p}{m:02}{c:02}", f"{p}{m:02}{c:02}", (f"m{p}{m:02}", f"p{p}"))
                )
    return found


def resource(
    pid: str,
    origin: str,
    size: int = 100,
    access: str = "open",
    collection: str = "local",
    embargo_until: datetime.date | None = None,
) -> Resource:
    return Resource(
        pid=pid,
        key=hashlib.sha256(pid.encode()).digest()[:8],
        origin=origin,
        content_key=hashlib.sha256(b"content " + pid.encode()).digest(),
        size=size,
        collection=collection,
        access=access,
        embargo_until=embargo_until,
    )


def by_score(res: Resource, members: Iterable[Member]) -> list[str]:
    ranked = sorted(members, key=lambda m: (-score(res.key, m.key), m.node_id))
    return [m.node_id for m in ranked]


def lookup(members: list[Member]) -> dict[str, Member]:
    return {m.node_id: m for m in members}


NET = network()
BY_ID = lookup(NET)


# --- place: the rules -------------------------------------------------------------------------


def test_score_is_sha256_of_pid_key_then_node_key() -> None:
    res = resource("r", "c110101")
    digest = hashlib.sha256(res.key + BY_ID["nat"].key).digest()
    assert score(res.key, BY_ID["nat"].key) == int.from_bytes(digest[:8], "big")


def test_county_content_gets_one_copy_above_it_in_its_province_by_score() -> None:
    res = resource("r1", "c110101")
    p = place(res, NET, NOBODY, Policy(min_copies=1, min_outside_province=0), TODAY)
    above = [BY_ID[i] for i in ("p11", "m1101", "m1102")]
    assert p.target == ("c110101", by_score(res, above)[0])
    assert p.unmet == (RULE_HIGHER, RULE_COPIES)
    assert p.unplaceable == ()


def test_higher_in_province_prefers_a_holder_over_a_better_scored_non_holder() -> None:
    res = resource("r1", "c110101")
    above = [BY_ID[i] for i in ("p11", "m1101", "m1102")]
    worst = by_score(res, above)[-1]
    holders = {"r1": frozenset({"c110101", worst})}
    p = place(res, NET, holders, Policy(min_copies=1, min_outside_province=0), TODAY)
    assert p.target == ("c110101", worst)
    assert p.unmet == ()


def test_higher_in_province_is_vacuous_for_provincial_and_national_content() -> None:
    for origin in ("p11", "nat"):
        p = place(resource("r", origin), NET, NOBODY, POLICY, TODAY)
        assert RULE_HIGHER not in p.unmet + p.unplaceable
        assert len(p.target) == 3


def test_outside_province_copy_goes_to_another_province_or_national() -> None:
    res = resource("r2", "m1101")
    p = place(res, NET, NOBODY, Policy(min_copies=1, min_higher_in_province=0), TODAY)
    outside = [m for m in NET if m.province != "11"]
    assert p.target == ("m1101", by_score(res, outside)[0])
    # national content: any node of a province counts as outside, the national one does not
    net = [*NET, member("nat2", "000000")]
    res = resource("r3", "nat")
    p = place(res, net, NOBODY, Policy(min_copies=1, min_higher_in_province=0), TODAY)
    assert p.target[1] == by_score(res, [m for m in net if m.province != "00"])[0]


def test_outside_province_is_unplaceable_in_a_one_province_network() -> None:
    net = network(provinces=("11",), national=False)
    p = place(resource("r", "c110101"), net, NOBODY, POLICY, TODAY)
    assert p.unplaceable == (RULE_OUTSIDE,)
    assert len(p.target) == 3  # the other rules are still placed


def test_copies_rule_tops_up_with_the_best_scores_and_counts_earlier_picks() -> None:
    res = resource("r4", "c120201")
    p = place(res, NET, NOBODY, Policy(min_copies=5), TODAY)
    assert len(p.target) == 5 and len(set(p.target)) == 5
    chosen = set(p.target[:3])  # origin, higher-in-province, outside-province
    rest = [m for m in NET if m.node_id not in chosen]
    assert list(p.target[3:]) == by_score(res, rest)[:2]


def test_one_node_may_satisfy_several_rules() -> None:
    res = resource("r", "c110101")
    holders = {"r": frozenset({"c110101", "m1101", "nat"})}
    p = place(res, NET, holders, POLICY, TODAY)
    assert p.target == ("c110101", "m1101", "nat")
    assert p.unmet == p.unplaceable == ()


def test_surplus_holders_are_not_in_the_target() -> None:
    res = resource("r", "c110101")
    everyone = frozenset(m.node_id for m in NET)
    p = place(res, NET, {"r": everyone}, POLICY, TODAY)
    assert len(p.target) == 3 and p.unmet == ()


def test_full_nodes_are_never_chosen_for_new_copies_but_keep_counting_as_holders() -> None:
    res = resource("r5", "c110101")
    free = place(res, NET, NOBODY, POLICY, TODAY)
    full = frozenset(free.target[1:])
    p = place(res, NET, NOBODY, POLICY, TODAY, full)
    assert not set(p.target) & full
    held = place(res, NET, {"r5": frozenset(free.target)}, POLICY, TODAY, full)
    assert held.target == free.target


def test_too_few_nodes_with_room_is_unplaceable_not_an_error() -> None:
    res = resource("r", "c110101")
    full = frozenset(m.node_id for m in NET) - {"c110101"}
    p = place(res, NET, NOBODY, POLICY, TODAY, full)
    assert p.target == ("c110101",)
    assert p.unplaceable == RULES


def test_an_origin_that_left_is_not_counted() -> None:
    net = [m for m in NET if m.node_id != "c110101"]
    p = place(resource("r", "c110101"), net, NOBODY, POLICY, TODAY)
    assert "c110101" not in p.target and len(p.target) == 3


# --- rights -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("access", "until", "dark"),
    [
        ("open", None, False),
        ("network", None, False),
        ("onsite", None, True),
        ("restricted", None, True),
        ("embargoed", TODAY + datetime.timedelta(days=1), True),
        ("embargoed", TODAY, False),
    ],
)
def test_dark_content(access: str, until: datetime.date | None, dark: bool) -> None:
    assert is_dark(resource("r", "c110101", access=access, embargo_until=until), TODAY) is dark


def test_dark_content_is_placed_only_at_the_origin_its_ancestors_and_national() -> None:
    allowed = {"c110101", "m1101", "p11", "nat"}
    for i in range(30):
        p = place(resource(f"d{i}", "c110101", access="restricted"), NET, NOBODY, POLICY, TODAY)
        assert p.dark
        assert set(p.target) <= allowed
        assert p.unplaceable == ()
    p = place(resource("d", "c110101", access="onsite"), NET, NOBODY, Policy(min_copies=5), TODAY)
    assert set(p.target) == allowed and p.unplaceable == (RULE_COPIES,)
    # a holder that may not hold it is not counted
    p = place(
        resource("d", "c110101", access="onsite"), NET, {"d": frozenset({"c120101"})}, POLICY, TODAY
    )
    assert "c120101" not in p.target and RULE_COPIES in p.unmet


def test_dark_wants_are_marked_and_dark_is_never_subscribed_or_cached() -> None:
    res = resource("d", "nat", access="restricted", collection="ebooks")
    subscriber = Settings(BIG, BIG, frozenset({"ebooks"}))
    for m in NET:
        if m.node_id == "nat":
            continue
        pl = plan(m.node_id, NET, POLICY, subscriber, [res], {"d": frozenset({"nat"})}, [], TODAY)
        assert pl.fetch == []  # national content: only national nodes are eligible
        cached = [LocalCopy("d", "cache", 100, 5)]
        pl = plan(
            m.node_id, NET, POLICY, subscriber, [res], {"d": frozenset({"nat"})}, cached, TODAY
        )
        assert pl.drop == ["d"]
    net = [*NET, member("nat2", "000000")]
    pl = plan("nat2", net, POLICY, ROOMY, [res], {"d": frozenset({"nat"})}, [], TODAY)
    assert [(w.pid, w.klass, w.dark) for w in pl.fetch] == [("d", "preservation", True)]


# --- plan: wants ------------------------------------------------------------------------------


def target_of(res: Resource, holders: Mapping[str, frozenset[str]] = NOBODY) -> Placement:
    return place(res, NET, holders, POLICY, TODAY)


def test_a_target_node_wants_a_copy_and_repairs_come_first() -> None:
    res = resource("r", "c110101")
    t = target_of(res).target
    pl = plan(t[1], NET, POLICY, ROOMY, [res], {"r": frozenset({"c110101"})}, [], TODAY)
    [want] = pl.fetch
    assert (want.klass, want.priority, want.size, want.dark) == (
        "preservation",
        PRIORITY_REPAIR,
        100,
        False,
    )
    held = frozenset({"c110101", t[2]})
    assert AT_RISK_HOLDERS == 2
    pl = plan(t[1], NET, POLICY, ROOMY, [res], {"r": held}, [], TODAY)
    assert pl.fetch[0].priority == PRIORITY_PRESERVATION
    others = [m.node_id for m in NET if m.node_id not in t]
    for other in others:
        assert plan(other, NET, POLICY, ROOMY, [res], {"r": held}, [], TODAY).fetch == []


def test_sources_are_own_ancestors_first_then_by_score() -> None:
    res = resource("r", "nat")
    holders = frozenset({"nat", "p11", "m1101", "c110102", "c120101", "p12"})
    subscriber = Settings(BIG, BIG, frozenset({"local"}))
    pl = plan("c110101", NET, POLICY, subscriber, [res], {"r": holders}, [], TODAY)
    [want] = pl.fetch
    rest = by_score(res, [BY_ID[i] for i in holders - {"m1101", "p11"}])
    assert want.sources == ("m1101", "p11", *rest)


def test_subscriptions_come_only_from_above_and_only_for_subscribed_collections() -> None:
    subs = Settings(BIG, BIG, frozenset({"ebooks"}))
    ebook = resource("e", "nat", collection="ebooks")
    sibling = resource("s", "c110102", collection="ebooks")
    other = resource("o", "nat", collection="journals")
    own = resource("mine", "c110101", collection="ebooks")
    embargoed = resource(
        "x",
        "nat",
        collection="ebooks",
        access="embargoed",
        embargo_until=TODAY + datetime.timedelta(days=3),
    )
    everything = [ebook, sibling, other, own, embargoed]
    holders = {r.pid: frozenset({r.origin}) for r in everything}
    # a policy that never places anything at c110101 by itself
    policy = Policy(min_copies=0, min_higher_in_province=0, min_outside_province=0)
    mine = [LocalCopy("mine", "own", 100)]
    pl = plan("c110101", NET, policy, subs, everything, holders, mine, TODAY)
    assert [(w.pid, w.klass, w.priority) for w in pl.fetch] == [
        ("e", "subscription", PRIORITY_SUBSCRIPTION)
    ]
    # the municipal node subscribing to ebooks gets national's, not a county's
    pl = plan("m1101", NET, policy, subs, everything, holders, [], TODAY)
    assert [w.pid for w in pl.fetch] == ["e"]
    # a held subscription copy stays while subscribed, goes when not
    held = [LocalCopy("e", "subscription", 100, 1)]
    assert plan("c110101", NET, policy, subs, [ebook], holders, held, TODAY).keep == {
        "e": "subscription"
    }
    assert plan("c110101", NET, policy, ROOMY, [ebook], holders, held, TODAY).drop == ["e"]


# --- plan: keep, reclassify, drop -------------------------------------------------------------


def test_own_copies_are_kept_as_own() -> None:
    res = resource("r", "c110101")
    held = [LocalCopy("r", "own", 100)]
    pl = plan("c110101", NET, POLICY, ROOMY, [res], {"r": frozenset({"c110101"})}, held, TODAY)
    assert pl.keep == {"r": "own"} and pl.drop == [] and pl.fetch == []


def test_a_cache_copy_that_becomes_a_target_is_upgraded() -> None:
    res = resource("r", "c110101")
    t = target_of(res).target
    held = [LocalCopy("r", "cache", 100, 7)]
    tight = Settings(quota_bytes=BIG, cache_bytes=0, subscriptions=frozenset())
    pl = plan(t[1], NET, POLICY, tight, [res], {"r": frozenset({"c110101", t[1]})}, held, TODAY)
    assert pl.keep == {"r": "preservation"} and pl.drop == []
    assert pl.usage["preservation"] == 100 and pl.usage["cache"] == 0


def test_no_preservation_drop_before_the_whole_target_holds() -> None:
    res = resource("r", "c110101")
    t = target_of(res).target
    spare = next(m.node_id for m in NET if m.node_id not in t)
    held = [LocalCopy("r", "preservation", 100)]
    partly = frozenset({*t[:2], spare})
    pl = plan(spare, NET, POLICY, ROOMY, [res], {"r": partly}, held, TODAY)
    assert pl.keep == {"r": "preservation"} and pl.drop == []
    fully = frozenset({*t, spare})
    pl = plan(spare, NET, POLICY, ROOMY, [res], {"r": fully}, held, TODAY)
    assert pl.drop == ["r"] and pl.keep == {}
    # a cache copy in the same position goes at once: it was never counted on
    pl = plan(
        spare,
        NET,
        POLICY,
        Settings(BIG, 0, frozenset()),
        [res],
        {"r": partly},
        [LocalCopy("r", "cache", 100)],
        TODAY,
    )
    assert pl.drop == ["r"]


def test_deleted_resources_are_dropped_except_own() -> None:
    held = [
        LocalCopy("gone", "preservation", 10),
        LocalCopy("mine", "own", 20),
        LocalCopy("c", "cache", 5),
        LocalCopy("empty", "subscription", 5),
    ]
    empty = resource("empty", "nat", size=0)
    pl = plan("m1101", NET, POLICY, ROOMY, [empty], NOBODY, held, TODAY)
    assert pl.drop == ["c", "empty", "gone"]
    assert pl.keep == {"mine": "own"}
    assert pl.health.resources == 0


def test_a_node_that_is_not_a_member_changes_nothing() -> None:
    res = resource("r", "c110101")
    held = [LocalCopy("r", "preservation", 100), LocalCopy("gone", "cache", 1)]
    pl = plan("stranger", NET, POLICY, ROOMY, [res], NOBODY, held, TODAY)
    assert pl.fetch == [] and pl.drop == []
    assert pl.keep == {"gone": "cache", "r": "preservation"}


# --- plan: quota and cache --------------------------------------------------------------------


def assert_within_quota(pl: Plan, quota: int) -> None:
    assert sum(pl.usage.values()) <= quota


def find(
    prefix: str,
    origin: str,
    held: frozenset[str],
    node: str,
    inside: bool,
    net: list[Member] = NET,
    policy: Policy = POLICY,
    **fields: object,
) -> Resource:
    """The first resource `prefix`N whose target does (or does not) include `node`."""
    for i in range(1000):
        res = resource(f"{prefix}{i}", origin, **fields)  # type: ignore[arg-type]
        if (node in place(res, net, {res.pid: held}, policy, TODAY).target) == inside:
            return res
    raise AssertionError("no such pid")


def test_quota_admits_wants_by_priority_and_reports_the_rest() -> None:
    risky = find("a", "c110101", frozenset({"c110101"}), "p11", True)
    calm = find("b", "c110101", frozenset({"c110101", "c120101"}), "p11", True)
    sub = resource("c-sub", "nat", collection="x")
    holders = {
        risky.pid: frozenset({"c110101"}),
        calm.pid: frozenset({"c110101", "c120101"}),
        "c-sub": frozenset({"nat", "p12", "m1201"}),
    }
    p11 = Settings(quota_bytes=250, cache_bytes=0, subscriptions=frozenset({"x"}))
    pl = plan("p11", NET, POLICY, p11, [sub, calm, risky], holders, [], TODAY)
    assert [(w.pid, w.priority) for w in pl.fetch] == [
        (risky.pid, PRIORITY_REPAIR),
        (calm.pid, PRIORITY_PRESERVATION),
    ]
    assert pl.deferred_for_quota == (1, 100)
    assert_within_quota(pl, 250)
    roomy = Settings(quota_bytes=BIG, cache_bytes=0, subscriptions=frozenset({"x"}))
    pl = plan("p11", NET, POLICY, roomy, [sub, calm, risky], holders, [], TODAY)
    assert [(w.pid, w.priority) for w in pl.fetch] == [
        (risky.pid, PRIORITY_REPAIR),
        (calm.pid, PRIORITY_PRESERVATION),
        ("c-sub", PRIORITY_SUBSCRIPTION),
    ]
    # a smaller lower-priority want still fits in what is left (first fit)
    small = resource("c-sub", "nat", size=50, collection="x")
    pl = plan("p11", NET, POLICY, p11, [small, calm, risky], holders, [], TODAY)
    assert [w.pid for w in pl.fetch] == [risky.pid, calm.pid, "c-sub"]
    assert pl.deferred_for_quota == (0, 0)
    # and a tighter quota keeps the repair first
    pl = plan(
        "p11",
        NET,
        POLICY,
        Settings(150, 0, frozenset({"x"})),
        [sub, calm, risky],
        holders,
        [],
        TODAY,
    )
    assert [w.pid for w in pl.fetch] == [risky.pid]
    assert pl.deferred_for_quota == (2, 200)


def test_held_copies_keep_their_space_before_new_wants() -> None:
    net = network(provinces=("11",), municipals=1, counties=3)
    calm = resource("b-calm", "c110102", size=100)
    old = resource("z-old", "c110103", size=150)
    holders = {
        "b-calm": frozenset({"c110102", "m1101"}),
        "z-old": frozenset({"c110103", "m1101", "nat"}),
    }
    pl = plan(
        "nat",
        net,
        POLICY,
        Settings(200, 0, frozenset()),
        [calm, old],
        holders,
        [LocalCopy("z-old", "preservation", 150)],
        TODAY,
    )
    assert pl.keep == {"z-old": "preservation"} and pl.fetch == []
    assert pl.deferred_for_quota == (1, 100)


def test_held_copies_over_quota_shed_cache_then_subscription_then_preservation() -> None:
    own = resource("own", "c110102", size=100)
    pres = find("pres", "p11", frozenset({"p11", "nat", "c110102"}), "c110102", True)
    sub = find("sub", "nat", frozenset({"nat", "p12"}), "c110102", False, collection="x")
    cache = find("cache", "m1101", frozenset({"m1101", "nat"}), "c110102", False)
    everything = [own, pres, sub, cache]
    holders = {
        own.pid: frozenset({"c110102"}),
        pres.pid: frozenset({"p11", "nat", "c110102"}),
        sub.pid: frozenset({"nat", "p12"}),
        cache.pid: frozenset({"m1101", "nat"}),
    }
    held = [
        LocalCopy(own.pid, "own", 100),
        LocalCopy(pres.pid, "preservation", 100),
        LocalCopy(sub.pid, "subscription", 100),
        LocalCopy(cache.pid, "cache", 100),
    ]
    subs = frozenset({"x"})
    names = {
        r.pid: name for r, name in zip(everything, ["own", "pres", "sub", "cache"], strict=True)
    }
    for quota, keep, shed in [
        (400, {"own", "pres", "sub", "cache"}, (0, 0)),
        (350, {"own", "pres", "sub"}, (0, 0)),
        (250, {"own", "pres"}, (1, 100)),
        (150, {"own"}, (2, 200)),
        (50, {"own"}, (2, 200)),
    ]:
        pl = plan(
            "c110102", NET, POLICY, Settings(quota, BIG, subs), everything, holders, held, TODAY
        )
        assert {names[p] for p in pl.keep} == keep, quota
        assert {names[p] for p in pl.drop} == {"own", "pres", "sub", "cache"} - keep
        assert pl.dropped_for_quota == shed  # cache goes by eviction, not counted here
        assert pl.fetch == []
        if quota >= 100:
            assert_within_quota(pl, quota)


def test_cache_evicts_least_recently_used_beyond_its_budget() -> None:
    res = [resource(f"r{i}", "c110101", size=100) for i in range(5)]
    holders = {r.pid: frozenset({"c110101", "p11", "nat", "m1101"}) for r in res}
    used = [30, 10, 50, 20, 40]
    held = [LocalCopy(r.pid, "cache", 100, u) for r, u in zip(res, used, strict=True)]
    pl = plan("c120101", NET, POLICY, Settings(BIG, 300, frozenset()), res, holders, held, TODAY)
    assert pl.drop == ["r1", "r3"]  # used at 10 and 20
    assert set(pl.keep) == {"r0", "r2", "r4"}
    # and the quota caps the cache too
    pl = plan("c120101", NET, POLICY, Settings(150, 300, frozenset()), res, holders, held, TODAY)
    assert set(pl.keep) == {"r2"}


def test_cache_yields_to_policy_wants() -> None:
    res = resource("r", "c110101")
    node = target_of(res).target[1]
    cached = find("c", "c110102", frozenset({"c110102", "p11", "nat", "m1101"}), node, False)
    holders = {
        "r": frozenset({"c110101"}),
        cached.pid: frozenset({"c110102", "p11", "nat", "m1101"}),
    }
    pl = plan(
        node,
        NET,
        POLICY,
        Settings(150, 150, frozenset()),
        [res, cached],
        holders,
        [LocalCopy(cached.pid, "cache", 100)],
        TODAY,
    )
    assert [w.pid for w in pl.fetch] == ["r"] and pl.drop == [cached.pid]
    pl = plan(
        node,
        NET,
        POLICY,
        Settings(250, 150, frozenset()),
        [res, cached],
        holders,
        [LocalCopy(cached.pid, "cache", 100)],
        TODAY,
    )
    assert [w.pid for w in pl.fetch] == ["r"] and pl.keep == {cached.pid: "cache"}


# --- health -----------------------------------------------------------------------------------


def test_health_counts_rules_below_policy_at_risk_and_unplaceable() -> None:
    net = network(provinces=("11",), national=False)
    ok = resource("ok", "c110101")
    lonely = resource("lonely", "c110102")
    empty = resource("empty", "c110102", size=0)
    holders = {"ok": frozenset({"c110101", "m1101", "p11"}), "lonely": frozenset({"c110102"})}
    pl = plan("p11", net, POLICY, ROOMY, [ok, lonely, empty], holders, [], TODAY)
    h = pl.health
    assert h.resources == 2
    assert h.at_risk == 1
    assert h.below_policy == {RULE_HIGHER: 1, RULE_OUTSIDE: 2, RULE_COPIES: 1}
    assert h.unplaceable == {RULE_HIGHER: 0, RULE_OUTSIDE: 2, RULE_COPIES: 0}


# --- determinism ------------------------------------------------------------------------------


def test_same_inputs_in_any_order_give_the_same_plan() -> None:
    rng = random.Random(5)
    resources = [
        resource(
            f"r{i:02}",
            rng.choice(NET).node_id,
            size=rng.randint(1, 90),
            access=rng.choice(["open", "restricted", "network"]),
        )
        for i in range(40)
    ]
    holders = {
        r.pid: frozenset(rng.sample([m.node_id for m in NET], rng.randint(0, 4))) for r in resources
    }
    local = [
        LocalCopy(
            r.pid, rng.choice(["preservation", "cache", "subscription"]), r.size, rng.randint(0, 9)
        )
        for r in resources[::3]
    ]
    settings_ = Settings(900, 200, frozenset({"local"}))
    first = plan("m1101", NET, POLICY, settings_, resources, holders, local, TODAY)
    for _ in range(3):
        rng.shuffle(resources)
        rng.shuffle(local)
        net = NET[:]
        rng.shuffle(net)
        again = plan("m1101", net, POLICY, settings_, resources, dict(holders), local, TODAY)
        assert again == first
        assert list(again.keep) == list(first.keep)


def test_duplicate_inputs_are_a_bug() -> None:
    with pytest.raises(ValueError, match="twice"):
        plan("nat", [*NET, NET[0]], POLICY, ROOMY, [], NOBODY, [], TODAY)
    res = resource("r", "nat")
    with pytest.raises(ValueError, match="twice"):
        plan("nat", NET, POLICY, ROOMY, [res, res], NOBODY, [], TODAY)


# --- properties over random small networks ----------------------------------------------------

ACCESS = ["open", "open", "network", "onsite", "restricted", "embargoed"]


World = tuple[list[Member], Policy, list[Resource], dict[str, frozenset[str]], frozenset[str]]


@st.composite
def worlds(draw: st.DrawFn, crowded: bool = False) -> World:
    provinces = draw(
        st.lists(st.sampled_from(["11", "12", "13"]), min_size=1, max_size=3, unique=True)
    )
    members: list[Member] = []
    if draw(st.booleans()):
        members.append(member("nat", "000000"))
    for p in provinces:
        members.append(member(f"p{p}", f"{p}0000"))
        for m in range(1, draw(st.integers(0, 2)) + 1):
            members.append(member(f"m{p}{m:02}", f"{p}{m:02}00", (f"p{p}",)))
            for c in range(1, draw(st.integers(0, 2)) + 1):
                members.append(
                    member(f"c{p}{m:02}{c:02}", f"{p}{m:02}{c:02}", (f"m{p}{m:02}", f"p{p}"))
                )
        if draw(st.booleans()):  # a county its province administers directly
            members.append(member(f"c{p}9001", f"{p}9001", (f"p{p}",)))
    ids = [m.node_id for m in members]
    most = 3 if crowded else 2
    policy = Policy(
        draw(st.integers(0, 8 if crowded else 5)),
        draw(st.integers(0, most)),
        draw(st.integers(0, most)),
    )
    resources = []
    holders = {}
    for i in range(draw(st.integers(1, 12 if crowded else 8))):
        origin = draw(st.sampled_from([*ids, "departed"]))
        access = draw(st.sampled_from(ACCESS))
        until = TODAY + datetime.timedelta(days=draw(st.integers(-2, 2)))
        res = resource(
            f"r{i}",
            origin,
            size=draw(st.integers(0, 50)),
            access=access,
            embargo_until=until,
            collection=draw(st.sampled_from(["a", "b"])),
        )
        resources.append(res)
        holders[res.pid] = frozenset(
            draw(st.lists(st.sampled_from([*ids, "departed"]), max_size=5))
        )
    full = frozenset(draw(st.lists(st.sampled_from(ids), max_size=10 if crowded else 3)))
    return members, policy, resources, holders, full


property_settings = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def dark_allowed(res: Resource, members: list[Member]) -> set[str]:
    ids = lookup(members)
    allowed = {m.node_id for m in members if m.tier == "national"}
    if res.origin in ids:
        allowed |= {res.origin, *(a for a in ids[res.origin].ancestors if a in ids)}
    return allowed


def fits(rule: str, m: Member, province: str, rank: int) -> bool:
    """Whether `m` counts for `rule` for content whose origin is at (province, rank)."""
    if rule == RULE_HIGHER:
        return m.province == province and m.rank < rank
    if rule == RULE_OUTSIDE:
        return m.province != province
    return True


@property_settings
@given(worlds())
def test_place_meets_every_rule_it_does_not_report_unplaceable(
    world: World,
) -> None:
    members, policy, resources, holders, full = world
    ids = lookup(members)
    for res in resources:
        p = place(res, members, holders, policy, TODAY, full)
        held = holders.get(res.pid, frozenset())
        assert len(set(p.target)) == len(p.target)
        assert all(i in held or i not in full or i == res.origin for i in p.target)
        eligible = dark_allowed(res, members) if p.dark else set(ids)
        assert set(p.target) <= eligible
        origin = ids.get(res.origin)
        prov = origin.province if origin else ""
        rank = origin.rank if origin else 4
        needs = {
            RULE_HIGHER: policy.min_higher_in_province,
            RULE_OUTSIDE: policy.min_outside_province,
            RULE_COPIES: policy.min_copies,
        }
        usable = {i for i in eligible if i in held or i not in full} | (
            {res.origin} if origin else set()
        )
        for rule, need in needs.items():
            in_target = sum(1 for i in p.target if fits(rule, ids[i], prov, rank))
            in_holders = sum(1 for i in held & eligible if fits(rule, ids[i], prov, rank))
            possible = sum(1 for i in usable if fits(rule, ids[i], prov, rank))
            vacuous = rule == RULE_HIGHER and not any(
                fits(rule, ids[i], prov, rank) for i in eligible
            )
            assert (rule in p.unplaceable) == (not vacuous and possible < need)
            assert (rule in p.unmet) == (not vacuous and in_holders < need)
            if rule not in p.unplaceable and not vacuous:
                assert in_target >= need
        # nothing superfluous: the copies rule stops as soon as it is met
        floor = (1 if origin else 0) + policy.min_higher_in_province + policy.min_outside_province
        assert len(p.target) <= max(policy.min_copies, floor)


@property_settings
@given(worlds(), st.data())
def test_every_nodes_plan_agrees_with_place_and_stays_in_quota(
    world: World,
    data: st.DataObject,
) -> None:
    members, policy, resources, holders, full = world
    placements = {r.pid: place(r, members, holders, policy, TODAY, full) for r in resources}
    live = [r for r in resources if r.size > 0]
    expected_below = {rule: sum(rule in placements[r.pid].unmet for r in live) for rule in RULES}
    expected_unplaceable = {
        rule: sum(rule in placements[r.pid].unplaceable for r in live) for rule in RULES
    }
    for me in members:
        local = [
            LocalCopy(
                r.pid,
                data.draw(st.sampled_from(["preservation", "subscription", "cache"]))
                if r.origin != me.node_id
                else "own",
                r.size,
                data.draw(st.integers(0, 9)),
            )
            for r in resources
            if data.draw(st.booleans())
        ]
        held = {c.pid: c for c in local}
        subs = frozenset(data.draw(st.lists(st.sampled_from(["a", "b"]), max_size=2)))
        pl = plan(
            me.node_id,
            members,
            policy,
            Settings(BIG, BIG, subs),
            resources,
            holders,
            local,
            TODAY,
            full,
        )
        assert pl.health.below_policy == expected_below
        assert pl.health.unplaceable == expected_unplaceable
        fetched = {w.pid: w for w in pl.fetch}
        for r in live:
            p = placements[r.pid]
            mine = me.node_id in p.target
            if r.pid not in held:
                assert (r.pid in fetched and fetched[r.pid].klass == "preservation") == mine
                if r.pid in fetched:
                    w = fetched[r.pid]
                    assert w.dark == p.dark and me.node_id not in w.sources
                    assert w.klass == "subscription" or mine
                    if w.klass == "subscription":
                        assert not p.dark and r.collection in subs
                        assert lookup(members)[r.origin].rank < me.rank
            elif r.origin == me.node_id:
                assert pl.keep[r.pid] == "own"
            elif mine:
                assert pl.keep[r.pid] == "preservation"
            elif r.pid in pl.drop and held[r.pid].klass == "preservation":
                assert set(p.target) <= holders.get(r.pid, frozenset())
            if p.dark and r.pid in pl.keep:
                assert pl.keep[r.pid] in ("own", "preservation")
        # a tight quota: admitted in priority order, never more than the room
        quota = data.draw(st.integers(0, 200))
        cache = data.draw(st.integers(0, 100))
        own = sum(c.size for c in local if c.klass == "own")
        tight = plan(
            me.node_id,
            members,
            policy,
            Settings(quota + own, cache, subs),
            resources,
            holders,
            local,
            TODAY,
            full,
        )
        assert sum(tight.usage.values()) <= quota + own
        assert tight.usage["cache"] <= cache
        admitted = {w.pid for w in tight.fetch}
        assert admitted <= set(fetched)
        assert not set(tight.drop) & {c.pid for c in local if c.klass == "own"}


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(worlds(crowded=True))
def test_the_fast_path_finds_the_same_targets_as_place_on_crowded_networks(world: World) -> None:
    """`plan` decides membership of the target without scoring every node; check it against
    the direct computation where pools run dry, nodes are full and rules ask for many copies."""
    members, policy, resources, holders, full = world
    live = [r for r in resources if r.size > 0]
    placements = {r.pid: place(r, members, holders, policy, TODAY, full) for r in live}
    for me in members:
        pl = plan(me.node_id, members, policy, ROOMY, resources, holders, [], TODAY, full)
        wanted = {w.pid for w in pl.fetch}
        assert wanted == {r.pid for r in live if me.node_id in placements[r.pid].target}
        assert pl.health.unplaceable == {
            rule: sum(rule in p.unplaceable for p in placements.values()) for rule in RULES
        }
        # a surplus preservation copy goes exactly when the whole target holds
        mine = [LocalCopy(r.pid, "preservation", r.size) for r in live if r.origin != me.node_id]
        pl = plan(me.node_id, members, policy, ROOMY, resources, holders, mine, TODAY, full)
        for copy in mine:
            p = placements[copy.pid]
            settled = set(p.target) <= holders.get(copy.pid, frozenset())
            assert (copy.pid in pl.drop) == (me.node_id not in p.target and settled)


@pytest.mark.parametrize(("policy", "held_extra"), [(Policy(6, 1, 2), 0), (Policy(7, 2, 2), 1)])
def test_the_fast_path_on_a_lopsided_network(policy: Policy, held_extra: int) -> None:
    """One big province and a small one: the outside-province picks are few and often score
    below a node of the origin's province, which then competes for the copies rule."""
    net = network(provinces=("11",), municipals=2, counties=3, national=False)
    net += network(provinces=("12",), municipals=1, counties=0, national=False)
    rng = random.Random(3)
    counties = [m.node_id for m in net if m.tier == "county"]
    resources = [resource(f"r{i}", rng.choice(counties)) for i in range(150)]
    holders = {
        r.pid: frozenset({r.origin, *rng.sample([m.node_id for m in net], held_extra)})
        for r in resources
    }
    targets = {r.pid: place(r, net, holders, policy, TODAY).target for r in resources}
    for me in net:
        pl = plan(me.node_id, net, policy, ROOMY, resources, holders, [], TODAY)
        assert {w.pid for w in pl.fetch} == {pid for pid, t in targets.items() if me.node_id in t}
