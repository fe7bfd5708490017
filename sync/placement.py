"""Replication planner: which content copies this node must fetch, may keep and may drop.

Every node runs `plan` by itself over the same gossiped state (members, policy, resources,
published holdings) and reaches the same placement for every resource, so no coordinator is
needed. The module is pure: no I/O, no clock (``today`` is an argument), no randomness.

Placement of one resource (`place`):

- Rights first. Content that is restricted, on-site only, or embargoed past ``today`` is *dark*:
  only the origin, the origin's issuer chain (``Member.ancestors``) and national nodes are
  eligible, and such a copy is kept but never served. Everything else is eligible anywhere.
- The target set starts with the origin (class own; not counted once it is no longer a member).
- Then three rules, in this order, each filled from eligible candidates: first the current
  holders by rendezvous score, then non-holders that are not known to be full by score, until
  the rule's count (over the whole target so far) is met:
  ``higher-in-province`` (same province as the origin, strictly higher tier; vacuous when no
  eligible node of that kind exists), ``outside-province`` (another province; the national
  library's "00" is outside every province) and ``copies`` (any eligible node).
- A rule the current holders do not meet is *unmet* (below policy); one that even the target
  cannot meet (too few eligible nodes with room) is *unplaceable*. Neither is an error.
- Score = first 8 bytes of sha256(pid key + node key), highest first, ties by node id.

Invariants the node-level `plan` keeps, from which convergence follows:

- A held copy keeps the best class that applies now: own > preservation > subscription > cache.
- A preservation copy this node is no longer a target for is dropped only once every node of
  the target holds the resource; dropping non-target holders never changes the target (holders
  are preferred, and only non-target holders go), so the placement is stable at the fixpoint.
- own + kept + fetched bytes never exceed the quota. Held policy copies keep their space before
  new wants; new wants are admitted by (priority, -score, pid) while they fit (first fit; the
  rest are deferred and counted); cache gets what is left, up to ``cache_bytes``, evicting the
  least recently used.

Cost, for R resources, M members and H holders per resource: building the member index is
O(M log M) once per plan. Per resource, the holders are scored (H hashes) and the counts behind
the rules come from per-(province, tier) tallies, O(1). Only while a rule is short of holders
does the planner look at non-holders: the higher-in-province pool (one province's few
provincial/municipal nodes) is scored in full; for the large pools it only needs to know
whether *this* node is among the top k (k <= min_copies), so it scans members until k of them
outscore it, about k·ln(M) hashes on average. Dark resources have a handful of eligible nodes
and take the direct path. Measured in CPython with 3,100 members: about 1.2 s per 100,000
resources once they are replicated (R·H hashes), about 4 s per 100,000 on a cold start where
no resource has its copies yet. `place` on its own is the direct reference computation and
scores every eligible member: O(M) per call, for tests and single look-ups.
"""

from __future__ import annotations

import datetime
import hashlib
import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from protocol.membership import TIERS

__all__ = [
    "ACCESS_LEVELS",
    "AT_RISK_HOLDERS",
    "CLASSES",
    "DARK_ACCESS",
    "KLASS_CACHE",
    "KLASS_OWN",
    "KLASS_PRESERVATION",
    "KLASS_SUBSCRIPTION",
    "PRIORITY_CACHE",
    "PRIORITY_PRESERVATION",
    "PRIORITY_REPAIR",
    "PRIORITY_SUBSCRIPTION",
    "RULES",
    "RULE_COPIES",
    "RULE_HIGHER",
    "RULE_OUTSIDE",
    "Health",
    "LocalCopy",
    "Member",
    "Placement",
    "Plan",
    "Policy",
    "Resource",
    "Settings",
    "Want",
    "is_dark",
    "place",
    "plan",
    "score",
]

RULE_HIGHER = "higher-in-province"
RULE_OUTSIDE = "outside-province"
RULE_COPIES = "copies"
RULES = (RULE_HIGHER, RULE_OUTSIDE, RULE_COPIES)

KLASS_OWN = "own"
KLASS_PRESERVATION = "preservation"
KLASS_SUBSCRIPTION = "subscription"
KLASS_CACHE = "cache"
CLASSES = (KLASS_OWN, KLASS_PRESERVATION, KLASS_SUBSCRIPTION, KLASS_CACHE)

PRIORITY_REPAIR = 0
PRIORITY_PRESERVATION = 1
PRIORITY_SUBSCRIPTION = 2
PRIORITY_CACHE = 3

