"""The content transfer engine: pull the chunks of planned resources from reachable holders.

The planner hands over its latest list of `TransferTask`s (`set_plan`); `TransferService.run`
starts up to `max_tasks` of them, repair before preservation before subscription before cache.
A task:

1. asks the sink which chunks are not held intact (`missing(verify=True)`: re-hashes what is
   there, so a restart or an interruption resumes with exactly what is missing);
2. splits those into batches (at most `batch_bytes` and `batch_chunks`) and pulls them with at
   most `max_requests` requests in flight across all tasks (request slots go to the most urgent
   waiting task first), each batch from a reachable holder, round-robin in preference order;
3. checks size and SHA-256 of every chunk (off the event loop for big batches) before `put`;
4. `flush`es the sink, and only then calls `on_complete` (the daemon commits the copy).

Holder states, per task: ready → resting (failed a request: transport error, timeout or an empty
answer; rests `peer_backoff_s`, doubled each time) → dropped (after `peer_strikes` failures, or at
once for a corrupt chunk or a protocol fault). A short answer (a prefix) is no fault: the rest is
requeued. When no holder is left the task fails with a reason and is retried `retry_after_s`
later if it is still planned. Invariant: `on_complete` is called only after every chunk of the
task was verified here or re-verified in the sink, and the sink was flushed after the last put.

Background work obeys the token bucket (`rate_limit_bytes_per_s`) and the time windows: a request
starts only inside a window; requests in flight finish, then the task pauses. `stream` serves a
reader (on demand): in order, with read-ahead, failing over along the given holders, and free of
windows and the rate limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from protocol.records import CHUNK_SIZE, ChunkRef
from sync.engine import TransportError
from sync.windows import Window, in_windows, next_start

__all__ = [
    "CACHE",
    "CANCELLED_CHANGED",
    "CANCELLED_UNPLANNED",
    "PRESERVATION",
    "PRIORITY_NAMES",
    "REPAIR",
    "SUBSCRIPTION",
    "ChunkSink",
    "ChunkSource",
    "TokenBucket",
    "TransferError",
    "TransferService",
    "TransferSettings",
    "TransferTask",
    "split_batches",
]

log = logging.getLogger(__name__)

REPAIR, PRESERVATION, SUBSCRIPTION, CACHE = 0, 1, 2, 3
PRIORITY_NAMES = ("repair", "preservation", "subscription", "cache")
MAX_FAILURES_KEPT = 100  # recent task failures shown by status()
# Why a running transfer was cancelled (TransferService's on_cancelled says which).
CANCELLED_UNPLANNED = "no longer planned here"
CANCELLED_CHANGED = "restarted: the resource's content changed"
MAX_FAULT_PEERS = 1_024  # peers whose fault counts status() keeps
MISSING_SLICE = 16_384  # digests per sink.missing call
INLINE_VERIFY_BYTES = 256 << 10  # smaller answers are hashed on the loop (a thread hop costs more)


class ChunkSource(Protocol):
    """The peer API for chunks."""

    async def fetch_chunks(
        self, peer: str, pid: str, digests: Sequence[bytes], max_bytes: int
    ) -> list[bytes]:
        """The chunks' bytes, in request order, of resource `pid` (the holder checks that it
        holds the resource, the chunks are its own, and its rights let this node have them);
        may return a prefix (fewer) if the peer lacks some or hits max_bytes. Raises
        TransportError (misbehaved=True for protocol faults)."""
        ...


class ChunkSink(Protocol):
    """The chunk store."""

    async def missing(self, digests: Sequence[bytes], *, verify: bool) -> list[bytes]:
        """Those of `digests` not held intact here (verify=True re-hashes held ones)."""
        ...

    async def put(self, chunks: Sequence[tuple[bytes, bytes]]) -> None:
        """Keep (digest, data) pairs, already verified by the caller."""
        ...

    async def flush(self) -> None:
        """Make everything put so far durable."""
        ...


class TransferError(Exception):
    """An on-demand stream could not be served: no holder delivered the chunks intact."""

    code = "transfer-failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class TransferTask:
    """Fetch the distinct chunks of one resource's files from its holders (preference order)."""

    pid: str
    klass: str
    priority: int  # REPAIR, PRESERVATION, SUBSCRIPTION or CACHE
    chunks: tuple[ChunkRef, ...]
    sources: tuple[str, ...]
    dark: bool = False

    def __post_init__(self) -> None:
        if self.priority not in range(len(PRIORITY_NAMES)):
            raise ValueError(f"transfer priority {self.priority} out of range")


