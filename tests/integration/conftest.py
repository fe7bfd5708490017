"""HTTP integration fixtures: a real store and identity in tmp_path, apps on 127.0.0.1 sockets."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from node.config import Config, HostPort
from node.context import NodeContext
from node.http import build_admin_app, build_public_app
from node.keys import create_identity
from protocol import ark
from protocol.records import CatalogueRecord, FileEntry, LangString, Rights, sign_catalogue
from storage.catalogue import StoredRecord
from storage.importer import import_file
from storage.store import Store, StoreSettings

QUOTA_BYTES = 8 << 30


@dataclass
class HttpNode:
    """A node's context plus helpers to put records (and their content) into its store."""

    ctx: NodeContext
    tmp: Path
    originals: dict[tuple[str, str], bytes] = field(default_factory=dict)

    async def add(
        self,
        title: str | Sequence[LangString],
        *,
        files: Mapping[str, bytes | tuple[bytes, str]] | None = None,
        rights: Rights | None = None,
        collection: str = "",
        **dc: Sequence[LangString],
    ) -> CatalogueRecord:
        """Store a signed record; `files` maps a path to bytes (or bytes, media type)."""
        store = self.ctx.store
        pid = str(ark.mint(self.ctx.config.ark_naan, self.ctx.config.code, secrets.token_bytes(8)))
        entries: list[FileEntry] = []
        for path, spec in (files or {}).items():
            data, media_type = spec if isinstance(spec, tuple) else (spec, "application/pdf")
            source = self.tmp / "sources" / secrets.token_hex(8)
            source.parent.mkdir(exist_ok=True)
            source.write_bytes(data)
            entries.append(
                await asyncio.to_thread(import_file, store.chunks, source, path, media_type)
            )
            self.originals[(pid, path)] = data
        await asyncio.to_thread(store.chunks.flush)
        titles = (LangString(title, "en"),) if isinstance(title, str) else tuple(title)
        record = CatalogueRecord(
            pid=pid,
            origin=self.ctx.identity.public_key,
            version=await store.catalogue.next_version(int(time.time() * 1000)),
            dc={"title": titles, **{k: tuple(v) for k, v in dc.items()}},
            collection=collection,
            rights=rights or Rights(),
            files=tuple(entries),
        )
        await self._put(record)
        return record

    async def delete(self, pid: str) -> None:
        version = await self.ctx.store.catalogue.next_version(int(time.time() * 1000))
        await self._put(CatalogueRecord(pid, self.ctx.identity.public_key, version, deleted=True))

    async def _put(self, record: CatalogueRecord) -> None:
        signed = sign_catalogue(record, self.ctx.identity.key)
        await self.ctx.store.catalogue.put([StoredRecord(signed, record)])

    def chunk_file(self, digest: bytes) -> Path:
        h = digest.hex()
        return self.ctx.store.settings.root / "chunks" / h[:2] / h[2:4] / h


@pytest.fixture
async def http_node(tmp_path: Path) -> AsyncIterator[HttpNode]:
    config = Config(
        home=tmp_path,
        name="测试县图书馆 Test County Library",
        code="bj",
        tier="county",
        region="110101",
        parent="http://10.0.0.1:8470",
        public_url="http://127.0.0.1:8470",
        peers=(),
        hello_interval_seconds=30,
        sync_interval_seconds=30,
        max_peers=256,
        network_name="siku-test",
        ark_naan="99999",
        listen=HostPort("127.0.0.1", 8470),
        admin_listen=HostPort("127.0.0.1", 8471),
        admin_allow_remote=False,
        max_body_bytes=1 << 20,
        quota_bytes=QUOTA_BYTES,
        zeroconf=False,
        log_level="info",
    )
    store = await Store.open(StoreSettings(tmp_path / "store", QUOTA_BYTES))
    identity = create_identity(tmp_path / "keys" / "node.key")
    ctx = NodeContext(config, identity, store, secrets.token_urlsafe(32))
    try:
        yield HttpNode(ctx, tmp_path)
    finally:
        await store.close()


async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def public_url(http_node: HttpNode) -> AsyncIterator[str]:
    """Base URL of the public app, served on a real socket."""
    async for url in _serve(build_public_app(http_node.ctx)):
        yield url


@pytest.fixture
async def admin_url(http_node: HttpNode) -> AsyncIterator[str]:
    async for url in _serve(build_admin_app(http_node.ctx)):
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