ACCESS_LEVELS = ("open", "network", "onsite", "restricted", "embargoed")
DARK_ACCESS = frozenset({"onsite", "restricted"})
# A resource with fewer holders than this is at risk: its wants are repairs.
AT_RISK_HOLDERS = 2
NATIONAL_PROVINCE = "00"
PUBLIC_KEY_BYTES = 32
PID_KEY_BYTES = 8
_UNKNOWN_RANK = len(TIERS)  # an origin that is no longer a member: below every tier
_NO_PROVINCE = ""  # ... and in no province, so every node is outside it
_T = TypeVar("_T")


def score(resource_key: bytes, member_key: bytes) -> int:
    """A node's rendezvous score for a resource; the highest scores get the copies."""
    return int.from_bytes(hashlib.sha256(resource_key + member_key).digest()[:8], "big")


@dataclass(frozen=True, slots=True)
class Member:
    """An admitted node as placement sees it. ``ancestors``: its issuer chain, parent first."""

    node_id: str
    key: bytes
    tier: str
    region: str
    ancestors: tuple[str, ...] = ()
    rank: int = field(init=False, repr=False, compare=False)
    province: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != PUBLIC_KEY_BYTES:
            raise ValueError(f"member {self.node_id}: key must be {PUBLIC_KEY_BYTES} bytes")
        if self.tier not in TIERS:
            raise ValueError(f"member {self.node_id}: tier {self.tier!r} is not one of {TIERS}")
        if len(self.region) != 6 or not self.region.isdigit():
            raise ValueError(f"member {self.node_id}: region {self.region!r} is not 6 digits")
        object.__setattr__(self, "rank", TIERS.index(self.tier))
        object.__setattr__(self, "province", self.region[:2])


@dataclass(frozen=True, slots=True)
class Policy:
    """The network replication policy (root-signed elsewhere; these are the defaults)."""

    min_copies: int = 3
    min_higher_in_province: int = 1
    min_outside_province: int = 1

    def __post_init__(self) -> None:
        if min(self.min_copies, self.min_higher_in_province, self.min_outside_province) < 0:
            raise ValueError("policy counts must not be negative")


@dataclass(frozen=True, slots=True)
class Resource:
    """A catalogue entry's content as placement sees it; ``size`` 0 means no content."""

    pid: str
    key: bytes
    origin: str
    content_key: bytes
    size: int
    collection: str
    access: str
    embargo_until: datetime.date | None = None

    def __post_init__(self) -> None:
        if self.access not in ACCESS_LEVELS:
            raise ValueError(f"resource {self.pid}: access {self.access!r} is unknown")
        if self.size < 0:
            raise ValueError(f"resource {self.pid}: negative size")


@dataclass(frozen=True, slots=True)
class Settings:
    """This node's own replication settings (from node.toml)."""

    quota_bytes: int
    cache_bytes: int
    subscriptions: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class LocalCopy:
    """A copy this node holds, and why."""

    pid: str
    klass: str
    size: int
    last_used_ms: int = 0

    def __post_init__(self) -> None:
        if self.klass not in CLASSES:
            raise ValueError(f"copy {self.pid}: class {self.klass!r} is not one of {CLASSES}")


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one resource belongs. ``unmet``: rules its current holders miss;
    ``unplaceable``: rules that even the target misses (too few eligible nodes with room)."""

    target: tuple[str, ...]
    unmet: tuple[str, ...]
    unplaceable: tuple[str, ...]
    dark: bool


@dataclass(frozen=True, slots=True)
class Want:
    """A copy to fetch. ``sources``: holders to try, this node's ancestors first."""

    pid: str
    klass: str
    priority: int
    size: int
    dark: bool
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Health:
    """Replication health over every resource with content (what the console shows)."""

    resources: int
    below_policy: dict[str, int]
    at_risk: int
    unplaceable: dict[str, int]


@dataclass(frozen=True)
class Plan:
    """What this node does next. ``usage``: bytes per class once the plan is carried out;
    ``deferred_for_quota`` / ``dropped_for_quota``: (count, bytes)."""

    fetch: list[Want]
    keep: dict[str, str]
    drop: list[str]
    health: Health
    usage: dict[str, int]
    deferred_for_quota: tuple[int, int]
    dropped_for_quota: tuple[int, int] = (0, 0)


def is_dark(resource: Resource, today: datetime.date) -> bool:
    """Whether rights forbid serving the content today (it may still be kept for preservation)."""
    if resource.access in DARK_ACCESS:
        return True
    if resource.access == "embargoed":
        return resource.embargo_until is None or resource.embargo_until > today
    return False


