"""The public listener on a real 127.0.0.1 socket: search, records, content, landing pages."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
from typing import Any

import aiohttp
import pytest

from protocol import ark
from protocol.identity import node_id
from protocol.records import CHUNK_SIZE, CatalogueRecord, LangString, Rights, decode_catalogue
from tests.integration.conftest import HttpNode

PROBLEM = "application/problem+json"
BIG = 2 * CHUNK_SIZE + 123_457  # three chunks, the last one short


def big_bytes() -> bytes:
    return os.urandom(BIG)


def zh(value: str) -> tuple[LangString, ...]:
    return (LangString(value, "zh"),)


def en(value: str) -> tuple[LangString, ...]:
    return (LangString(value, "en"),)


async def problem(resp: aiohttp.ClientResponse, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == PROBLEM
    body: dict[str, Any] = await resp.json(content_type=PROBLEM)
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] in (f"https://siku.invalid/problems/{code}", "about:blank")
    assert body["title"] and body["detail"] and body["instance"].startswith("/")
    return body


def mistype(pid: str) -> str:
    """Change one character of the name: the NCDA check character catches every such error."""
    i = len(pid) - 3
    swap = "b" if pid[i] != "b" else "c"
    return pid[:i] + swap + pid[i + 1 :]


def unknown_pid() -> str:
    return str(ark.mint("99999", "bj", os.urandom(8)))


# --- search -----------------------------------------------------------------------------------


async def search(http: aiohttp.ClientSession, url: str, **params: str) -> dict[str, Any]:
    async with http.get(f"{url}/api/v1/search", params=params) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/json"
        data: dict[str, Any] = await resp.json()
        return data


async def test_search_chinese(
    http_node: HttpNode, public_url: str, http: aiohttp.ClientSession
) -> None:
    project = await http_node.add(zh("数字图书馆推广工程"), creator=zh("文化部"), date=zh("2011"))
    gazetteer = await http_node.add(zh("敦煌县志"), subject=zh("地方志"))
    mentions = await http_node.add(zh("地方文献汇编"), description=zh("收录本省各县县志与家谱。"))
    catalogue = await http_node.add(zh("古籍善本书目"))
    await http_node.add(en("Unrelated English title"))

    data = await search(http, public_url, q="图书馆")
    assert [r["pid"] for r in data["results"]] == [project.pid]
    hit = data["results"][0]
    assert hit["title"] == "数字图书馆推广工程"
    assert hit["creator"] == ["文化部"]
    assert hit["date"] == "2011"
    assert hit["access"] == "open"
    assert hit["record_url"] == f"/api/v1/records/{project.pid}"
    assert hit["landing_url"] == f"/id/{project.pid}"
    assert isinstance(hit["score"], float)

    data = await search(http, public_url, q="书")
    assert {r["pid"] for r in data["results"]} == {project.pid, catalogue.pid}
    assert data["total"] == 2

    # A title match outranks a description match.
    data = await search(http, public_url, q="县志")
    assert [r["pid"] for r in data["results"]] == [gazetteer.pid, mentions.pid]
    assert data["results"][0]["score"] > data["results"][1]["score"]
    assert data["query"] == "县志"


async def test_search_english_pagination_and_ranking(
    http_node: HttpNode, public_url: str, http: aiohttp.ClientSession
) -> None:
    for year in range(2001, 2024):
        await http_node.add(en(f"Annual report {year}"), description=en("Of the county library."))
    top = await http_node.add(en("Library history of Dunhuang"))
    second = await http_node.add(en("Library catalogue"), subject=en("Library science"))

    pages = [
        await search(http, public_url, q="library", per_page="10", page=str(p)) for p in (1, 2, 3)
    ]
    assert [len(p["results"]) for p in pages] == [10, 10, 5]
    assert all(p["total"] == 25 and p["per_page"] == 10 for p in pages)
    assert [p["page"] for p in pages] == [1, 2, 3]
    pids = [r["pid"] for p in pages for r in p["results"]]
    assert len(set(pids)) == 25
    scores = [r["score"] for p in pages for r in p["results"]]
    assert scores == sorted(scores, reverse=True)
    assert set(pids[:2]) == {top.pid, second.pid}  # title matches before description matches

    beyond = await search(http, public_url, q="library", per_page="10", page="4")
    assert beyond["results"] == [] and beyond["total"] == 25
    default = await search(http, public_url, q="LIBRARIES")  # case-folded and stemmed
    assert default["per_page"] == 20 and len(default["results"]) == 20
    nothing = await search(http, public_url, q="!!!")
    assert nothing["total"] == 0 and nothing["results"] == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "missing-query"),
        ({"q": ""}, "missing-query"),
        ({"q": "   "}, "missing-query"),
        ({"q": "书" * 257}, "bad-query"),
        ({"q": " ".join(f"w{i}" for i in range(17))}, "bad-query"),
        ({"q": "书", "page": "0"}, "bad-parameter"),
        ({"q": "书", "page": "-1"}, "bad-parameter"),
        ({"q": "书", "page": "1e3"}, "bad-parameter"),
        ({"q": "书", "page": "99999999"}, "bad-parameter"),
        ({"q": "书", "per_page": "1000"}, "bad-parameter"),
        ({"q": "书", "per_page": "0"}, "bad-parameter"),
        ({"q": "书", "per_page": "abc"}, "bad-parameter"),
    ],
)
async def test_bad_search_is_400(
    public_url: str, http: aiohttp.ClientSession, params: dict[str, str], code: str
) -> None:
    async with http.get(f"{public_url}/api/v1/search", params=params) as resp:
        await problem(resp, 400, code)


# --- records ----------------------------------------------------------------------------------


async def test_record_json(
    http_node: HttpNode, public_url: str, http: aiohttp.ClientSession
) -> None:
    record = await http_node.add(
        (LangString("四库全书总目", "zh"), LangString("Siku quanshu zongmu", "en")),
        files={"vol 1/卷一.pdf": b"%PDF-1.4 volume one"},
        rights=Rights(
            "open",
            statement="http://rightsstatements.org/vocab/NoC-NC/1.0/",
            license="https://creativecommons.org/licenses/by/4.0/",
        ),
        collection="guji",
        creator=zh("纪昀"),
    )
    async with http.get(f"{public_url}/api/v1/records/{record.pid}") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        data = await resp.json()
    assert data["pid"] == record.pid
    assert data["origin"] == node_id(http_node.ctx.identity.public_key)
    assert data["version"] == str(record.version)
    assert data["deleted"] is False
    assert data["dc"]["title"] == [
        {"value": "四库全书总目", "lang": "zh"},
        {"value": "Siku quanshu zongmu", "lang": "en"},
    ]
    assert data["dc"]["creator"] == [{"value": "纪昀", "lang": "zh"}]
    assert data["collection"] == "guji"
    assert data["rights"] == {
        "access": "open",
        "embargo_until": None,
        "statement": "http://rightsstatements.org/vocab/NoC-NC/1.0/",
        "license": "https://creativecommons.org/licenses/by/4.0/",
        "open_now": True,
    }
    (f,) = data["files"]
    entry = record.files[0]
    assert f == {
        "path": "vol 1/卷一.pdf",
        "size": entry.size,
        "media_type": "application/pdf",
        "sha256": entry.sha256.hex(),
        "chunks": 1,
        "content_url": f"/api/v1/content/{record.pid}/vol%201/%E5%8D%B7%E4%B8%80.pdf",
    }
    assert data["signature"]["signer"] == http_node.ctx.identity.public_key.hex()
    assert len(bytes.fromhex(data["signature"]["signature"])) == 64
    # The content URL it gives works.
    async with http.get(public_url + f["content_url"]) as resp:
        assert resp.status == 200
        assert await resp.read() == b"%PDF-1.4 volume one"


async def test_record_msgpack_envelope(
    http_node: HttpNode, public_url: str, http: aiohttp.ClientSession
) -> None:
    record = await http_node.add(en("Envelope"), files={"a.txt": (b"hello", "text/plain")})
    url = f"{public_url}/api/v1/records/{record.pid}"
    for kwargs in (
        {"headers": {"Accept": "application/vnd.siku.record+msgpack"}},
        {"params": {"format": "msgpack"}},
    ):
        async with http.get(url, **kwargs) as resp:  # type: ignore[arg-type]
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/vnd.siku.record+msgpack"
            _, decoded = decode_catalogue(await resp.read())
        assert decoded == record
    async with http.get(url, params={"format": "xml"}) as resp:
        await problem(resp, 400, "bad-parameter")


async def test_record_identifiers(
    http_node: HttpNode, public_url: str, http: aiohttp.ClientSession
) -> None:
    record = await http_node.add(en("Identifiers"))
    base = f"{public_url}/api/v1/records/"

    async with http.get(base + mistype(record.pid)) as resp:
        body = await problem(resp, 400, "bad-identifier")
    assert "mistyped" in body["detail"]
    async with http.get(base + "not-an-ark") as resp:
        await problem(resp, 400, "bad-identifier")

    # ark:/ form and upper case are accepted and redirected to the canonical URL.
    naan, name = record.pid[4:].split("/")
    for variant in (f"ark:/{naan}/{name}", f"ARK:{naan}/{name.upper()}"):
        async with http.get(base + variant, allow_redirects=False) as resp:
            assert resp.status == 301
            assert resp.headers["Location"] == f"/api/v1/records/{record.pid}"
        async with http.get(base + variant) as resp:
            assert resp.status == 200
            assert (await resp.json())["pid"] == record.pid

    async with http.get(base + unknown_pid()) as resp:
        await problem(resp, 404, "not-found")

    await http_node.delete(record.pid)
    async with http.get(base + record.pid) as resp:
        await problem(resp, 410, "deleted")
    async with http.get(f"{public_url}/id/{record.pid}") as resp:
        assert resp.status == 410
    async with http.get(f"{public_url}/api/v1/content/{record.pid}/x.pdf") as resp:
        await problem(resp, 410, "deleted")


# --- content ----------------------------------------------------------------------------------


async def test_content_full_get_and_head(
    http_node: HttpNode, public_url: str, http: aiohttp.ClientSession
) -> None:
    data = big_bytes()
    record = await http_node.add(en("Big"), files={"scans/第一册.pdf": data})
    url = f"{public_url}/api/v1/content/{record.pid}/scans/第一册.pdf"
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    async with http.get(url) as resp:
        assert resp.status == 200
        body = await resp.read()
        headers = resp.headers
    assert body == data
    assert hashlib.sha256(body).hexdigest() == record.files[0].sha256.hex()
    assert headers["ETag"] == etag
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Length"] == str(BIG)
    assert headers["Content-Disposition"] == (
        "inline; filename*=UTF-8''%E7%AC%AC%E4%B8%80%E5%86%8C.pdf"
    )
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "aiohttp" not in headers.get("Server", "")

    async with http.head(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(BIG)
        assert resp.headers["ETag"] == etag
        assert await resp.read() == b""

    async with http.get(f"{public_url}/api/v1/content/{record.pid}/missing.pdf") as resp:
        await problem(resp, 404, "not-found")
    async with http.get(f"{public_url}/api/v1/content/{record.pid}") as resp:
        await problem(resp, 404, "not-found")
    async with http.get(f"{public_url}/api/v1/content/{mistype(record.pid)}/x") as resp:
        await problem(resp, 400, "bad-identifier")
    naan, name = record.pid[4:].split("/")
    async with http.get(
        f"{public_url}/api/v1/content/ark:/{naan}/{name}/scans/第一册.pdf", allow_redirects=False
    ) as resp:
        assert resp.status == 301
        assert resp.headers["Location"] == (
            f"/api/v1/content/{record.pid}/scans/%E7%AC%AC%E4%B8%80%E5%86%8C.pdf"
        )


async def get_range(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[int, bytes, Any]:
    async with http.get(url, headers=headers) as resp:
        return resp.status, await resp.read(), resp.headers


async def test_content_ranges(
    http_node: HttpNode, public_url: str, http: aiohttp.ClientSession
) -> None:
    data = big_bytes()
    record = await http_node.add(
        en("Ranges"), files={"big.bin": (data, "application/octet-stream")}
    )
    url = f"{public_url}/api/v1/content/{record.pid}/big.bin"
    c = CHUNK_SIZE
    cases = [
        ("bytes=0-99", 0, 100),
        (f"bytes={c - 10}-{c + 9}", c - 10, c + 10),  # spans the first chunk boundary
        (f"bytes={c - 1}-{2 * c}", c - 1, 2 * c + 1),  # spans two boundaries
        (f"bytes={c}-", c, BIG),
        ("bytes=-500", BIG - 500, BIG),
        (f"bytes=-{BIG * 2}", 0, BIG),  # a suffix longer than the file is the whole file
        (f"bytes=100-{BIG * 10}", 100, BIG),  # last-pos past the end is clamped
        (f"bytes={BIG - 1}-{BIG - 1}", BIG - 1, BIG),
    ]
    for header, start, stop in cases:
        status, body, headers = await get_range(http, url, {"Range": header})
        assert status == 206, header
        assert body == data[start:stop], header
        assert headers["Content-Range"] == f"bytes {start}-{stop - 1}/{BIG}"
        assert headers["Content-Length"] == str(stop - start)

    for header in (f"bytes={BIG}-", f"bytes={BIG + 5}-{BIG + 10}", "bytes=-0"):
        async with http.get(url, headers={"Range": header}) as resp:
            await problem(resp, 416, "range-not-satisfiable")
            assert resp.headers["Content-Range"] == f"bytes */{BIG}"

    # Malformed, other units, reversed and multi-range requests get the whole file.
    for header in ("bytes=abc", "items=0-1", "bytes=5-1", "bytes=0-1,5-9", "bytes=", "0-1"):
        status, body, headers = await get_range(http, url, {"Range": header})
        assert status == 200, header
        assert body == data
        assert "Content-Range" not in headers

    async with http.head(url, headers={"Range": "bytes=10-19"}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Length"] == "10"
        assert await resp.read() == b""


async def test_content_conditional_requests(
    http_node: HttpNode, public_url: str, http: aiohttp.ClientSession
) -> None:
    data = b"conditional " * 1000
    record = await http_node.add(en("Conditional"), files={"c.txt": (data, "text/plain")})
    url = f"{public_url}/api/v1/content/{record.pid}/c.txt"
    async with http.get(url) as resp:
        etag = resp.headers["ETag"]
    assert etag == f'"{hashlib.sha256(data).hexdigest()}"'

    for inm in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        async with http.get(url, headers={"If-None-Match": inm}) as resp:
            assert resp.status == 304, inm
            assert resp.headers["ETag"] == etag
            assert await resp.read() == b""
    async with http.head(url, headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304
    async with http.get(url, headers={"If-None-Match": '"other"'}) as resp:
        assert resp.status == 200 and await resp.read() == data

    status, body, _ = await get_range(http, url, {"Range": "bytes=0-9", "If-Range": etag})
    assert (status, body) == (206, data[:10])
    for validator in ('"stale"', f"W/{etag}", "Wed, 21 Oct 2015 07:28:00 GMT"):
        status, body, _ = await get_range(http, url, {"Range": "bytes=0-9", "If-Range": validator})
        assert (status, body) == (200, data), validator

    async with http.get(url, headers={"If-Match": '"stale"'}) as resp:
        await problem(resp, 412, "precondition-failed")
    async with http.get(url, headers={"If-Match": etag}) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    ("rights", "words"),
    [
        (Rights("restricted"), "'restricted'"),
        (Rights("onsite"), "'onsite'"),
        (Rights("network"), "'network'"),
        (Rights("embargoed", dt.date(2999, 1, 1)), "embargoed until 2999-01-01"),
    ],
)
async def test_content_rights_denied(
    http_node: HttpNode,
    public_url: str,
    http: aiohttp.ClientSession,
    rights: Rights,
    words: str,
) -> None:
    secret = b"not for anonymous readers " * 10
    record = await http_node.add(en("Closed"), files={"s.pdf": secret}, rights=rights)
    url = f"{public_url}/api/v1/content/{record.pid}/s.pdf"
    for method in ("GET", "HEAD"):
        async with http.request(method, url, headers={"Range": "bytes=0-5"}) as resp:
            if method == "GET":
                body = await problem(resp, 403, "access-denied")
                assert words in body["detail"]
                assert body["access"] == rights.access
                assert secret not in await resp.read()
            else:
                assert resp.status == 403
                assert "ETag" not in resp.headers
    async with http.get(f"{public_url}/api/v1/records/{record.pid}") as resp:
        assert (await resp.json())["rights"]["open_now"] is False
    async with http.get(f"{public_url}/id/{record.pid}") as resp:
        page = await resp.text()
    assert "/api/v1/content/" not in page  # no download links
    assert "cannot be downloaded" in page


async def test_content_embargo_ended(
    http_node: HttpNode, public_url: str, http: aiohttp.ClientSession
) -> None:
    record = await http_node.add(
        en("Was embargoed"),
        files={"e.pdf": b"now open"},
        rights=Rights("embargoed", dt.date(2001, 1, 1)),
    )
    async with http.get(f"{public_url}/api/v1/content/{record.pid}/e.pdf") as resp:
        assert resp.status == 200
        assert await resp.read() == b"now open"


def corrupt(http_node: HttpNode, record: CatalogueRecord, chunk: int) -> bytes:
    """Flip one byte of a stored chunk in place; return the damaged bytes."""
    path = http_node.chunk_file(record.files[0].chunks[chunk].digest)
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(damaged)
    return bytes(damaged)


async def test_damaged_first_chunk_is_500_and_never_served(
    http_node: HttpNode, public_url: str, http: aiohttp.ClientSession, caplog: Any
) -> None:
    data = big_bytes()
    record = await http_node.add(en("Damaged"), files={"d.bin": data})
    damaged = corrupt(http_node, record, 0)
    url = f"{public_url}/api/v1/content/{record.pid}/d.bin"
    async with http.get(url) as resp:
        body = await problem(resp, 500, "integrity-error")
        raw = await resp.read()
    assert damaged[CHUNK_SIZE // 2 - 8 : CHUNK_SIZE // 2 + 8] not in raw
    assert record.files[0].chunks[0].digest.hex() not in body["detail"]
    assert any("INTEGRITY" in r.getMessage() for r in caplog.records)
    # The damaged chunk was quarantined: now it is simply not held here.
    async with http.get(url) as resp:
        await problem(resp, 404, "chunk-missing")
    # A range inside the intact chunks is still served.
    async with http.get(url, headers={"Range": f"bytes={CHUNK_SIZE}-{CHUNK_SIZE + 9}"}) as resp:
        assert resp.status == 206
        assert await resp.read() == data[CHUNK_SIZE : CHUNK_SIZE + 10]


async def test_damage_mid_stream_aborts_the_connection(
    http_node: HttpNode, public_url: str, http: aiohttp.ClientSession
) -> None:
    data = big_bytes()
    record = await http_node.add(en("Damaged later"), files={"d.bin": data})
    corrupt(http_node, record, 1)
    received = bytearray()
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.get(f"{public_url}/api/v1/content/{record.pid}/d.bin") as resp:
            assert resp.status == 200  # headers went out after the first chunk verified
            async for piece in resp.content.iter_chunked(65536):
                received += piece
    assert len(received) < BIG
    assert bytes(received) == data[: len(received)]  # only verified bytes, never wrong ones


# --- HTML -------------------------------------------------------------------------------------


async def test_landing_page(
    http_node: HttpNode, public_url: str, http: aiohttp.ClientSession
) -> None:
    record = await http_node.add(
        (LangString("<script>alert('x')</script> 县志", "zh"), LangString("Gazetteer", "en")),
        files={"a&b.pdf": b"%PDF-1.4"},
        rights=Rights(
            "open",
            statement="http://rightsstatements.org/vocab/NoC-NC/1.0/",
            license="https://creativecommons.org/licenses/by/4.0/",
        ),
        creator=zh('王"引号"之'),
        description=zh("第一行\n第二行"),
        subject=(LangString("地方志", "zh"), LangString("Local history", "en")),
        date=zh("1890"),
        collection="local",
    )
    async with http.get(f"{public_url}/id/{record.pid}") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        assert resp.charset == "utf-8"
        csp = resp.headers["Content-Security-Policy"]
        page = await resp.text()
    assert "default-src 'none'" in csp and "form-action 'self'" in csp
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert '<html lang="en">' in page
    assert 'lang="zh"' in page and 'lang="en"' in page
    assert "王&quot;引号&quot;之" in page
    assert "地方志" in page and "Local history" in page and "1890" in page
    assert "No Copyright – Non-Commercial Use Only" in page
    assert 'rel="license" href="https://creativecommons.org/licenses/by/4.0/"' in page
    assert "CC BY 4.0" in page and "Open access" in page
    assert f'href="/api/v1/content/{record.pid}/a%26b.pdf"' in page
    assert "a&amp;b.pdf" in page
    assert f'href="/api/v1/records/{record.pid}"' in page
    assert record.pid in page
    assert "<script" not in page.replace("&lt;script", "")  # no JS at all
    assert "http" not in page.split("<main>")[0]  # no external assets in the head

    async with http.get(f"{public_url}/id/{mistype(record.pid)}") as resp:
        assert resp.status == 400
        assert "mistyped" in await resp.text()
    async with http.get(
        f"{public_url}/id/{mistype(record.pid)}", headers={"Accept": "text/html"}
    ) as resp:
        assert resp.status == 400
        assert resp.content_type == "text/html"
        assert "mistyped" in await resp.text()
    async with http.get(f"{public_url}/id/{unknown_pid()}") as resp:
        assert resp.status == 404


async def test_home_and_html_search(
    http_node: HttpNode, public_url: str, http: aiohttp.ClientSession
) -> None:
    record = await http_node.add(zh("<b>数字图书馆</b>推广工程"))
    async with http.get(f"{public_url}/") as resp:
        assert resp.status == 200
        page = await resp.text()
        assert "Content-Security-Policy" in resp.headers
    assert '<form role="search" action="/search" method="get">' in page
    assert "测试县图书馆" in page

    async with http.get(f"{public_url}/search", params={"q": "图书馆 <i>"}) as resp:
        assert resp.status == 200
        page = await resp.text()
    assert "No results" in page and "&lt;i&gt;" in page and "<i>" not in page
    async with http.get(f"{public_url}/search", params={"q": "图书馆"}) as resp:
        page = await resp.text()
    assert f'href="/id/{record.pid}"' in page
    assert "&lt;b&gt;数字图书馆&lt;/b&gt;推广工程" in page and "<b>" not in page
    async with http.get(f"{public_url}/search") as resp:
        assert resp.status == 200  # no query: the form again
    async with http.get(f"{public_url}/search", params={"q": "x", "page": "0"}) as resp:
        assert resp.status == 400


async def test_unknown_route_and_method(public_url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{public_url}/api/v1/nothing") as resp:
        body = await problem(resp, 404, "not-found")
        assert body["type"] == "about:blank"
    async with http.post(f"{public_url}/api/v1/search", data=b"x") as resp:
        await problem(resp, 405, "method-not-allowed")
        assert "GET" in resp.headers["Allow"]
    async with http.post(f"{public_url}/api/v1/search", data=b"x" * (2 << 20)) as resp:
        assert resp.status in (405, 413)
        assert resp.content_type == PROBLEM


async def test_redirect_keeps_the_query_encoded(
    http_node: HttpNode, public_url: str, http: aiohttp.ClientSession
) -> None:
    record = await http_node.add(en("Redirect"))
    naan, name = record.pid[4:].split("/")
    async with http.get(
        f"{public_url}/api/v1/records/ark:/{naan}/{name}?format=json&x=a%26b",
        allow_redirects=False,
    ) as resp:
        assert resp.status == 301
        assert resp.headers["Location"] == f"/api/v1/records/{record.pid}?format=json&x=a%26b"
