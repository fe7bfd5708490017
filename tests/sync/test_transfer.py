"""The content transfer engine (sync/transfer.py) against an in-memory chunk store and fake
holders that can be slow, vanish, lie, corrupt or answer short."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pytest

from protocol.records import CHUNK_SIZE, ChunkRef
from sync.engine import TransportError
from sync.transfer import (
    CACHE,
    CANCELLED_UNPLANNED,
    PRESERVATION,
    REPAIR,
    SUBSCRIPTION,
    TokenBucket,
    TransferError,
    TransferService,
    TransferSettings,
    TransferTask,
    split_batches,
)
from sync.windows import Window

# --- content ------------------------------------------------------------------------------------


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def make_content(sizes: Sequence[int]) -> tuple[tuple[ChunkRef, ...], dict[bytes, bytes]]:
    refs, blobs = [], {}
    for size in sizes:
        data = os.urandom(size)
        refs.append(ChunkRef(sha(data), size))
        blobs[refs[-1].digest] = data
    return tuple(refs), blobs


def task(
    pid: str,
    refs: tuple[ChunkRef, ...],
    sources: Sequence[str] = ("A", "B"),
    priority: int = PRESERVATION,
) -> TransferTask:
    return TransferTask(pid, "preservation", priority, refs, tuple(sources), dark=False)


# --- fakes --------------------------------------------------------------------------------------


class FakeSink:
    """Chunks put are held but volatile until flush; `missing(verify=True)` re-hashes."""

    def __init__(self) -> None:
        self.volatile: dict[bytes, bytes] = {}
        self.durable: dict[bytes, bytes] = {}
        self.bad_puts: list[bytes] = []
        self.missing_calls: list[tuple[list[bytes], bool]] = []
        self.flushes = 0
        self.flush_gate: asyncio.Event | None = None
        self.fail_flush = False

    async def missing(self, digests: Sequence[bytes], *, verify: bool) -> list[bytes]:
        self.missing_calls.append((list(digests), verify))
        out = []
        for d in digests:
            data = self.volatile.get(d, self.durable.get(d))
            if data is None or (verify and sha(data) != d):
                out.append(d)
        return out

    async def put(self, chunks: Sequence[tuple[bytes, bytes]]) -> None:
        for digest, data in chunks:
            if sha(data) != digest:
                self.bad_puts.append(digest)
            self.volatile[digest] = bytes(data)

    async def flush(self) -> None:
        if self.flush_gate is not None:
            await self.flush_gate.wait()
        if self.fail_flush:
            raise OSError("disk full")
        self.durable.update(self.volatile)
        self.volatile.clear()
        self.flushes += 1

    def holds_durably(self, refs: Sequence[ChunkRef]) -> bool:
        return all(sha(self.durable.get(c.digest, b"")) == c.digest for c in refs)


@dataclass
class Holder:
    chunks: dict[bytes, bytes]
    corrupt: set[bytes] = field(default_factory=set)  # served with a flipped byte
    short: set[bytes] = field(default_factory=set)  # served truncated
    fail_after: int | None = None  # answered requests before it vanishes
    prefix: int | None = None  # at most this many chunks per answer
    delay: Callable[[], float] = lambda: 0.0
    gate: asyncio.Event | None = None
    answered: int = 0


class FakeSource:
    def __init__(self, holders: dict[str, Holder]) -> None:
        self.holders = holders
        self.requests: list[tuple[str, list[bytes]]] = []
        self.pids: set[str] = set()  # resources the requests named
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0
        self.on_request: Callable[[str, list[bytes]], None] | None = None

    async def fetch_chunks(
        self, peer: str, pid: str, digests: Sequence[bytes], max_bytes: int
    ) -> list[bytes]:
        self.pids.add(pid)
        holder = self.holders.get(peer)
        if holder is None:
            raise TransportError(f"{peer} unreachable")
        self.requests.append((peer, list(digests)))
        if self.on_request is not None:
            self.on_request(peer, list(digests))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = holder.delay()
            if delay:
                await asyncio.sleep(delay)
            if holder.gate is not None:
                await holder.gate.wait()
            if holder.fail_after is not None and holder.answered >= holder.fail_after:
                raise TransportError(f"{peer} went away")
            holder.answered += 1
            out: list[bytes] = []
            total = 0
            for d in digests:
                data = holder.chunks.get(d)
                if data is None or (out and total + len(data) > max_bytes):
                    break
                if d in holder.corrupt:
                    data = bytes([data[0] ^ 1]) + data[1:]
                if d in holder.short:
                    data = data[:-1]
                out.append(data)
                total += len(data)
                if holder.prefix is not None and len(out) >= holder.prefix:
                    break
            return out
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


class Recorder:
    """on_complete / on_peer_fault; on_complete checks the durability invariant as it is called."""

    def __init__(self, sink: FakeSink) -> None:
        self.sink = sink
        self.completed: list[TransferTask] = []
        self.not_durable: list[str] = []
        self.faults: list[tuple[str, str]] = []
        self.failed: list[tuple[str, str]] = []
        self.cancelled: list[tuple[str, int, int, str]] = []

    async def on_complete(self, t: TransferTask) -> None:
        if not self.sink.holds_durably(t.chunks):
            self.not_durable.append(t.pid)
        self.completed.append(t)

    def on_peer_fault(self, peer: str, reason: str) -> None:
        self.faults.append((peer, reason))

    def on_failed(self, t: TransferTask, reason: str) -> None:
        self.failed.append((t.pid, reason))

    def on_cancelled(self, t: TransferTask, done: int, total: int, reason: str) -> None:
        self.cancelled.append((t.pid, done, total, reason))


def service(
    source: FakeSource,
    sink: FakeSink,
    rec: Recorder,
    reachable: Callable[[], set[str]] | None = None,
    fake_time: FakeTime | None = None,
    **settings: object,
) -> TransferService:
    base: dict[str, object] = {"retry_after_s": 0.2, "peer_backoff_s": 0.05, "poll_s": 0.05}
    base.update(settings)
    return TransferService(
        source,
        sink,
        TransferSettings(**base),  # type: ignore[arg-type]
        reachable=reachable or (lambda: set(source.holders)),
        on_complete=rec.on_complete,
        on_peer_fault=rec.on_peer_fault,
        on_failed=rec.on_failed,
        on_cancelled=rec.on_cancelled,
        clock=fake_time.clock if fake_time else time.monotonic,
        sleep=fake_time.sleep if fake_time else asyncio.sleep,
    )


@contextlib.asynccontextmanager
async def running(svc: TransferService) -> AsyncIterator[TransferService]:
    runner = asyncio.create_task(svc.run())
    try:
        yield svc
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        assert runner.cancelled()


async def until(cond: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


SMALL = [CHUNK_SIZE] * 6 + [4096] * 30 + [1234]  # some 1 MiB chunks, many small ones


# --- pure parts ---------------------------------------------------------------------------------


def test_split_batches_bounds_bytes_and_count_and_keeps_order() -> None:
    refs, _ = make_content([CHUNK_SIZE] * 5 + [100] * 7 + [CHUNK_SIZE])
    batches = split_batches(refs, 2 * CHUNK_SIZE, 4)
    assert [c for b in batches for c in b] == list(refs)
    assert all(sum(c.size for c in b) <= 2 * CHUNK_SIZE and len(b) <= 4 for b in batches)
    assert [len(b) for b in batches] == [2, 2, 4, 4, 1]
    assert split_batches(refs[:1], 10, 4) == [refs[:1]]  # a chunk over the limit goes alone
    assert split_batches((), 10, 4) == []


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=1000, burst=500, now=0.0)
    assert bucket.reserve(500, 0.0) == 0.0  # the burst
    assert bucket.reserve(1000, 0.0) == pytest.approx(1.0)  # overdraw: wait for the debt
    assert bucket.reserve(100, 1.0) == pytest.approx(0.1)
    assert bucket.reserve(0, 100.0) == 0.0
    assert bucket.reserve(600, 100.0) == pytest.approx(0.1)  # refilled to the burst only
    bucket.refund(600)
    assert bucket.reserve(500, 100.0) == 0.0


# --- background transfers -------------------------------------------------------------------------


async def test_fetches_verifies_flushes_then_completes() -> None:
    refs, blobs = make_content(SMALL)
    source = FakeSource({"A": Holder(blobs), "B": Holder(blobs)})
    sink = FakeSink()
    rec = Recorder(sink)
    svc = service(source, sink, rec, batch_chunks=8)
    async with running(svc):
        svc.set_plan([task("p1", refs)])
        await until(lambda: bool(rec.completed))
    assert rec.completed[0].pid == "p1" and rec.not_durable == []
    assert sink.holds_durably(refs) and sink.bad_puts == []
    assert sink.missing_calls[0][1] is True  # resume check re-verifies
    peers = {p for p, _ in source.requests}
    assert peers == {"A", "B"}  # batches spread over the holders
    fetched = [d for _, ds in source.requests for d in ds]
    assert sorted(fetched) == sorted(c.digest for c in refs)  # each chunk once
    st = svc.status()
    json.dumps(st)
    assert st["totals"]["chunks"] == len(refs)
    assert st["totals"]["bytes"] == sum(SMALL)
    assert st["totals"]["tasks_completed"] == 1
    assert st["active"] == [] and st["queued"]["preservation"]["tasks"] == 0


async def test_not_complete_before_flush_and_failed_flush_is_a_failure() -> None:
    refs, blobs = make_content([5000] * 4)
    sink = FakeSink()
    sink.flush_gate = asyncio.Event()
    rec = Recorder(sink)
    svc = service(FakeSource({"A": Holder(blobs)}), sink, rec)
    async with running(svc):
        svc.set_plan([task("p1", refs, ["A"])])
        await until(lambda: len(sink.volatile) == 4)
        await asyncio.sleep(0.05)
        assert rec.completed == []
        assert svc.status()["active"][0]["state"] == "flushing"
        sink.fail_flush = True
        sink.flush_gate.set()
        await until(lambda: bool(svc.status()["failures"]))
        assert rec.completed == []
        assert "disk full" in svc.status()["failures"][0]["reason"]
        sink.fail_flush = False  # retried after retry_after_s
        await until(lambda: bool(rec.completed))
    assert rec.not_durable == []


async def test_corrupt_chunk_detected_refetched_elsewhere_and_counted() -> None:
    refs, blobs = make_content([4096] * 40)
    bad = refs[5].digest
    short = {c.digest for c in refs[10:]}
    source = FakeSource(
        {"A": Holder(blobs, corrupt={bad}), "B": Holder(blobs), "C": Holder(blobs, short=short)}
    )
    sink = FakeSink()
    rec = Recorder(sink)
    svc = service(source, sink, rec, batch_chunks=10, max_requests=1)
    async with running(svc):
        svc.set_plan([task("p1", refs, ["A", "B", "C"])])
        await until(lambda: bool(rec.completed))
    assert sink.bad_puts == []  # never stored
    assert ("A", "corrupt-chunk") in rec.faults and ("C", "corrupt-chunk") in rec.faults
    assert sink.holds_durably(refs)
    # after its corrupt answer A is not asked again for this task
    first_a = next(i for i, (p, ds) in enumerate(source.requests) if p == "A" and bad in ds)
    assert all(p != "A" for p, _ in source.requests[first_a + 1 :])
    assert [p for p, ds in source.requests if bad in ds][-1] != "A"
    st = svc.status()
    assert st["totals"]["corrupt_chunks"] >= 2
    assert st["peer_faults"]["A"] == {"corrupt-chunk": 1}


async def test_vanishing_holder_replaced_by_another() -> None:
    refs, blobs = make_content([4096] * 60)
    source = FakeSource({"A": Holder(blobs, fail_after=2), "B": Holder(blobs)})
    sink = FakeSink()
    rec = Recorder(sink)
    svc = service(source, sink, rec, batch_chunks=5, max_requests=2)
    async with running(svc):
        svc.set_plan([task("p1", refs)])
        await until(lambda: bool(rec.completed))
    assert sink.holds_durably(refs) and rec.faults == []  # not a protocol fault
    assert source.holders["A"].answered == 2
    assert svc.status()["peer_faults"]["A"]["transport"] >= 1


async def test_no_holder_left_fails_with_reason_then_retries_when_still_planned() -> None:
    refs, blobs = make_content([4096] * 8)
    source = FakeSource({"A": Holder(blobs, corrupt={refs[0].digest})})
    sink = FakeSink()
    rec = Recorder(sink)
    reachable: set[str] = set()
    svc = service(source, sink, rec, reachable=lambda: reachable)
    async with running(svc):
        svc.set_plan([task("p1", refs, ["A", "B"])])
        await until(lambda: len(svc.status()["failures"]) == 1)
        assert svc.status()["failures"][0]["reason"] == "no reachable holder"
        assert svc.resting() == {"p1"}  # waiting for its retry
        reachable.add("A")
        await until(lambda: len(svc.status()["failures"]) == 2)
        assert svc.status()["failures"][1]["reason"] == "all holders failed: A: corrupt-chunk"
        assert rec.failed == [
            ("p1", "no reachable holder"),
            ("p1", "all holders failed: A: corrupt-chunk"),
        ]
        assert rec.completed == []
        source.holders["B"] = Holder(blobs)
        reachable.add("B")
        await until(lambda: bool(rec.completed))
    assert sink.holds_durably(refs) and sink.bad_puts == []
    assert svc.resting() == set()


async def test_holder_answering_nothing_is_set_aside() -> None:
    refs, blobs = make_content([4096] * 20)
    source = FakeSource({"A": Holder({}), "B": Holder(blobs)})
    sink = FakeSink()
    rec = Recorder(sink)
    svc = service(source, sink, rec, batch_chunks=2, max_requests=1, peer_backoff_s=10.0)
    async with running(svc):
        svc.set_plan([task("p1", refs)])
        await until(lambda: bool(rec.completed))
    assert [p for p, _ in source.requests].count("A") == 1  # resting after the empty answer
    assert svc.status()["peer_faults"]["A"] == {"empty-answer": 1}


async def test_short_answers_are_requeued_without_fault() -> None:
    refs, blobs = make_content([4096] * 12)
    source = FakeSource({"A": Holder(blobs, prefix=3)})
    sink = FakeSink()
    rec = Recorder(sink)
    svc = service(source, sink, rec, max_requests=1)
    async with running(svc):
        svc.set_plan([task("p1", refs, ["A"])])
        await until(lambda: bool(rec.completed))
    assert len(source.requests) == 4 and source.requests[1][1] == [c.digest for c in refs[3:]]
    assert svc.status()["peer_faults"] == {} and sink.holds_durably(refs)


async def test_restart_resumes_with_what_is_missing_and_refetches_damage() -> None:
    refs, blobs = make_content([4096] * 40)
    gate = asyncio.Event()
    holder = Holder(blobs)
    source = FakeSource({"A": holder})
    sink = FakeSink()
    rec = Recorder(sink)
    svc = service(source, sink, rec, batch_chunks=10, max_requests=1)

    def stall_after_two(peer: str, digests: list[bytes]) -> None:
        if len(source.requests) == 3:
            holder.gate = gate  # the third request hangs: the node is stopped meanwhile

    source.on_request = stall_after_two
    async with running(svc):
        svc.set_plan([task("p1", refs, ["A"])])
        await until(lambda: len(source.requests) == 3)
    assert source.cancelled == 1 and rec.completed == []
    await sink.flush()  # what was put before the stop survived it
    assert len(sink.durable) == 20
    damaged = refs[4].digest
    sink.durable[damaged] = b"rot" + sink.durable[damaged][3:]

    holder.gate = None
    source2 = FakeSource({"A": holder})
    rec2 = Recorder(sink)
    svc2 = service(source2, sink, rec2, batch_chunks=10)
    async with running(svc2):
        svc2.set_plan([task("p1", refs, ["A"])])
        await until(lambda: bool(rec2.completed))
    fetched = sorted(d for _, ds in source2.requests for d in ds)
    assert fetched == sorted([damaged] + [c.digest for c in refs[20:]])
    assert sink.holds_durably(refs) and rec2.not_durable == []
    st = svc2.status()["active"]
    assert st == []


async def test_a_task_whose_content_changed_restarts_and_says_why() -> None:
    old_refs, old_blobs = make_content([4096] * 4)
    new_refs, new_blobs = make_content([4096] * 6)
    gate = asyncio.Event()
    source = FakeSource({"A": Holder(old_blobs | new_blobs, gate=gate)})
    sink = FakeSink()
    rec = Recorder(sink)
    svc = service(source, sink, rec)
    async with running(svc):
        svc.set_plan([task("p1", old_refs, ["A"])])
        await until(lambda: source.in_flight == 1)
        svc.set_plan([task("p1", new_refs, ["A"])])  # a new version of the record
        gate.set()
        await until(lambda: bool(rec.completed))
    assert rec.cancelled == [("p1", 0, 4 * 4096, "restarted: the resource's content changed")]
    assert [t.chunks for t in rec.completed] == [new_refs]


async def test_set_plan_cancels_unwanted_and_keeps_wanted() -> None:
    refs1, blobs1 = make_content([4096] * 10)
    refs2, blobs2 = make_content([4096] * 10)
    gate = asyncio.Event()
    source = FakeSource({"A": Holder(blobs1 | blobs2, gate=gate)})
    sink = FakeSink()
    rec = Recorder(sink)
    svc = service(source, sink, rec, max_tasks=2)
    async with running(svc):
        t1, t2 = task("p1", refs1, ["A"]), task("p2", refs2, ["A"])
        svc.set_plan([t1, t2])
        await until(lambda: source.in_flight == 2)
        assert {a["pid"] for a in svc.status()["active"]} == {"p1", "p2"}
        # p2 is replanned (a new but equal task, other sources): it keeps going; p1 is dropped
        svc.set_plan([task("p2", refs2, ["A", "B"], priority=REPAIR)])
        await until(lambda: [a["pid"] for a in svc.status()["active"]] == ["p2"])
        assert source.cancelled == 1
        assert svc.status()["totals"]["tasks_cancelled"] == 1
        # Said, with how far it had got and why.
        assert rec.cancelled == [("p1", 0, 10 * 4096, CANCELLED_UNPLANNED)]
        gate.set()
        await until(lambda: bool(rec.completed))
        await asyncio.sleep(0.05)
    assert [t.pid for t in rec.completed] == ["p2"]
    assert [d for d, _ in sink.missing_calls].count([c.digest for c in refs2]) == 1  # not restarted
    assert not any(c.digest in sink.volatile or c.digest in sink.durable for c in refs1)


async def test_priorities_decide_what_starts_first() -> None:
    tasks = []
    blobs: dict[bytes, bytes] = {}
    for pid, prio in [("c", CACHE), ("s", SUBSCRIPTION), ("p", PRESERVATION), ("r", REPAIR)]:
        refs, b = make_content([4096] * 3)
        blobs |= b
        tasks.append(task(pid, refs, ["A"], priority=prio))
    source = FakeSource({"A": Holder(blobs)})
    sink = FakeSink()
    rec = Recorder(sink)
    svc = service(source, sink, rec, max_tasks=1)
    svc.set_plan(tasks)
    st = svc.status()["queued"]
    assert [st[k]["tasks"] for k in ("repair", "preservation", "subscription", "cache")] == [1] * 4
    async with running(svc):
        await until(lambda: len(rec.completed) == 4)
    assert [t.pid for t in rec.completed] == ["r", "p", "s", "c"]


async def test_requests_in_flight_are_bounded_across_tasks() -> None:
    rng = random.Random(5)
    plan, blobs = [], {}
    for i in range(3):
        refs, b = make_content([4096] * 40)
        blobs |= b
        plan.append(task(f"p{i}", refs, ["A", "B"]))
    source = FakeSource(
        {
            "A": Holder(blobs, delay=lambda: rng.uniform(0.001, 0.01)),
            "B": Holder(blobs, delay=lambda: rng.uniform(0.001, 0.01)),
        }
    )
    sink = FakeSink()
    rec = Recorder(sink)
    svc = service(source, sink, rec, max_tasks=3, max_requests=3, batch_chunks=4)
    async with running(svc):
        svc.set_plan(plan)
        await until(lambda: len(rec.completed) == 3)
    assert source.max_in_flight == 3
    assert svc.status()["requests_in_flight"] == 0


class FakeTime:
    def __init__(self) -> None:
        self.t = 0.0

    def clock(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        target = self.t + seconds
        await asyncio.sleep(0)
        self.t = max(self.t, target)


async def test_rate_limit_holds_on_a_fake_clock_and_streams_ignore_it() -> None:
    refs, blobs = make_content([64 << 10] * 80)  # 5 MiB
    rate = 1_000_000
    ft = FakeTime()
    source = FakeSource({"A": Holder(blobs), "B": Holder(blobs)})
    starts: list[tuple[float, int]] = []
    source.on_request = lambda peer, ds: starts.append((ft.t, len(ds) * (64 << 10)))
    sink = FakeSink()
    rec = Recorder(sink)
    svc = service(
        source, sink, rec, fake_time=ft, rate_limit_bytes_per_s=rate, batch_bytes=CHUNK_SIZE
    )
    async with running(svc):
        svc.set_plan([task("p1", refs)])
        await until(lambda: bool(rec.completed))
    total = 0
    for t, n in sorted(starts):
        total += n
        assert total <= rate + rate * t + 1  # burst (1 s) + rate × elapsed
    assert total == 80 * (64 << 10)
    assert (total - rate) / rate - 1e-6 <= max(t for t, _ in starts) <= total / rate

    before = ft.t
    refs2, blobs2 = make_content([64 << 10] * 40)
    source.holders["A"].chunks |= blobs2
    got = [d async for d in svc.stream(refs2, ["A"], pid="p")]
    assert got == [blobs2[c.digest] for c in refs2] and ft.t == before


async def test_under_a_rate_limit_a_request_carries_about_a_seconds_worth() -> None:
    refs, blobs = make_content([64 << 10] * 80)  # 5 MiB, default batches of 8 MiB
    sizes: dict[int, list[int]] = {}
    for rate in (0, 3_000_000, 200_000):
        ft = FakeTime()
        source = FakeSource({"A": Holder(blobs)})
        sizes[rate] = []
        source.on_request = lambda peer, ds, out=sizes[rate]: out.append(len(ds) * (64 << 10))
        sink = FakeSink()
        rec = Recorder(sink)
        svc = service(source, sink, rec, fake_time=ft, rate_limit_bytes_per_s=rate)
        async with running(svc):
            svc.set_plan([task("p1", refs)])
            await until(lambda done=rec.completed: bool(done))
        assert sum(sizes[rate]) == 80 * (64 << 10)
    assert sizes[0] == [80 * (64 << 10)]  # unlimited: one request
    assert max(sizes[3_000_000]) == 45 * (64 << 10)  # the most chunks within 3 MB
    assert max(sizes[200_000]) == CHUNK_SIZE  # never less than one chunk's worth


async def test_windows_pause_and_resume() -> None:
    refs, blobs = make_content([4096] * 30)
    now = [datetime(2024, 3, 10, 3, 0)]
    source = FakeSource({"A": Holder(blobs)})
    sink = FakeSink()
    rec = Recorder(sink)
    svc = TransferService(
        source,
        sink,
        TransferSettings(
            windows=(Window.parse("01:00-02:00"),), batch_chunks=3, max_requests=1, poll_s=0.02
        ),
        reachable=lambda: {"A"},
        on_complete=rec.on_complete,
        on_peer_fault=rec.on_peer_fault,
        wall=lambda: now[0],
    )

    def window_ends_at_fourth(peer: str, digests: list[bytes]) -> None:
        if len(source.requests) == 4:
            now[0] = datetime(2024, 3, 10, 2, 0)

    source.on_request = window_ends_at_fourth
    async with running(svc):
        svc.set_plan([task("p1", refs, ["A"])])
        await asyncio.sleep(0.1)
        st = svc.status()
        assert source.requests == [] and st["active"] == []
        assert st["window"] == {
            "windows": ["01:00-02:00"],
            "in_force": False,
            "next_start": "2024-03-11T01:00",
        }
        now[0] = datetime(2024, 3, 11, 1, 30)
        await until(lambda: len(source.requests) == 4)
        await asyncio.sleep(0.1)
        assert len(source.requests) == 4  # the request in flight finished, then nothing
        assert len(sink.volatile) == 12
        assert svc.status()["active"][0]["state"] == "waiting-window"
        now[0] = datetime(2024, 3, 11, 1, 0)
        await until(lambda: bool(rec.completed))
    assert len(source.requests) == 10 and sink.holds_durably(refs)


async def test_many_small_chunks_go_in_few_requests() -> None:
    refs, blobs = make_content([1024] * 10_000)
    source = FakeSource({"A": Holder(blobs), "B": Holder(blobs)})
    sink = FakeSink()
    rec = Recorder(sink)
    svc = service(source, sink, rec)
    async with running(svc):
        svc.set_plan([task("p1", refs)])
        await until(lambda: bool(rec.completed))
    assert len(source.requests) == 40  # 256 chunks a request
    assert sink.holds_durably(refs)


# --- on demand ----------------------------------------------------------------------------------


async def test_stream_in_order_with_read_ahead() -> None:
    refs, blobs = make_content([CHUNK_SIZE] * 6 + [4096] * 200 + [77])
    rng = random.Random(1)
    source = FakeSource({"A": Holder(blobs, delay=lambda: rng.uniform(0, 0.01))})
    sink = FakeSink()
    svc = service(source, sink, Recorder(sink), stream_ahead=3)
    got = [d async for d in svc.stream(refs, ["A"], pid="p")]
    assert got == [blobs[c.digest] for c in refs]
    assert 1 < source.max_in_flight <= 3
    assert set(sink.volatile) == {c.digest for c in refs} and sink.bad_puts == []
    assert svc.status()["totals"]["stream_chunks"] == len(refs)
    assert source.pids == {"p"}  # every request names the resource, for the holder's checks


async def test_a_stream_not_kept_puts_nothing_into_the_store() -> None:
    refs, blobs = make_content([CHUNK_SIZE] * 2 + [4096])
    source = FakeSource({"A": Holder(blobs)})
    sink = FakeSink()
    svc = service(source, sink, Recorder(sink))
    got = [d async for d in svc.stream(refs, ["A"], pid="p", keep=False)]
    assert got == [blobs[c.digest] for c in refs]
    assert sink.volatile == {} and sink.durable == {}


async def test_stream_fails_over_on_corruption_and_vanishing() -> None:
    refs, blobs = make_content([4096] * 300)
    source = FakeSource(
        {
            "P": Holder(blobs, fail_after=1),  # the parent vanishes after one answer
            "Q": Holder(blobs, corrupt={refs[200].digest}),
            "R": Holder(blobs),
        }
    )
    sink = FakeSink()
    rec = Recorder(sink)
    svc = service(
        source, sink, rec, reachable=lambda: {"P", "Q", "R"}, stream_ahead=2, batch_chunks=50
    )
    got = [d async for d in svc.stream(refs, ["P", "Q", "R"], pid="p")]
    assert got == [blobs[c.digest] for c in refs]
    assert rec.faults == [("Q", "corrupt-chunk")] and sink.bad_puts == []
    assert source.requests[0][0] == "P"
    assert {p for p, _ in source.requests} == {"P", "Q", "R"}


async def test_stream_prefers_reachable_and_raises_when_nobody_serves() -> None:
    refs, blobs = make_content([4096] * 5)
    source = FakeSource({"A": Holder(blobs, corrupt={refs[2].digest}), "B": Holder({})})
    sink = FakeSink()
    rec = Recorder(sink)
    svc = service(source, sink, rec, reachable=lambda: {"B", "A"})
    got: list[bytes] = []
    with pytest.raises(TransferError, match="X: transport") as raised:
        async for d in svc.stream(refs, ["X", "A", "B"], pid="p"):
            got.append(d)
    assert got == []
    assert set(sink.volatile) == {c.digest for c in refs[:2]}  # the verified prefix was kept
    assert [p for p, _ in source.requests][:1] == ["A"]  # reachable ones first
    assert "A: corrupt-chunk" in raised.value.message
    assert "B: empty-answer" in raised.value.message


async def test_stream_closed_early_cancels_read_ahead() -> None:
    refs, blobs = make_content([4096] * 3000)
    delays = iter([0.0] + [5.0] * 20)  # the first answer comes at once, the others hang
    source = FakeSource({"A": Holder(blobs, delay=lambda: next(delays))})
    sink = FakeSink()
    svc = service(source, sink, Recorder(sink), stream_ahead=3)
    gen = svc.stream(refs, ["A"], pid="p")
    first = await anext(gen)
    assert first == blobs[refs[0].digest]
    assert source.in_flight == 2  # the third read-ahead is created, not yet started
    await gen.aclose()
    assert source.in_flight == 0 and source.cancelled == 2