# --- the member index, built once per plan ---------------------------------------------------


class _Roster:
    __slots__ = (
        "_above",
        "by_id",
        "by_place",
        "free",
        "free_in_province",
        "full",
        "nationals",
        "order",
    )

    def __init__(self, members: Iterable[Member], full: frozenset[str]) -> None:
        by_id: dict[str, Member] = {}
        for m in members:
            if m.node_id in by_id:
                raise ValueError(f"member {m.node_id} is listed twice")
            by_id[m.node_id] = m
        self.by_id = by_id
        self.full = full
        self.order = tuple(sorted(by_id.values(), key=lambda m: m.node_id))
        self.free = tuple(m for m in self.order if m.node_id not in full)
        self.nationals = tuple(m for m in self.order if m.rank == 0)
        by_place: dict[tuple[str, int], list[Member]] = {}
        free_in_province: dict[str, int] = {}
        for m in self.order:
            by_place.setdefault((m.province, m.rank), []).append(m)
            if m.node_id not in full:
                free_in_province[m.province] = free_in_province.get(m.province, 0) + 1
        self.by_place = {k: tuple(v) for k, v in by_place.items()}
        self.free_in_province = free_in_province
        self._above: dict[tuple[str, int], tuple[Member, ...]] = {}

    def above(self, province: str, rank: int) -> tuple[Member, ...]:
        """Members of ``province`` with a strictly higher tier than ``rank``."""
        found = self._above.get((province, rank))
        if found is None:
            ranks = range(min(rank, len(TIERS)))
            found = tuple(m for r in ranks for m in self.by_place.get((province, r), ()))
            self._above[province, rank] = found
        return found

    def eligible_dark(self, origin: Member | None) -> tuple[Member, ...]:
        ids = {m.node_id for m in self.nationals}
        if origin is not None:
            ids.add(origin.node_id)
            ids.update(a for a in origin.ancestors if a in self.by_id)
        return tuple(self.by_id[i] for i in sorted(ids))


def _area(origin: Member | None) -> tuple[str, int]:
    if origin is None:
        return _NO_PROVINCE, _UNKNOWN_RANK
    return origin.province, origin.rank


def _order(resource_key: bytes) -> Callable[[Member], tuple[int, str]]:
    def key(m: Member) -> tuple[int, str]:
        return -score(resource_key, m.key), m.node_id

    return key


# --- the direct computation -------------------------------------------------------------------


def place(
    resource: Resource,
    members: Iterable[Member],
    holders: Mapping[str, frozenset[str]],
    policy: Policy,
    today: datetime.date,
    full: frozenset[str] = frozenset(),
) -> Placement:
    """Where ``resource`` belongs, as every node computes it from the same state."""
    return _place(
        resource,
        _Roster(members, full),
        holders.get(resource.pid, frozenset()),
        policy,
        is_dark(resource, today),
    )


def _place(
    resource: Resource, ro: _Roster, held: frozenset[str], policy: Policy, dark: bool
) -> Placement:
    origin = ro.by_id.get(resource.origin)
    province, rank = _area(origin)
    pool = ro.eligible_dark(origin) if dark else ro.order
    eligible = {m.node_id for m in pool}
    order = _order(resource.key)
    holders = sorted((m for m in pool if m.node_id in held), key=order)
    target: list[str] = []
    chosen: set[str] = set()
    if origin is not None:
        target.append(origin.node_id)
        chosen.add(origin.node_id)

    def add(m: Member) -> None:
        target.append(m.node_id)
        chosen.add(m.node_id)

    rules: tuple[tuple[str, int, Callable[[Member], bool]], ...] = (
        (
            RULE_HIGHER,
            policy.min_higher_in_province,
            lambda m: m.province == province and m.rank < rank,
        ),
        (RULE_OUTSIDE, policy.min_outside_province, lambda m: m.province != province),
        (RULE_COPIES, policy.min_copies, lambda m: True),
    )
    unmet: list[str] = []
    unplaceable: list[str] = []
    for rule, need, fits in rules:
        candidates = [m for m in pool if fits(m)]
        if rule == RULE_HIGHER and not candidates:
            continue  # no node above the origin in its province: nothing to ask for
        have = sum(1 for i in target if i in eligible and fits(ro.by_id[i]))
        for m in holders:
            if have >= need:
                break
            if m.node_id not in chosen and fits(m):
                add(m)
                have += 1
        if have < need:
            fresh = [
                m
                for m in candidates
                if m.node_id not in held and m.node_id not in ro.full and m.node_id not in chosen
            ]
            for m in heapq.nsmallest(need - have, fresh, key=order):
                add(m)
                have += 1
        if have < need:
            unplaceable.append(rule)
        if sum(1 for m in holders if fits(m)) < need:
            unmet.append(rule)
    return Placement(tuple(target), tuple(unmet), tuple(unplaceable), dark)


