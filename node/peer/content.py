"""Content between nodes: the chunk route of the peer API and the client side of it.

    POST /peer/v1/content/chunks   digests (protocol.contentwire) → the chunks held, in order

Only admitted members reach the handler (every peer request is signed and its chain checked),
and chunks are named by SHA-256, so a member learns nothing it could not read from the signed
catalogue records it already holds. Each chunk is re-hashed as it is read (storage.chunks):
a damaged chunk here ends the answer before it, never goes out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import aiohttp

from node.peer.client import PeerClient, PeerError, PeerMisbehavedError
from node.peer.membership import Admitted
from node.peer.server import PeerHandler
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
from storage.chunks import ChunkStore
from storage.errors import ChunkNotFoundError, IntegrityError
from sync.engine import TransportError

__all__ = ["CHUNKS_PATH", "ContentPeers"]

log = logging.getLogger(__name__)

CHUNKS_PATH = "/peer/v1/content/chunks"
CALL_TIMEOUT_SECONDS = 60.0  # one request for up to 16 MiB of chunks
MAX_ANSWER_FRAMING = MAX_CHUNKS * 8 + 64


class ContentPeers:
    """Serves this node's chunks to members, and fetches chunks from them."""

    def __init__(
        self, peering: Peering, chunks: ChunkStore, on_served: Callable[[int, int], None]
    ) -> None:
        self.peering = peering
        self.chunks = chunks
        self.on_served = on_served  # (chunks, bytes) sent

    # --- serving ---------------------------------------------------------------------------

    async def handle_chunks(self, sender: Admitted, body: bytes) -> tuple[int, bytes]:
        digests, max_bytes = decode_chunk_request(body)
        found = await asyncio.to_thread(self._read, digests, max_bytes)
        self.on_served(len(found), sum(len(c) for c in found))
        return 200, encode_chunks(found)

    def _read(self, digests: list[bytes], max_bytes: int) -> list[bytes]:
        out: list[bytes] = []
        size = 0
        for digest in digests:
            try:
                data = self.chunks.get(digest)
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
        self, peer: str, digests: Sequence[bytes], max_bytes: int
    ) -> list[bytes]:
        client: PeerClient | None = self.peering.client
        if client is None:
            raise TransportError("the peer client is not running")
        connected = self.peering.connected_peers().get(peer)
        admitted = self.peering.membership.cached(peer) if connected is not None else None
        if connected is None or admitted is None:
            raise TransportError(f"node {peer} is not connected")
        url = connected.url
        body = encode_chunk_request(digests, min(max_bytes, MAX_ANSWER_BYTES))
        try:
            async with asyncio.timeout(CALL_TIMEOUT_SECONDS):
                answer = await client.call(
                    url,
                    CHUNKS_PATH,
                    body,
                    admitted.leaf.subject.public_key,
                    max_answer=MAX_ANSWER_BYTES + MAX_ANSWER_FRAMING,
                )
        except PeerMisbehavedError as e:
            raise TransportError(e.message, misbehaved=True) from e
        except PeerError as e:
            raise TransportError(e.message) from e
        except TimeoutError as e:
            raise TransportError(f"{url}: no answer within {CALL_TIMEOUT_SECONDS:.0f} s") from e
        except aiohttp.ClientError as e:
            raise TransportError(f"{url}: {e}") from e
        try:
            return decode_chunks(answer, len(digests))
        except ProtocolError as e:
            raise TransportError(f"chunk answer: {e.message}", misbehaved=True) from e
