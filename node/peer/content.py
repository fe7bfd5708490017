"""Content between nodes: the chunk route of the peer API and the client side of it.

    POST /peer/v1/content/chunks   a resource's pid and chunk digests (protocol.contentwire)
                                   → those chunks, in order, as far as this node may give them

Only admitted members reach the handler (every peer request is signed and its chain checked).
A member gets chunks only of a resource this node holds and only chunks of that resource; of
dark content (restricted, on site only, under embargo) only if it may keep a copy itself: the
resource's origin, a node above the origin in the certificate tree, or a national node — the
nodes placement puts dark copies on (sync.placement). Each chunk is re-hashed as it is read
(storage.chunks): a damaged chunk here ends the answer before it, never goes out. Requests are
served a bounded number at a time; beyond that the caller is told to come back ("busy").
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from node.peer.membership import Admitted
from node.peer.server import PeerHandler, PeerProblem
from node.peer.service import Peering
from protocol.contentwire import (
    MAX_ANSWER_BYTES,
    MAX_CHUNKS,
    MAX_REQUEST_BYTES,
    decode_chunk_request,
    decode_chunks,
    encode_chunk_request,
    encode_chunks,
)
from protocol.errors import ProtocolError
from storage.errors import ChunkNotFoundError, IntegrityError
from storage.store import Store
from sync.engine import TransportError

__all__ = ["CHUNKS_PATH", "ContentPeers"]

log = logging.getLogger(__name__)

CHUNKS_PATH = "/peer/v1/content/chunks"
CALL_TIMEOUT_SECONDS = 60.0  # one request for up to 16 MiB of chunks
MAX_ANSWER_FRAMING = MAX_CHUNKS * 8 + 64
MAX_SERVING = 4  # chunk requests read at once (each up to 16 MiB in memory)
MAX_WAITING = 32  # requests queued behind them; more are told "busy"
RESOURCE_CACHE_SIZE = 1_024  # resources whose chunk lists are kept for the next requests
RESOURCE_CACHE_SECONDS = 10.0  # ... for this long (a dropped copy stops being served by then)


class ContentPeers:
    """Serves this node's chunks to members, and fetches chunks from them."""

    def __init__(
        self,
        peering: Peering,
        store: Store,
        on_served: Callable[[int, int], None],
        may_keep_dark: Callable[[bytes, bytes], bool],
    ) -> None:
        self.peering = peering
        self.store = store
        self.on_served = on_served  # (chunks, bytes) sent
        self.may_keep_dark = may_keep_dark  # (requester key, origin key) → allowed
        self._serving = asyncio.Semaphore(MAX_SERVING)
        self._waiting = 0
        # pid → (expires, monotonic; the resource's chunk digests, its origin, dark today)
        self._resources: OrderedDict[str, tuple[float, frozenset[bytes], bytes, bool]] = (
            OrderedDict()
        )

    # --- serving ---------------------------------------------------------------------------

    async def handle_chunks(self, sender: Admitted, body: bytes) -> tuple[int, bytes]:
        pid, digests, max_bytes = decode_chunk_request(body)
        held = await self._resource(pid)
        if held is None:
            return 200, encode_chunks([])  # not held here (any more): ask another holder
        chunks, origin, dark = held
        requester = sender.leaf.subject.public_key
        if dark and not self.may_keep_dark(requester, origin):
            raise PeerProblem(
                "not-entitled",
                f"{pid} is dark content: only the nodes that may keep a copy of it get it",
                403,
            )
        wanted = list(itertools.takewhile(lambda d: d in chunks, digests))
        if self._waiting >= MAX_WAITING:
            raise PeerProblem("busy", "serving as many chunk requests as it can; retry", 503)
        self._waiting += 1
        try:
            await self._serving.acquire()
        finally:
            self._waiting -= 1
        try:
            found = await asyncio.to_thread(self._read, wanted, max_bytes)
        finally:
            self._serving.release()
        self.on_served(len(found), sum(len(c) for c in found))
        return 200, encode_chunks(found)

    async def _resource(self, pid: str) -> tuple[frozenset[bytes], bytes, bool] | None:
        """(chunk digests, origin, dark today) of a resource whose content is held here."""
        now = time.monotonic()
        cached = self._resources.get(pid)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2], cached[3]
        if not await self.store.catalogue.is_held(pid):
            return None
        held = await self.store.catalogue.get(pid)
        if held is None or held[1].deleted:
            return None
        record = held[1]
        chunks = frozenset(c.digest for f in record.files for c in f.chunks)
        dark = not record.rights.is_open_on(dt.date.today()) and record.rights.access != "network"
        self._resources[pid] = (now + RESOURCE_CACHE_SECONDS, chunks, record.origin, dark)
        self._resources.move_to_end(pid)
        while len(self._resources) > RESOURCE_CACHE_SIZE:
            self._resources.popitem(last=False)
        return chunks, record.origin, dark

    def _read(self, digests: list[bytes], max_bytes: int) -> list[bytes]:
        out: list[bytes] = []
        size = 0
        for digest in digests:
            try:
                data = self.store.chunks.get(digest)
            except ChunkNotFoundError:
                break
            except IntegrityError as e:
                log.error("chunk=%s not served: %s", digest.hex(), e)
                break
            if out and size + len(data) > max_bytes:
                break
            out.append(data)
            size += len(data)
        return out

    def routes(self) -> list[tuple[str, int, PeerHandler]]:
        return [(CHUNKS_PATH, MAX_REQUEST_BYTES, self.handle_chunks)]

    # --- fetching (sync.transfer's ChunkSource) -------------------------------------------

    async def fetch_chunks(
        self, peer: str, pid: str, digests: Sequence[bytes], max_bytes: int
    ) -> list[bytes]:
        body = encode_chunk_request(pid, digests, min(max(max_bytes, 1), MAX_ANSWER_BYTES))
        answer = await self.peering.call_member(
            peer,
            CHUNKS_PATH,
            body,
            max_answer=MAX_ANSWER_BYTES + MAX_ANSWER_FRAMING,
            timeout_s=CALL_TIMEOUT_SECONDS,
        )
        try:
            return decode_chunks(answer, len(digests))
        except ProtocolError as e:
            raise TransportError(f"chunk answer: {e.message}", misbehaved=True) from e