# --- the per-node fast path -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Verdict:
    mine: bool  # this node is in the target
    settled: bool  # every node of the target holds the resource
    unmet: tuple[str, ...]
    unplaceable: tuple[str, ...]


def _judge(
    resource: Resource, ro: _Roster, held: frozenset[str], policy: Policy, me: Member | None
) -> _Verdict:
    """`_place` for open content seen from one node, without scoring the non-holders unless a
    rule is short of holders, and then only as far as needed to tell whether ``me`` is chosen.

    Non-holder picks of the outside-province and copies rules are only counted (``k2``,
    ``k3``): a holder is chosen in a holders phase, which depends on how many nodes are in the
    target already, not on which; and a non-holder ``me`` is chosen iff fewer than the rule's
    remaining count of its pool outscore it (see the scan at the end)."""
    full = ro.full
    origin = ro.by_id.get(resource.origin)
    province, rank = _area(origin)
    order = _order(resource.key)
    holders = sorted((ro.by_id[i] for i in held if i in ro.by_id), key=order)
    holder_ids = {m.node_id for m in holders}
    free_holders = held_higher = held_outside = free_held_outside = 0
    for m in holders:
        free = m.node_id not in full
        free_holders += free
        if m.province != province:
            held_outside += 1
            free_held_outside += free
        elif m.rank < rank:
            held_higher += 1
    chosen: set[str] = set()
    pending = 0  # target members that do not hold it yet
    if origin is not None:
        chosen.add(origin.node_id)
        pending += origin.node_id not in holder_ids
    unmet: list[str] = []
    unplaceable: list[str] = []

    # higher-in-province: the pool is one province's few upper-tier nodes, scored in full.
    need = policy.min_higher_in_province
    above = ro.above(province, rank)
    picks1: list[Member] = []
    if above:
        have = 0
        for m in holders:
            if have >= need:
                break
            if m.province == province and m.rank < rank:
                chosen.add(m.node_id)
                have += 1
        if have < need:
            fresh = [m for m in above if m.node_id not in holder_ids and m.node_id not in full]
            picks1 = heapq.nsmallest(need - have, fresh, key=order)
            chosen.update(m.node_id for m in picks1)
            have += len(picks1)
            pending += len(picks1)
        if have < need:
            unplaceable.append(RULE_HIGHER)
        if held_higher < need:
            unmet.append(RULE_HIGHER)

    # outside-province: nothing chosen so far is outside (origin and picks1 are inside).
    need = policy.min_outside_province
    have = 0
    for m in holders:
        if have >= need:
            break
        if m.province != province and m.node_id not in chosen:
            chosen.add(m.node_id)
            have += 1
    short2 = need - have
    k2 = 0
    if short2 > 0:
        free_outside = len(ro.free) - ro.free_in_province.get(province, 0)
        k2 = min(short2, free_outside - free_held_outside)
        have += k2
        pending += k2
    if have < need:
        unplaceable.append(RULE_OUTSIDE)
    if held_outside < need:
        unmet.append(RULE_OUTSIDE)

    # copies.
    need = policy.min_copies
    have = len(chosen) + k2
    for m in holders:
        if have >= need:
            break
        if m.node_id not in chosen:
            chosen.add(m.node_id)
            have += 1
    short3 = need - have
    if short3 > 0:
        origin_fresh = (
            origin is not None and origin.node_id not in holder_ids and origin.node_id not in full
        )
        k3 = min(short3, len(ro.free) - free_holders - origin_fresh - len(picks1) - k2)
        have += k3
        pending += k3
    if have < need:
        unplaceable.append(RULE_COPIES)
    if len(holders) < need:
        unmet.append(RULE_COPIES)

    verdict = _Verdict(False, pending == 0, tuple(unmet), tuple(unplaceable))
    if me is None:
        return verdict
    if me.node_id in chosen:
        return _Verdict(True, verdict.settled, verdict.unmet, verdict.unplaceable)
    if me.node_id in holder_ids or me.node_id in full or me.node_id == resource.origin:
        return verdict  # holders are only ever chosen in the holders phases, done above
    # `me` is a free non-holder outside the target so far. It is picked for outside-province
    # iff fewer than short2 of that pool outscore it; for copies iff fewer than short3 of the
    # remaining pool do, where that pool is every free non-holder but the origin, picks1 and
    # the outside-province picks (the top k2 of their pool).
    need2 = short2 if short2 > 0 and me.province != province else 0
    need3 = short3
    if need2 <= 0 and need3 <= 0:
        return verdict
    mine = order(me)
    above1 = sum(1 for m in picks1 if order(m) < mine)
    out_all = out2 = 0
    enough3 = need3 + above1 + k2
    for m in ro.free:
        if m.node_id in holder_ids or m.node_id == resource.origin or m is me:
            continue
        if order(m) < mine:
            out_all += 1
            out2 += m.province != province
            if out2 >= need2 and (need3 <= 0 or out_all >= enough3):
                break
    if need2 > 0 and out2 < need2:
        return _Verdict(True, verdict.settled, verdict.unmet, verdict.unplaceable)
    if need3 > 0:
        above2 = k2 if me.province != province else min(k2, out2)
        if out_all - above1 - above2 < need3:
            return _Verdict(True, verdict.settled, verdict.unmet, verdict.unplaceable)
    return verdict


