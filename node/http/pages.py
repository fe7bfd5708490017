"""Small, accessible HTML pages for readers: home, search results, /id/ landing pages, errors.

No templates engine, no external assets, no JavaScript. Every value from a record or a request
goes through `esc` (or `attr`) before it reaches the page; the only raw strings are the literal
markup in this file.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from protocol.records import CatalogueRecord, FileEntry, LangString

__all__ = [
    "HTML_CSP",
    "SearchRow",
    "access_words",
    "error_page",
    "home_page",
    "html_response",
    "human_size",
    "landing_page",
    "search_page",
]

HTML_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

_STYLE = """
body{font-family:system-ui,"Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;
max-width:48rem;margin:0 auto;padding:1rem;line-height:1.5;color:#111;background:#fff}
a{color:#0645ad}a:focus,input:focus,button:focus{outline:3px solid #f90}
header{border-bottom:1px solid #ccc;padding-bottom:.5rem;margin-bottom:1rem}
dt{font-weight:bold;margin-top:.5rem}dd{margin-left:1.5rem}
.desc{white-space:pre-line}table{border-collapse:collapse}
th,td{text-align:left;padding:.25rem .75rem .25rem 0;vertical-align:top}
input[type=search]{font-size:1rem;padding:.25rem;width:min(30rem,70vw)}
button{font-size:1rem;padding:.25rem .75rem}
ol.results li{margin-bottom:.75rem}code{word-break:break-all}
"""

# Labels of the RightsStatements.org statements (https://rightsstatements.org/page/1.0/).
_STATEMENTS = {
    "InC": "In Copyright",
    "InC-OW-EU": "In Copyright – EU Orphan Work",
    "InC-EDU": "In Copyright – Educational Use Permitted",
    "InC-NC": "In Copyright – Non-Commercial Use Permitted",
    "InC-RUU": "In Copyright – Rights-holder(s) Unlocatable or Unidentifiable",
    "NoC-CR": "No Copyright – Contractual Restrictions",
    "NoC-NC": "No Copyright – Non-Commercial Use Only",
    "NoC-OKLR": "No Copyright – Other Known Legal Restrictions",
    "NoC-US": "No Copyright – United States",
    "CNE": "Copyright Not Evaluated",
    "UND": "Copyright Undetermined",
    "NKC": "No Known Copyright",
}
_STATEMENT_URI = re.compile(r"https?://rightsstatements\.org/vocab/([A-Za-z-]+)/([0-9.]+)/")
_CC_URI = re.compile(r"https?://creativecommons\.org/(licenses|publicdomain)/([a-z-]+)/([0-9.]+)/?")

_LABELS = {
    "title": "Title",
    "creator": "Creator",
    "subject": "Subject",
    "description": "Description",
    "publisher": "Publisher",
    "contributor": "Contributor",
    "date": "Date",
    "type": "Type",
    "format": "Format",
    "identifier": "Identifier",
    "source": "Source",
    "language": "Language",
    "relation": "Relation",
    "coverage": "Coverage",
    "rights": "Rights",
}


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _lang(value: LangString) -> str:
    return f' lang="{esc(value.lang)}"' if value.lang else ""


def html_response(body: str, *, status: int = 200) -> web.Response:
    resp = web.Response(status=status, text=body, content_type="text/html", charset="utf-8")
    resp.headers["Content-Security-Policy"] = HTML_CSP
    resp.headers["Referrer-Policy"] = "same-origin"
    return resp


def _page(title: str, main: str, *, site: str = "siku", query: str = "") -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f'<header><a href="/">{esc(site)}</a>\n{_search_form(query)}</header>\n'
        f"<main>\n{main}\n</main>\n</body>\n</html>\n"
    )


def _search_form(query: str) -> str:
    return (
        '<form role="search" action="/search" method="get">'
        '<label for="q">Search the catalogue</label> '
        f'<input type="search" id="q" name="q" value="{esc(query)}" maxlength="256"> '
        "<button>Search</button></form>"
    )


def human_size(size: int) -> str:
    """`1.5 MiB`, with the exact byte count for anything over a kibibyte."""
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            break
    return f"{value:.1f} {unit} ({size:,} bytes)"


def access_words(record: CatalogueRecord, today: dt.date) -> str:
    r = record.rights
    if r.access == "open":
        return "Open access: anyone may read and download it."
    if r.access == "embargoed" and r.embargo_until is not None:
        if r.is_open_on(today):
            return f"Open access (its embargo ended on {r.embargo_until.isoformat()})."
        return f"Embargoed until {r.embargo_until.isoformat()}: not available before then."
    return {
        "network": "Available only to readers inside the library network.",
        "onsite": "Available only on site, in the library's reading rooms.",
        "restricted": "Restricted: not available to readers.",
    }.get(r.access, r.access)


def _statement_label(uri: str) -> str:
    m = _STATEMENT_URI.fullmatch(uri)
    return _STATEMENTS.get(m.group(1), uri) if m else uri


def _licence_label(uri: str) -> str:
    m = _CC_URI.fullmatch(uri)
    if not m:
        return uri
    kind, name, version = m.groups()
    if kind == "publicdomain":
        return {"zero": f"CC0 {version}", "mark": f"Public Domain Mark {version}"}.get(name, uri)
    return f"CC {name.upper()} {version}"


def home_page(site: str) -> str:
    main = (
        f"<h1>{esc(site)}</h1>\n"
        "<p>Search the catalogue of the library network: titles, creators, subjects and"
        " descriptions, in Chinese or any other language.</p>"
    )
    return _page(site, main, site=site)


@dataclass(frozen=True)
class SearchRow:
    pid: str
    title: str
    title_lang: str
    creators: Sequence[str]
    date: str
    access: str


def search_page(
    site: str,
    query: str,
    total: int,
    page: int,
    per_page: int,
    rows: Sequence[SearchRow],
) -> str:
    items = []
    for row in rows:
        lang = f' lang="{esc(row.title_lang)}"' if row.title_lang else ""
        meta = "; ".join(x for x in ("; ".join(row.creators), row.date) if x)
        items.append(
            f'<li><a href="/id/{esc(row.pid)}"{lang}>{esc(row.title or row.pid)}</a>'
            + (f"<br>{esc(meta)}" if meta else "")
            + f"<br><small>{esc(row.access)} · <code>{esc(row.pid)}</code></small></li>"
        )
    first = (page - 1) * per_page + 1
    if rows:
        summary = f"Results {first}–{first + len(rows) - 1} of {total} for “{esc(query)}”"
    else:
        summary = f"No results for “{esc(query)}”" + (" on this page" if total else "")
    nav = []
    if page > 1:
        nav.append(
            f'<a rel="prev" href="/search?{esc(urlencode({"q": query, "page": page - 1}))}">'
            "Previous page</a>"
        )
    if page * per_page < total:
        nav.append(
            f'<a rel="next" href="/search?{esc(urlencode({"q": query, "page": page + 1}))}">'
            "Next page</a>"
        )
    main = (
        f'<h1>Search results</h1>\n<p role="status">{summary}</p>\n'
        + (
            f'<ol class="results" start="{first}">\n' + "\n".join(items) + "\n</ol>\n"
            if items
            else ""
        )
        + (f'<nav aria-label="Result pages">{" · ".join(nav)}</nav>' if nav else "")
    )
    return _page(f"{query} – search – {site}", main, site=site, query=query)


def _values(values: Iterable[LangString], *, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return "".join(f"<dd{_lang(v)}{cls}>{esc(v.value)}</dd>" for v in values)


def _file_rows(files: Sequence[tuple[FileEntry, str]], downloadable: bool) -> str:
    rows = []
    for entry, url in files:
        name = esc(entry.path)
        cell = f'<a href="{esc(url)}">{name}</a>' if downloadable else name
        rows.append(
            f"<tr><td>{cell}</td><td>{esc(entry.media_type)}</td>"
            f"<td>{esc(human_size(entry.size))}</td></tr>"
        )
    return "\n".join(rows)


def landing_page(
    site: str,
    record: CatalogueRecord,
    *,
    today: dt.date,
    record_url: str,
    files: Sequence[tuple[FileEntry, str]],
) -> str:
    """The page /id/<pid> resolves to: the record in words, its rights, and its files."""
    titles = record.values("title")
    main_title = titles[0]
    parts = [f"<h1{_lang(main_title)}>{esc(main_title.value)}</h1>", "<dl>"]
    if len(titles) > 1:
        parts.append("<dt>Titles</dt>" + _values(titles))
    for element, label in _LABELS.items():
        if element == "title" or not record.values(element):
            continue
        css = "desc" if element == "description" else ""
        parts.append(f"<dt>{label}</dt>" + _values(record.values(element), css=css))
    if record.collection:
        parts.append(f"<dt>Collection</dt><dd>{esc(record.collection)}</dd>")
    rights = record.rights
    parts.append(f"<dt>Access</dt><dd>{esc(access_words(record, today))}</dd>")
    if rights.statement:
        parts.append(
            f'<dt>Copyright status</dt><dd><a href="{esc(rights.statement)}">'
            f"{esc(_statement_label(rights.statement))}</a></dd>"
        )
    if rights.license:
        parts.append(
            f'<dt>Licence</dt><dd><a rel="license" href="{esc(rights.license)}">'
            f"{esc(_licence_label(rights.license))}</a></dd>"
        )
    parts.append(f"<dt>Persistent identifier</dt><dd><code>{esc(record.pid)}</code></dd>")
    parts.append("</dl>")
    downloadable = rights.is_open_on(today)
    if files:
        parts.append("<h2>Files</h2>")
        if not downloadable:
            parts.append("<p>These files cannot be downloaded here: see Access above.</p>")
        parts.append(
            '<table><thead><tr><th scope="col">File</th><th scope="col">Type</th>'
            '<th scope="col">Size</th></tr></thead><tbody>\n'
            + _file_rows(files, downloadable)
            + "\n</tbody></table>"
        )
    parts.append(
        f'<p><a href="{esc(record_url)}" type="application/json">Catalogue record (JSON)</a></p>'
    )
    return _page(f"{main_title.value} – {site}", "\n".join(parts), site=site)


def error_page(status: int, title: str, detail: str) -> str:
    main = f"<h1>{esc(title)}</h1>\n<p>{esc(detail)}</p>\n<p><small>HTTP {status}</small></p>"
    return _page(f"{title} – siku", main)