@dataclass(frozen=True)
class TransferSettings:
    max_tasks: int = 4  # tasks transferring at once
    max_requests: int = 8  # background requests in flight, all tasks together
    batch_bytes: int = 8 << 20  # per request
    batch_chunks: int = 256  # per request
    rate_limit_bytes_per_s: int = 0  # background traffic; 0 = unlimited
    windows: tuple[Window, ...] = ()  # background transfers only inside these; () = always
    retry_after_s: float = 60.0  # a failed task is tried again this much later, if still planned
    request_timeout_s: float = 60.0
    peer_backoff_s: float = 5.0  # a holder that failed a request rests this long (doubling)
    peer_strikes: int = 3  # failed requests before a holder is dropped for the task
    stream_ahead: int = 3  # on-demand requests in flight per stream
    stream_batch_bytes: int = 2 << 20  # per on-demand request
    poll_s: float = 30.0  # longest idle wait before the plan, retries and the wall are re-read

    def __post_init__(self) -> None:
        for name in ("max_tasks", "max_requests", "batch_chunks", "peer_strikes", "stream_ahead"):
            if getattr(self, name) < 1:
                raise ValueError(f"transfer setting {name} must be at least 1")
        for name in ("batch_bytes", "stream_batch_bytes"):
            if getattr(self, name) < CHUNK_SIZE:
                raise ValueError(f"transfer setting {name} must be at least one chunk")
        if self.rate_limit_bytes_per_s < 0:
            raise ValueError("transfer setting rate_limit_bytes_per_s must not be negative")
        for name in ("retry_after_s", "request_timeout_s", "peer_backoff_s", "poll_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"transfer setting {name} must be positive")


# --- pure parts ---------------------------------------------------------------------------------


class TokenBucket:
    """`rate` bytes per second with bursts of up to `burst` bytes. A reservation may overdraw the
    bucket and then waits until the debt is paid, so a batch larger than the burst still goes and
    the long-run rate holds: bytes started by time t ≤ burst + rate · (t - t0). Time is an
    argument (seconds, monotonic)."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("a token bucket needs a positive rate and burst")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = now

    def reserve(self, n: int, now: float) -> float:
        """Take `n` bytes; the seconds to wait before sending them."""
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def refund(self, n: int) -> None:
        """Give back bytes reserved but not transferred (a short answer)."""
        self._tokens = min(self.burst, self._tokens + n)


def split_batches(
    chunks: Sequence[ChunkRef], max_bytes: int, max_chunks: int
) -> list[tuple[ChunkRef, ...]]:
    """`chunks` in order, cut into runs of at most `max_bytes` and `max_chunks` (a chunk larger
    than `max_bytes` goes alone)."""
    out: list[tuple[ChunkRef, ...]] = []
    start, size = 0, 0
    for i, c in enumerate(chunks):
        if i > start and (size + c.size > max_bytes or i - start >= max_chunks):
            out.append(tuple(chunks[start:i]))
            start, size = i, 0
        size += c.size
    if start < len(chunks):
        out.append(tuple(chunks[start:]))
    return out


def bad_chunks(refs: Sequence[ChunkRef], datas: Sequence[bytes]) -> list[int]:
    """Indexes of `datas` whose size or SHA-256 differs from `refs` (pairwise)."""
    sha256 = hashlib.sha256
    return [
        i
        for i, (ref, data) in enumerate(zip(refs, datas, strict=True))
        if len(data) != ref.size or sha256(data).digest() != ref.digest
    ]


async def _verify(refs: Sequence[ChunkRef], datas: Sequence[bytes]) -> list[int]:
    # hashlib releases the GIL on large buffers: big answers are hashed in a worker thread, in
    # parallel with the loop and with each other.
    if sum(map(len, datas)) >= INLINE_VERIFY_BYTES:
        return await asyncio.to_thread(bad_chunks, refs, datas)
    return bad_chunks(refs, datas)


# --- the service --------------------------------------------------------------------------------


class _TaskFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Slots:
    """A semaphore that grants a free slot to the most urgent (lowest priority number) waiter."""

    def __init__(self, n: int) -> None:
        self.size = n
        self._free = n
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @property
    def in_use(self) -> int:
        return self.size - self._free

    async def acquire(self, priority: int) -> None:
        if self._free > 0 and not any(not f.done() for _, _, f in self._waiters):
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # granted as we were cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # the slot passes straight to the waiter
                return
        self._free += 1


class _Job:
    """A task being transferred, and what it has learnt about its holders."""

    def __init__(self, task: TransferTask, total_bytes: int, now: float) -> None:
        self.task = task
        self.state = "checking"
        self.bytes_total = total_bytes
        self.bytes_done = 0
        self.chunks_done = 0
        self.fetched_bytes = 0
        self.started = now
        self.pending: deque[tuple[ChunkRef, ...]] = deque()
        self.dropped: dict[str, str] = {}  # holder → why it is no longer asked
        self.resting: dict[str, float] = {}  # holder → clock time it may be asked again
        self.strikes: dict[str, int] = {}
        self.struck_at: dict[str, float] = {}
        self.errors: dict[str, str] = {}  # holder → its last failure
        self.turn = 0
        self.handle: asyncio.Task[None] | None = None

    @property
    def finishing(self) -> bool:
        return self.state in ("flushing", "completing")


class _Entry:
    __slots__ = ("order", "retry_at", "task", "total_bytes")

    def __init__(self, task: TransferTask, order: int) -> None:
        self.task = task
        self.order = order
        self.total_bytes = sum(c.size for c in task.chunks)
        self.retry_at = 0.0


class _StreamHolders:
    """The holders of one stream, in order; the first one not failed serves."""

    def __init__(self, order: list[str]) -> None:
        self.order = order
        self.failed: dict[str, str] = {}

    def current(self) -> str | None:
        return next((p for p in self.order if p not in self.failed), None)


class TransferService:
    """Runs transfer tasks (see the module docstring). One instance per node."""

    def __init__(
        self,
        source: ChunkSource,
        sink: ChunkSink,
        settings: TransferSettings,
        *,
        reachable: Callable[[], set[str]],
        on_complete: Callable[[TransferTask], Awaitable[None]],
        on_peer_fault: Callable[[str, str], None],
        on_failed: Callable[[TransferTask, str], None] = lambda task, reason: None,
        on_cancelled: Callable[[TransferTask, int, int, str], None] = lambda *_: None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = datetime.now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._source = source
        self._sink = sink
        self._reachable = reachable
        self._on_complete = on_complete
        self._on_peer_fault = on_peer_fault
        self._on_failed = on_failed
        self._on_cancelled = on_cancelled
        self._clock = clock
        self._wall = wall
        self._sleep = sleep  # waits measured by `clock` (rate limit, holder back-off)
        self._plan: dict[str, _Entry] = {}
        self._active: dict[str, _Job] = {}
        self._done_at: dict[str, tuple[float, tuple[ChunkRef, ...]]] = {}
        self._slots = _Slots(settings.max_requests)
        rate = settings.rate_limit_bytes_per_s
        self._bucket = TokenBucket(rate, max(rate, 1), clock()) if rate else None
        # Under a rate limit a request carries about a second's worth (at least one chunk), so
        # the link sees the limit as a steady rate, not 8 MiB bursts after long silences, and
        # progress moves as the bytes do.
        self._batch_bytes = settings.batch_bytes
        if rate:
            self._batch_bytes = max(CHUNK_SIZE, min(settings.batch_bytes, rate))
        self._wake = asyncio.Event()
        self._failures: deque[dict[str, Any]] = deque(maxlen=MAX_FAILURES_KEPT)
        self._faults: dict[str, dict[str, int]] = {}
        self._totals = {
            "bytes": 0,
            "chunks": 0,
            "corrupt_chunks": 0,
            "tasks_completed": 0,
            "tasks_failed": 0,
            "tasks_cancelled": 0,
            "stream_bytes": 0,
            "stream_chunks": 0,
        }

    # -- the plan ---------------------------------------------------------------------------------

    def set_plan(self, tasks: Sequence[TransferTask]) -> None:
        """Replace the queue with the planner's latest list. A task still planned (same pid and
        chunks) keeps running with its new sources and priority; others are cancelled, except
        one already flushing or completing, which finishes."""
        now = self._clock()
        self._done_at = {
            pid: v for pid, v in self._done_at.items() if now - v[0] < self.settings.retry_after_s
        }
        plan: dict[str, _Entry] = {}
        for order, task in enumerate(tasks):
            if task.pid in plan:
                continue
            done = self._done_at.get(task.pid)
            if done is not None and _same_chunks(done[1], task.chunks):
                continue  # just completed: a plan made before the holding was committed
            entry = self._plan.get(task.pid)
            if entry is not None and _same_chunks(entry.task.chunks, task.chunks):
                if entry.task.sources != task.sources:
                    entry.retry_at = 0.0  # new holders: a failed task may start again at once
                entry.task, entry.order = task, order
                job = self._active.get(task.pid)
                if job is not None:
                    job.task = task
            else:
                entry = _Entry(task, order)
                self._cancel(task.pid, CANCELLED_CHANGED)
            plan[task.pid] = entry
        for pid in self._plan.keys() - plan.keys():
            self._cancel(pid, CANCELLED_UNPLANNED)
        self._plan = plan
        self._wake.set()

    def _cancel(self, pid: str, reason: str) -> None:
        job = self._active.get(pid)
        if job is not None and job.handle is not None and not job.finishing:
            log.info("transfer of %s cancelled: %s", pid, reason)
            self._totals["tasks_cancelled"] += 1
            job.handle.cancel()
            self._on_cancelled(job.task, job.bytes_done, job.bytes_total, reason)

    # -- the background loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Start planned tasks as slots, windows and retry times allow, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            while True:
                self._wake.clear()
                wait = self._start_due(tg)
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    def _start_due(self, tg: asyncio.TaskGroup) -> float:
        """Start what may start now; the seconds until something else might."""
        wait = self.settings.poll_s
        if not self._window_open():
            nxt = next_start(self.settings.windows, self._wall())
            if nxt is not None:
                wait = min(wait, max(0.01, (nxt - self._wall()).total_seconds()))
            return wait
        now = self._clock()
        due: list[_Entry] = []
        for entry in self._plan.values():
            if entry.task.pid in self._active:
                continue
            if entry.retry_at > now:
                wait = min(wait, entry.retry_at - now)
            else:
                due.append(entry)
        due.sort(key=lambda e: (e.task.priority, e.order))
        for entry in due[: max(0, self.settings.max_tasks - len(self._active))]:
            job = _Job(entry.task, entry.total_bytes, now)
            self._active[entry.task.pid] = job
            job.handle = tg.create_task(
                self._run_job(entry, job), name=f"transfer {entry.task.pid}"
            )
        return wait

    async def _run_job(self, entry: _Entry, job: _Job) -> None:
        pid = job.task.pid
        try:
            await self._transfer(job)
        except _TaskFailed as e:
            self._failed(entry, job, e.reason)
        except Exception as e:  # a store or daemon failure: say so, keep the node serving
            log.exception("transfer of %s failed", pid)
            self._failed(entry, job, f"internal error: {e!r}")
        else:
            self._totals["tasks_completed"] += 1
            self._done_at[pid] = (self._clock(), job.task.chunks)
            if self._plan.get(pid) is entry:
                del self._plan[pid]
            log.info("transfer of %s complete (%d bytes fetched)", pid, job.fetched_bytes)
        finally:
            if self._active.get(pid) is job:
                del self._active[pid]
            self._wake.set()

    def _failed(self, entry: _Entry, job: _Job, reason: str) -> None:
        log.warning("transfer of %s failed: %s", job.task.pid, reason)
        self._totals["tasks_failed"] += 1
        entry.retry_at = self._clock() + self.settings.retry_after_s
        self._failures.append(
            {
                "pid": job.task.pid,
                "class": job.task.klass,
                "reason": reason,
                "at": self._wall().isoformat(timespec="seconds"),
                "bytes_done": job.bytes_done,
                "bytes_total": job.bytes_total,
            }
        )
        self._on_failed(job.task, reason)

    async def _transfer(self, job: _Job) -> None:
        task = job.task
        by_digest = {c.digest: c for c in task.chunks}
        digests = list(by_digest)
        todo: list[ChunkRef] = []
        for i in range(0, len(digests), MISSING_SLICE):
            missing = await self._sink.missing(digests[i : i + MISSING_SLICE], verify=True)
            todo += (by_digest[d] for d in missing if d in by_digest)
        job.bytes_done = job.bytes_total - sum(c.size for c in todo)
        job.chunks_done = len(by_digest) - len(todo)
        job.pending.extend(split_batches(todo, self._batch_bytes, self.settings.batch_chunks))
        if job.pending:
            job.state = "fetching"
            job.started = self._clock()
            try:
                async with asyncio.TaskGroup() as tg:
                    for _ in range(min(self.settings.max_requests, len(job.pending))):
                        tg.create_task(self._worker(job))
            except BaseExceptionGroup as eg:
                failed = [e for e in eg.exceptions if isinstance(e, _TaskFailed)]
                if failed and len(failed) == len(eg.exceptions):
                    raise failed[0] from None
                raise
        job.state = "flushing"
        await self._sink.flush()
        job.state = "completing"
        await self._on_complete(job.task)

    async def _worker(self, job: _Job) -> None:
        # A worker leaves when nothing is pending; a batch that fails is requeued by the worker
        # that held it, which then picks it (or another) up again, so nothing is stranded.
        while job.pending:
            await self._fetch_batch(job, job.pending.popleft())

    async def _fetch_batch(self, job: _Job, batch: tuple[ChunkRef, ...]) -> None:
        nbytes = sum(c.size for c in batch)
        while True:
            await self._until_window(job)
            choice = self._choose(job)
            if choice is None:
                job.pending.appendleft(batch)
                raise _TaskFailed(self._failure_reason(job))
            if isinstance(choice, float):  # every holder left is resting
                await self._sleep(max(0.0, choice - self._clock()))
                continue
            peer = choice
            await self._slots.acquire(job.task.priority)
            try:
                if not self._window_open() or not self._may_ask(job, peer):
                    continue  # changed while waiting for the slot
                if self._bucket is not None:
                    delay = self._bucket.reserve(nbytes, self._clock())
                    if delay > 0:
                        await self._sleep(delay)
                started = self._clock()
                try:
                    async with asyncio.timeout(self.settings.request_timeout_s):
                        datas = await self._source.fetch_chunks(
                            peer, job.task.pid, [c.digest for c in batch], nbytes
                        )
                except TransportError as e:
                    kind = "misbehaved" if e.misbehaved else "transport"
                    self._holder_failed(job, peer, kind, e.message, started)
                    continue
                except TimeoutError:
                    self._holder_failed(job, peer, "timeout", "request timed out", started)
                    continue
            finally:
                self._slots.release()
            break
        await self._take(job, peer, batch, datas, started)

    async def _take(
        self,
        job: _Job,
        peer: str,
        batch: tuple[ChunkRef, ...],
        datas: list[bytes],
        started: float,
    ) -> None:
        """Verify and store an answer; requeue what it lacked."""
        got = len(datas)
        if got > len(batch):
            self._holder_failed(job, peer, "misbehaved", "answered more chunks than asked", started)
            job.pending.appendleft(batch)
            return
        if self._bucket is not None and got < len(batch):
            self._bucket.refund(sum(c.size for c in batch[got:]))
        if got == 0:
            self._holder_failed(job, peer, "empty-answer", "returned none of the chunks", started)
            job.pending.appendleft(batch)
            return
        refs = batch[:got]
        bad = await _verify(refs, datas)
        if bad:
            skip = set(bad)
            good = [
                (c.digest, d)
                for i, (c, d) in enumerate(zip(refs, datas, strict=True))
                if i not in skip
            ]
            rest = [refs[i] for i in bad]
        else:
            good = [(c.digest, d) for c, d in zip(refs, datas, strict=True)]
            rest = []
        if good:
            await self._sink.put(good)
            n = sum(len(d) for _, d in good)
            job.bytes_done += n
            job.fetched_bytes += n
            job.chunks_done += len(good)
            self._totals["bytes"] += n
            self._totals["chunks"] += len(good)
        if bad:
            self._corrupt(peer, len(bad), job.task.pid)
            job.dropped[peer] = job.errors[peer] = "corrupt-chunk"
        rest += batch[got:]
        if rest:
            job.pending.appendleft(tuple(rest))

    # -- holders ---------------------------------------------------------------------------------

    def _choose(self, job: _Job) -> str | float | None:
        """The holder to ask next (round-robin over the ready ones, in preference order), or the
        clock time a resting one may be asked again, or None when none is left."""
        reachable = self._reachable()
        candidates = [p for p in job.task.sources if p in reachable and p not in job.dropped]
        if not candidates:
            return None
        now = self._clock()
        ready = [p for p in candidates if job.resting.get(p, 0.0) <= now]
        if not ready:
            return min(job.resting[p] for p in candidates)
        job.turn += 1
        return ready[(job.turn - 1) % len(ready)]

    def _may_ask(self, job: _Job, peer: str) -> bool:
        return peer not in job.dropped and job.resting.get(peer, 0.0) <= self._clock()

    def _holder_failed(self, job: _Job, peer: str, kind: str, message: str, started: float) -> None:
        self._count_fault(peer, kind)
        job.errors[peer] = f"{kind}: {message}"
        if kind == "misbehaved":
            self._on_peer_fault(peer, "protocol-fault")
            job.dropped[peer] = job.errors[peer]
            return
        if started < job.struck_at.get(peer, float("-inf")):
            return  # a request sent before the last strike: that failure is already counted
        now = self._clock()
        strikes = job.strikes[peer] = job.strikes.get(peer, 0) + 1
        job.struck_at[peer] = now
        if strikes >= self.settings.peer_strikes:
            job.dropped[peer] = job.errors[peer]
        else:
            job.resting[peer] = now + self.settings.peer_backoff_s * 2 ** (strikes - 1)
        log.info("transfer of %s: holder %s failed (%s: %s)", job.task.pid, peer, kind, message)

    def _corrupt(self, peer: str, n: int, pid: str) -> None:
        log.warning("%d corrupt chunk(s) from %s (pid %s)", n, peer, pid)
        self._totals["corrupt_chunks"] += n
        self._count_fault(peer, "corrupt-chunk", n)
        self._on_peer_fault(peer, "corrupt-chunk")

    def _count_fault(self, peer: str, kind: str, n: int = 1) -> None:
        faults = self._faults.get(peer)
        if faults is None:
            if len(self._faults) >= MAX_FAULT_PEERS:
                return
            faults = self._faults[peer] = {}
        faults[kind] = faults.get(kind, 0) + n

    def _failure_reason(self, job: _Job) -> str:
        if not job.errors:
            return "no reachable holder"
        return "all holders failed: " + "; ".join(f"{p}: {r}" for p, r in job.errors.items())

    # -- windows ---------------------------------------------------------------------------------

    def _window_open(self) -> bool:
        return in_windows(self.settings.windows, self._wall())

    async def _until_window(self, job: _Job) -> None:
        while not self._window_open():
            job.state = "waiting-window"
            wall = self._wall()
            nxt = next_start(self.settings.windows, wall)
            wait = self.settings.poll_s
            if nxt is not None:
                wait = min(wait, max(0.01, (nxt - wall).total_seconds()))
            await asyncio.sleep(wait)  # wall-clock time, whatever `clock` is
        job.state = "fetching"

    # -- on demand ---------------------------------------------------------------------------------

    async def stream(
        self, chunks: Sequence[ChunkRef], sources: Sequence[str], *, pid: str, keep: bool = True
    ) -> AsyncGenerator[bytes, None]:
        """Each of `chunks`' (of resource `pid`) verified bytes, in order, for a reader. Holders
        are tried in the given order (reachable ones first); one that fails or sends a corrupt
        chunk is left for the next. With `keep`, each chunk is put into the sink (not flushed).
        Raises TransferError when no holder is left."""
        reachable = self._reachable()
        holders = _StreamHolders(
            [p for p in sources if p in reachable] + [p for p in sources if p not in reachable]
        )
        batches = iter(
            split_batches(chunks, self.settings.stream_batch_bytes, self.settings.batch_chunks)
        )
        ahead: deque[asyncio.Task[list[bytes]]] = deque()
        try:
            for batch in itertools.islice(batches, self.settings.stream_ahead):
                ahead.append(asyncio.create_task(self._stream_batch(holders, batch, pid, keep)))
            while ahead:
                datas = await ahead.popleft()
                following = next(batches, None)
                if following is not None:
                    ahead.append(
                        asyncio.create_task(self._stream_batch(holders, following, pid, keep))
                    )
                for data in datas:
                    yield data
        finally:
            for t in ahead:
                t.cancel()
            await asyncio.gather(*ahead, return_exceptions=True)

    async def _stream_batch(
        self, holders: _StreamHolders, batch: tuple[ChunkRef, ...], pid: str, keep: bool
    ) -> list[bytes]:
        out: list[bytes] = []
        rest = batch
        while rest:
            peer = holders.current()
            if peer is None:
                detail = "; ".join(f"{p}: {r}" for p, r in holders.failed.items())
                raise TransferError(f"no holder could serve the chunks ({detail or 'none given'})")
            try:
                async with asyncio.timeout(self.settings.request_timeout_s):
                    datas = await self._source.fetch_chunks(
                        peer, pid, [c.digest for c in rest], sum(c.size for c in rest)
                    )
            except TransportError as e:
                kind = "misbehaved" if e.misbehaved else "transport"
                self._count_fault(peer, kind)
                if e.misbehaved:
                    self._on_peer_fault(peer, "protocol-fault")
                holders.failed[peer] = f"{kind}: {e.message}"
                continue
            except TimeoutError:
                self._count_fault(peer, "timeout")
                holders.failed[peer] = "timeout"
                continue
            if not datas or len(datas) > len(rest):
                kind = "empty-answer" if not datas else "misbehaved"
                self._count_fault(peer, kind)
                if datas:
                    self._on_peer_fault(peer, "protocol-fault")
                holders.failed[peer] = kind
                continue
            refs = rest[: len(datas)]
            bad = await _verify(refs, datas)
            good = bad[0] if bad else len(datas)  # the in-order prefix that verified
            if good:
                if keep:
                    await self._sink.put(
                        [(c.digest, d) for c, d in zip(refs[:good], datas[:good], strict=True)]
                    )
                out += datas[:good]
                self._totals["stream_chunks"] += good
                self._totals["stream_bytes"] += sum(c.size for c in refs[:good])
            if bad:
                self._corrupt(peer, len(bad), pid)
                holders.failed[peer] = "corrupt-chunk"
            rest = rest[good:]
        return out

    # -- status ----------------------------------------------------------------------------------

    def resting(self) -> set[str]:
        """Pids of planned tasks waiting to be retried after a failure."""
        now = self._clock()
        return {pid for pid, entry in self._plan.items() if entry.retry_at > now}

    def status(self) -> dict[str, Any]:
        """A JSON-able picture for the admin console."""
        now = self._clock()
        wall = self._wall()
        queued: dict[str, dict[str, int]] = {
            name: {"tasks": 0, "bytes": 0, "waiting_retry": 0} for name in PRIORITY_NAMES
        }
        for entry in self._plan.values():
            if entry.task.pid in self._active:
                continue
            q = queued[PRIORITY_NAMES[entry.task.priority]]
            q["tasks"] += 1
            q["bytes"] += entry.total_bytes
            if entry.retry_at > now:
                q["waiting_retry"] += 1
        active = []
        for job in self._active.values():
            elapsed = now - job.started
            active.append(
                {
                    "pid": job.task.pid,
                    "class": job.task.klass,
                    "priority": PRIORITY_NAMES[job.task.priority],
                    "dark": job.task.dark,
                    "state": job.state,
                    "bytes_done": job.bytes_done,
                    "bytes_total": job.bytes_total,
                    "chunks_done": job.chunks_done,
                    "chunks_total": len(job.task.chunks),
                    "rate_bytes_per_s": round(job.fetched_bytes / elapsed) if elapsed > 0 else 0,
                    "holders_dropped": dict(job.dropped),
                }
            )
        nxt = next_start(self.settings.windows, wall)
        return {
            "queued": queued,
            "active": active,
            "requests_in_flight": self._slots.in_use,
            "failures": list(self._failures),
            "window": {
                "windows": [str(w) for w in self.settings.windows],
                "in_force": in_windows(self.settings.windows, wall),
                "next_start": nxt.isoformat(timespec="minutes") if nxt is not None else None,
            },
            "rate_limit_bytes_per_s": self.settings.rate_limit_bytes_per_s,
            "totals": dict(self._totals),
            "peer_faults": {p: dict(f) for p, f in self._faults.items()},
        }


def _same_chunks(a: tuple[ChunkRef, ...], b: tuple[ChunkRef, ...]) -> bool:
    return a is b or a == b