# --- the node's plan --------------------------------------------------------------------------


def _subscribed(resource: Resource, ro: _Roster, me: Member, settings: Settings) -> bool:
    if resource.collection not in settings.subscriptions or resource.origin == me.node_id:
        return False
    origin = ro.by_id.get(resource.origin)
    return origin is not None and origin.rank < me.rank


def _sources(resource: Resource, ro: _Roster, held: frozenset[str], me: Member) -> tuple[str, ...]:
    ancestors = [a for a in me.ancestors if a in held and a in ro.by_id]
    first = set(ancestors)
    others = sorted(
        (ro.by_id[i] for i in held if i in ro.by_id and i not in first and i != me.node_id),
        key=_order(resource.key),
    )
    return (*ancestors, *(m.node_id for m in others))


def _index(items: Iterable[_T], pid: Callable[[_T], str], what: str) -> dict[str, _T]:
    found: dict[str, _T] = {}
    for item in items:
        key = pid(item)
        if key in found:
            raise ValueError(f"{what} {key} is listed twice")
        found[key] = item
    return found


def plan(
    self_id: str,
    members: Iterable[Member],
    policy: Policy,
    settings: Settings,
    resources: Iterable[Resource],
    holders: Mapping[str, frozenset[str]],
    local: Iterable[LocalCopy],
    today: datetime.date,
    full: frozenset[str] = frozenset(),
) -> Plan:
    """What ``self_id`` should fetch, keep (and as which class) and drop.

    A node that is not (or not yet) a member plans no change: it fetches nothing and keeps
    every copy as it is, so an incomplete membership view never costs copies."""
    ro = _Roster(members, full)
    me = ro.by_id.get(self_id)
    by_pid = _index(resources, lambda r: r.pid, "resource")
    copies = _index(local, lambda c: c.pid, "local copy")
    empty: frozenset[str] = frozenset()

    below = dict.fromkeys(RULES, 0)
    unplaceable = dict.fromkeys(RULES, 0)
    live = at_risk = 0
    wants: list[tuple[int, int, str, Want]] = []
    kept: dict[str, tuple[str, int]] = {}  # pid -> (class, bytes)
    drop: list[str] = []
    releasable: set[str] = set()  # kept only until the target holds it

    for res in by_pid.values():
        if res.size <= 0:
            continue
        live += 1
        held = holders.get(res.pid, empty)
        dark = is_dark(res, today)
        if dark:
            placed = _place(res, ro, held, policy, True)
            mine = me is not None and me.node_id in placed.target
            settled = all(i in held for i in placed.target)
            unmet_rules, unplaceable_rules = placed.unmet, placed.unplaceable
        else:
            v = _judge(res, ro, held, policy, me)
            mine, settled, unmet_rules, unplaceable_rules = (
                v.mine,
                v.settled,
                v.unmet,
                v.unplaceable,
            )
        for rule in unmet_rules:
            below[rule] += 1
        for rule in unplaceable_rules:
            unplaceable[rule] += 1
        risky = sum(1 for i in held if i in ro.by_id) < AT_RISK_HOLDERS
        at_risk += risky
        if me is None:
            continue
        copy = copies.get(res.pid)
        subscribed = not dark and _subscribed(res, ro, me, settings)
        if copy is None:
            if mine or subscribed:
                klass = KLASS_PRESERVATION if mine else KLASS_SUBSCRIPTION
                if mine:
                    priority = PRIORITY_REPAIR if risky else PRIORITY_PRESERVATION
                else:
                    priority = PRIORITY_SUBSCRIPTION
                want = Want(res.pid, klass, priority, res.size, dark, _sources(res, ro, held, me))
                wants.append((priority, -score(res.key, me.key), res.pid, want))
            continue
        if res.origin == me.node_id:
            kept[res.pid] = (KLASS_OWN, res.size)
        elif mine:
            kept[res.pid] = (KLASS_PRESERVATION, res.size)
        elif subscribed:
            kept[res.pid] = (KLASS_SUBSCRIPTION, res.size)
        elif copy.klass == KLASS_CACHE and not dark:
            kept[res.pid] = (KLASS_CACHE, res.size)
        elif copy.klass in (KLASS_OWN, KLASS_PRESERVATION) and not settled:
            kept[res.pid] = (KLASS_PRESERVATION, res.size)
            releasable.add(res.pid)
        else:
            drop.append(res.pid)

    health = Health(live, below, at_risk, unplaceable)
    for pid, copy in copies.items():
        current = by_pid.get(pid)
        if current is not None and current.size > 0:
            continue
        if me is None or copy.klass == KLASS_OWN:
            kept[pid] = (copy.klass, copy.size)  # deleted, but an own copy stays
        else:
            drop.append(pid)
    if me is None:
        for pid, copy in copies.items():
            kept.setdefault(pid, (copy.klass, copy.size))
        usage = dict.fromkeys(CLASSES, 0)
        for klass, size in kept.values():
            usage[klass] += size
        return Plan([], {p: kept[p][0] for p in sorted(kept)}, [], health, usage, (0, 0))

    # Quota. Held policy copies first; if they alone are over, shed the lowest classes.
    def used(*classes: str) -> int:
        return sum(size for klass, size in kept.values() if klass in classes)

    def shed_order(pid: str) -> tuple[bool, int, int, str]:
        # Over quota (the quota was lowered, or the library's own collection grew): first what
        # is only kept until its new placement holds it, then the copies of resources with the
        # most other holders (never first the ones whose copies are few), least recently used.
        return (
            pid not in releasable,
            -len(holders.get(pid, empty)),
            copies[pid].last_used_ms,
            pid,
        )

    quota = settings.quota_bytes
    shed_count = shed_bytes = 0
    over = used(KLASS_OWN, KLASS_PRESERVATION, KLASS_SUBSCRIPTION) - quota
    for klass in (KLASS_SUBSCRIPTION, KLASS_PRESERVATION):
        for pid in sorted((p for p, (k, _) in kept.items() if k == klass), key=shed_order):
            if over <= 0:
                break
            size = kept.pop(pid)[1]
            drop.append(pid)
            over -= size
            shed_count += 1
            shed_bytes += size
    room = quota - used(KLASS_OWN, KLASS_PRESERVATION, KLASS_SUBSCRIPTION)

    fetch: list[Want] = []
    deferred_count = deferred_bytes = 0
    for _, _, _, want in sorted(wants, key=lambda w: w[:3]):
        if want.size <= room:
            fetch.append(want)
            room -= want.size
        else:
            deferred_count += 1
            deferred_bytes += want.size

    # Cache: what is left, up to cache_bytes; the least recently used go first.
    cached = sorted(
        (p for p, (k, _) in kept.items() if k == KLASS_CACHE),
        key=lambda p: (copies[p].last_used_ms, p),
    )
    excess = used(KLASS_CACHE) - max(0, min(settings.cache_bytes, room))
    for pid in cached:
        if excess <= 0:
            break
        excess -= kept.pop(pid)[1]
        drop.append(pid)

    usage = dict.fromkeys(CLASSES, 0)
    for klass, size in kept.values():
        usage[klass] += size
    for want in fetch:
        usage[want.klass] += want.size
    fetch.sort(key=lambda w: (w.priority, w.pid))
    return Plan(
        fetch=fetch,
        keep={pid: kept[pid][0] for pid in sorted(kept)},
        drop=sorted(drop),
        health=health,
        usage=usage,
        deferred_for_quota=(deferred_count, deferred_bytes),
        dropped_for_quota=(shed_count, shed_bytes),
    )
