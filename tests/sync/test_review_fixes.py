"""Regressions for the review of catalogue sync: cases where two honest nodes never converged,
or where one member could freeze, flood or stall a node."""

from __future__ import annotations

import pytest

from protocol.hlc import Hlc
from protocol.membership import Revocation, sign_revocation
from protocol.reconcile import (
    ID_SIZE,
    MAX_TIMESTAMP,
    Bound,
    Item,
    Mode,
    Range,
    ReconcileMessage,
    Reconciler,
    SortedItems,
    encode_message,
)
from protocol.records import CatalogueRecord, LangString, encode_envelope, sign_catalogue
from sync.authority import Rejected
from sync.records import decode_record
from tests.sync.netbuild import TestNetwork, catalogue_record
from tests.sync.test_engine import (
    COUNTY,
    MUNICIPAL,
    Wire,
    make_node,
    now_ms,
    pid_of,
)


@pytest.fixture(scope="module")
def net() -> TestNetwork:
    return TestNetwork.build(1, 1, 1)


def _version(net: TestNetwork, pid: str, wall: int, title: str, *, by: int = COUNTY) -> bytes:
    county = net.libraries[COUNTY]
    body = CatalogueRecord(
        pid=pid,
        origin=county.public_key,
        version=Hlc(wall),
        dc={"title": (LangString(title, "zh"),)},
    )
    signer = net.libraries[by].member.key
    return encode_envelope(sign_catalogue(body, signer, delegated=by != COUNTY))


async def test_two_bodies_with_one_version_converge(net: TestNetwork) -> None:
    # The origin signed two different bodies with the same version (a restored clock): every
    # node must keep the same one, not each its own forever.
    wire = Wire()
    a = await make_node(wire, net, "a")
    b = await make_node(wire, net, "b")
    pid = pid_of(catalogue_record(net.libraries[COUNTY], now_ms()))
    wall = now_ms()
    one, two = _version(net, pid, wall, "甲"), _version(net, pid, wall, "乙")
    await a.engine.apply([one], None, gossip=False)
    await b.engine.apply([two], None, gossip=False)
    await a.engine.reconcile_with("b")
    stats = await a.engine.reconcile_with("b")
    assert await a.ids() == await b.ids()
    assert stats.last_result == "in sync"


async def test_a_deletion_outranks_any_later_edit(net: TestNetwork) -> None:
    wire = Wire()
    a = await make_node(wire, net, "a")
    county = net.libraries[COUNTY]
    live = catalogue_record(county, now_ms())
    pid = pid_of(live)
    record = decode_record(live).body
    assert isinstance(record, CatalogueRecord)
    tombstone = encode_envelope(
        sign_catalogue(
            CatalogueRecord(pid, county.public_key, Hlc(record.version.wall_ms + 1), deleted=True),
            county.member.key,
        )
    )
    later_edit = _version(net, pid, record.version.wall_ms + 10_000, "复活")
    await a.engine.apply([live, tombstone], None, gossip=False)
    result = await a.engine.apply([later_edit], "peer", gossip=False)
    assert result.stale == 1 and not result.applied
    held = a.records.by_slot[pid].body  # type: ignore[attr-defined]
    assert held.deleted


async def test_a_version_dated_past_the_librarys_certificate_is_refused(net: TestNetwork) -> None:
    wire = Wire()
    a = await make_node(wire, net, "a")
    pid = pid_of(catalogue_record(net.libraries[COUNTY], now_ms()))
    far = _version(net, pid, 2**48 - 1, "远未来")
    result = await a.engine.apply([far], "peer", gossip=False)
    assert result.rejected == 1 and not result.applied
    assert ("peer", Rejected.code) in a.refused


async def test_a_county_cannot_fill_the_set_with_revocations(net: TestNetwork) -> None:
    wire = Wire()
    a = await make_node(wire, net, "a")
    county = net.libraries[COUNTY]
    revocation = Revocation(net.network, b"\x07" * 32, county.public_key, now_ms(), "spam")
    envelope = encode_envelope(sign_revocation(revocation, county.member.key))
    result = await a.engine.apply([envelope], "peer", gossip=False)
    assert result.rejected == 1 and not result.applied
    municipal = net.libraries[MUNICIPAL]
    honest = Revocation(net.network, county.public_key, municipal.public_key, now_ms(), "closed")
    result = await a.engine.apply(
        [encode_envelope(sign_revocation(honest, municipal.member.key))], "peer", gossip=False
    )
    assert len(result.applied) == 1


class CountingItems(SortedItems):
    """SortedItems that counts the items read one by one."""

    reads = 0

    def item(self, index: int) -> Item:
        self.reads += 1
        return super().item(index)


def test_a_responder_answers_a_whole_set_id_list_within_its_frame() -> None:
    # A 17-byte message naming the whole range as an (empty) id list: the answer is cut to the
    # frame without reading every id (it took seconds at a million items).
    storage = CountingItems(Item(i, i.to_bytes(ID_SIZE, "big")) for i in range(200_000))
    message = encode_message(ReconcileMessage((Range(Bound(MAX_TIMESTAMP), Mode.ID_LIST, ids=()),)))
    reply = Reconciler(storage, initiator=False).reconcile(message).reply
    assert reply is not None and len(reply) <= 60_000
    assert storage.reads < 2_000  # the ~1,800 ids a 60 KB frame holds, not 200,000


async def test_a_peer_naming_records_it_does_not_serve_ends_the_round(net: TestNetwork) -> None:
    wire = Wire()
    a = await make_node(wire, net, "a")
    b = await make_node(wire, net, "b")
    await b.engine.apply(
        [catalogue_record(net.libraries[COUNTY], now_ms()) for _ in range(200)], None, gossip=False
    )

    async def serve_nothing(peer: str, ids: object) -> list[bytes]:
        return []

    b.engine.answer_fetch = serve_nothing  # type: ignore[method-assign,assignment]
    stats = await a.engine.reconcile_with("b")
    assert stats.last_result == "interrupted"
    assert "does not serve" in (stats.last_error or "")


async def test_a_certificate_written_by_the_cli_counts_at_once(net: TestNetwork) -> None:
    # `siku enroll approve` writes the child's certificate while the daemon runs; records of the
    # child that arrived first wait for it and are applied once the daemon notices it.
    wire = Wire()
    a = await make_node(wire, net, "a", certificates=False)
    county = net.libraries[COUNTY]
    chain = [decode_record(e) for e in net.certificates(COUNTY)]
    above = [r for r in chain if r.body.subject.public_key != county.public_key]  # type: ignore[union-attr]
    await a.engine.apply([r.envelope for r in above], None, gossip=False)
    record = catalogue_record(county, now_ms())
    assert (await a.engine.apply([record], "peer", gossip=False)).deferred == 1
    own = next(r for r in chain if r.body.subject.public_key == county.public_key)  # type: ignore[union-attr]
    assert a.records.put_local(own)  # type: ignore[attr-defined]
    await a.engine.publish_local()
    assert decode_record(record).id in await a.ids()
