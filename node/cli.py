"""The `siku` command: init, ingest, run, search, get, status, demo. Errors say what to do."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from node.cli_membership import add_membership_parsers
from node.cli_status import add_status_parser, cmd_status, daemon_status
from node.config import CONFIG_FILE, TIERS, Config, load_config
from node.enrolment import EnrolmentError
from node.errors import (
    EX_CONFIG,
    EX_DATAERR,
    EX_FAIL,
    EX_OK,
    ConfigError,
    HomeError,
    IngestError,
    NodeError,
)
from node.home import init_home, with_store
from node.ingest.pipeline import Ingester, IngestOptions, IngestResult, IngestSummary, discover_all
from node.keys import load_identity
from node.progress import Progress, format_size
from protocol import ark
from protocol.errors import ProtocolError
from protocol.identity import node_id
from protocol.records import (
    ACCESS_VALUES,
    CatalogueRecord,
    Rights,
    sign_catalogue,
    validate_collection,
)
from storage.catalogue import SearchPage, StoredRecord
from storage.errors import StorageError
from storage.store import Store

__all__ = ["main"]

log = logging.getLogger("siku")


DEFAULT_HOME = os.environ.get("SIKU_HOME", "/var/lib/siku")


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


# --- init ---------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    home = Path(args.home)
    config, identity, network = init_home(
        home,
        name=args.name,
        code=args.code,
        tier=args.tier,
        region=args.region or "",
        parent=args.parent or "",
        listen=args.listen,
        public_url=args.public_url or "",
        admin_listen=args.admin_listen,
        network_file=Path(args.network) if args.network else None,
        network_name=args.network_name,
        ark_naan=args.ark_naan,
        quota_gib=args.quota_gib,
        force=args.force,
        say=_out,
    )
    _out(f"initialised {config.tier} node {config.name!r} in {home}")
    _out(f"  node id     {identity.node_id}")
    _out(f"  config      {home / CONFIG_FILE}")
    _out(f"  key         {config.key_file} (mode 0600)")
    _out(f"  admin token {config.token_file} (mode 0600)")
    if network is not None:
        _out(f"  network     {network.name} ({network.id})")
        _out(f"enrol it with: siku enroll request --home {home}")
    _out(f"start it with: siku run --home {home}")
    return EX_OK


# --- ingest -------------------------------------------------------------------------------------


def _options(args: argparse.Namespace) -> IngestOptions:
    embargo = None
    if args.embargo_until:
        try:
            embargo = dt.date.fromisoformat(args.embargo_until)
        except ValueError as e:
            raise NodeError(f"--embargo-until {args.embargo_until!r} is not YYYY-MM-DD") from e
    if args.access == "embargoed" and embargo is None:
        raise NodeError("--access embargoed needs --embargo-until YYYY-MM-DD")
    try:  # the same checks a record makes, before any work is done
        validate_collection(args.collection or "")
        Rights(
            access=args.access or "open",
            embargo_until=embargo if args.access == "embargoed" else None,
            statement=args.rights or "",
            license=args.license or "",
        )
    except ProtocolError as e:
        raise NodeError(e.message) from e
    return IngestOptions(args.collection, args.access, embargo, args.rights, args.license)


def _print_result(result: IngestResult, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result.__dict__, ensure_ascii=False) + "\n")
    elif result.status == "failed":
        sys.stderr.write(f"error: {result.label}: {result.message}\n")
    else:
        note = " (already ingested)" if result.status == "unchanged" else ""
        _out(f"{result.status:<9} {result.pid}  {result.label}{note}")


def cmd_ingest(args: argparse.Namespace) -> int:
    config = load_config(Path(args.home))
    identity = load_identity(config.key_file)
    options = _options(args)
    paths = [Path(p) for p in args.paths]
    for p in paths:
        if not p.exists():
            raise IngestError(str(p), "no such file or folder")
    progress = Progress("ingest", enabled=None if not args.quiet else False)
    summary = IngestSummary()

    async def go() -> None:
        store = await Store.open(config.store)
        try:
            ingester = Ingester(
                store,
                identity,
                config.ark_naan,
                config.code,
                options,
                on_bytes=progress.add_bytes,
            )

            def waiting() -> None:
                sys.stderr.write("siku: waiting for another ingest into this node to finish\n")

            async with store.exclusive("ingest", on_wait=waiting):
                async for result in ingester.run(discover_all(paths)):
                    summary.add(result)
                    progress.add_item()
                    if not args.quiet or result.status == "failed":
                        progress.clear()
                        _print_result(result, args.json)
        finally:
            await store.close()

    asyncio.run(go())
    progress.finish()
    c = summary.counts
    line = (
        f"{c['added']} added, {c['updated']} updated, {c['unchanged']} unchanged,"
        f" {c['failed']} failed"
    )
    if c["unchanged"] and not (c["added"] or c["updated"] or c["failed"]):
        line += " — nothing changed: this input was already ingested"
    (sys.stderr if args.json else sys.stdout).write(line + "\n")
    return EX_OK if summary.ok else EX_DATAERR


# --- run ----------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from node.daemon import run_daemon  # uvloop and the HTTP stack load only for the daemon

    config = load_config(Path(args.home))
    logging.getLogger().setLevel(config.log_level.upper())
    run_daemon(config)
    return EX_OK


# --- search, get --------------------------------------------------------------------------------


def cmd_search(args: argparse.Namespace) -> int:
    config = load_config(Path(args.home))

    async def go(store: Store) -> Any:
        try:
            return await store.catalogue.search(args.query, limit=args.limit, offset=args.offset)
        except ValueError as e:
            raise NodeError(str(e)) from e

    page: SearchPage = with_store(config, go)
    if args.json:
        _json(
            {
                "query": page.query,
                "total": page.total,
                "offset": page.offset,
                "results": [{"pid": h.pid, "score": h.score, **h.summary} for h in page.hits],
            }
        )
        return EX_OK
    if not page.hits:
        _out(f"no results for {args.query!r}")
        return EX_OK
    _out(f"{page.total} results for {args.query!r}")
    for hit in page.hits:
        titles = " / ".join(hit.texts("title"))
        creators = "; ".join(hit.texts("creator"))
        _out(f"{hit.pid}  {titles}" + (f"  — {creators}" if creators else ""))
    return EX_OK


def cmd_get(args: argparse.Namespace) -> int:
    config = load_config(Path(args.home))
    try:
        pid = str(ark.parse(args.pid))
    except ProtocolError as e:
        raise NodeError(e.message) from e

    async def go(store: Store) -> int:
        got = await store.catalogue.get(pid)
        if got is None:
            raise NodeError(f"{pid}: this node holds no such record")
        signed, record = got
        if args.file is None:
            from node.http.public import record_json

            view = record_json(signed, record, dt.date.today())
            if args.json:
                _json(view)
            else:
                _print_record(view)
            return EX_OK
        entry = record.file(args.file)
        if entry is None:
            listing = ", ".join(f.path for f in record.files) or "none"
            raise NodeError(f"{pid} has no file {args.file!r}; its files: {listing}")
        if not await store.catalogue.is_held(pid):
            raise NodeError(f"{pid} is catalogued here but its content is held by its library")
        if not args.output:
            async for piece in store.iter_range(entry, 0, entry.size):
                sys.stdout.buffer.write(piece)
            return EX_OK
        # Written beside the target and renamed at the end: a damaged chunk never leaves a
        # partial file that looks complete. (A CLI process: blocking writes hold up nothing.)
        target = Path(args.output)
        part = target.with_name(target.name + ".part")
        try:
            with part.open("wb") as out:
                async for piece in store.iter_range(entry, 0, entry.size):
                    out.write(piece)
            part.replace(target)
        finally:
            part.unlink(missing_ok=True)
        return EX_OK

    return int(with_store(config, go))


def _print_record(view: dict[str, Any]) -> None:
    _out(f"{view['pid']}  (version {view['version']}{', DELETED' if view['deleted'] else ''})")
    for element, values in view["dc"].items():
        for v in values:
            lang = f" [{v['lang']}]" if v["lang"] else ""
            _out(f"  {element:<12}{v['value']}{lang}")
    if view["collection"]:
        _out(f"  {'collection':<12}{view['collection']}")
    r = view["rights"]
    access = r["access"] + (f" until {r['embargo_until']}" if r["embargo_until"] else "")
    _out(f"  {'access':<12}{access}")
    for key in ("statement", "license"):
        if r[key]:
            _out(f"  {key:<12}{r[key]}")
    for f in view["files"]:
        _out(
            f"  file        {f['path']}  {format_size(f['size'])}  {f['media_type']}"
            f"  sha256:{f['sha256'][:16]}…"
        )


# --- status -------------------------------------------------------------------------------------


def cmd_delete(args: argparse.Namespace) -> int:
    """Withdraw one of this library's records: a signed tombstone replaces it everywhere."""
    config = load_config(Path(args.home))
    try:
        pid = str(ark.parse(args.pid))
    except ProtocolError as e:
        raise IngestError(args.pid, e.message) from e
    identity = load_identity(config.key_file)

    async def go(store: Store) -> str:
        async with store.exclusive("ingest"):
            got = await store.catalogue.get(pid)
            if got is None:
                raise IngestError(pid, "this node holds no such record")
            _, record = got
            if record.origin != identity.public_key:
                raise IngestError(
                    pid,
                    f"belongs to another library (node {node_id(record.origin)});"
                    " only the library that made a record can delete it",
                )
            if record.deleted:
                return f"{pid} is already deleted"
            version = await store.catalogue.next_version(int(time.time() * 1000))
            tombstone = CatalogueRecord(pid, identity.public_key, version, deleted=True)
            signed = sign_catalogue(tombstone, identity.key)
            (outcome,) = await store.catalogue.put([StoredRecord(signed, tombstone)])
            if not outcome.applied:
                return f"{pid} is already deleted"  # withdrawn meanwhile, from elsewhere
            return f"deleted {pid} ({record.title}); the deletion spreads to the network"

    _out(with_store(config, go))
    return EX_OK


# --- demo ---------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """Four libraries, one per tier, each its own daemon process on loopback ports, enrolled down
    the chain and connected; the sample collection is ingested at the county library."""
    from node.cli_membership import cmd_peers
    from node.demo import (
        DEMO_NODES,
        NATIONAL_COLLECTION,
        Processes,
        build_network,
        is_built,
        wait_until,
    )

    root, sample = Path(args.home), Path(args.sample)
    if not is_built(root, DEMO_NODES):
        if (root / "network").exists():
            raise HomeError(
                f"{root} holds an incomplete demo network: remove it (rm -r {root}) and retry"
            )
        _out(f"creating a four-tier demo network in {root}")
        build_network(
            root,
            DEMO_NODES,
            hello_interval_seconds=5,
            sync_interval_seconds=5,
            replication_interval_seconds=10,
        )
        for spec in DEMO_NODES:
            _out(f"  {spec.tier:<11} {spec.name}  {spec.url}  (home {root / spec.key})")
    county = root / "county"
    inputs = [sample / "collection.csv"]
    inputs += sorted(p for p in (sample / "bags").iterdir() if p.is_dir())
    inputs += sorted(p for p in (sample / "folders").iterdir() if p.is_dir())
    _out(f"ingesting the sample collection from {sample} at the county library")
    rc = cmd_ingest(
        argparse.Namespace(
            home=str(county),
            paths=[str(p) for p in inputs],
            collection=None,
            access=None,
            embargo_until=None,
            rights=None,
            license=None,
            json=False,
            quiet=True,
        )
    )
    if rc != EX_OK:
        return rc
    national_sample = sample.parent / "national" / "collection.csv"
    if national_sample.exists():
        _out(f"ingesting the national collection {NATIONAL_COLLECTION} at the national library")
        rc = cmd_ingest(
            argparse.Namespace(
                home=str(root / "national"), paths=[str(national_sample)], collection=None,
                access=None, embargo_until=None, rights=None, license=None, json=False,
                quiet=True,
            )
        )  # fmt: skip
        if rc != EX_OK:
            return rc
    configs = {spec.key: load_config(root / spec.key) for spec in DEMO_NODES}
    homes = [root / spec.key for spec in DEMO_NODES]

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM/SIGHUP stop the children in order, like Ctrl-C

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    _out("starting the four daemons (logs: HOME/daemon.log)")
    with Processes(homes) as processes:

        def all_connected() -> bool:
            processes.check_alive()
            for config in configs.values():
                peers = asyncio.run(_peers_of(config))
                if peers is None or sum(p["state"] == "connected" for p in peers) < 3:
                    return False
            return True

        wait_until(all_connected, 90, "the four nodes to connect to each other", interval=1.0)
        for spec in DEMO_NODES:
            _out("")
            _out(f"$ siku peers --home {root / spec.key}    # {spec.tier}")
            cmd_peers(argparse.Namespace(home=str(root / spec.key), json=False))
        c = configs["county"]
        national = configs["national"]
        _out("")
        _demo_catalogue_sync(root, county, configs, processes)
        _out("")
        _demo_replication(root, configs, processes)
        _out("")
        _out("siku demo network is running. Try:")
        _out(f"  search     {c.listen.url()}/search?q=县志   (the county library's catalogue)")
        _out(f"  national   {national.listen.url()}/search?q=敦煌   (the same, synced)")
        _out(f"  sync       .venv/bin/siku status --home {root / 'national'}")
        _out(f"  copies     .venv/bin/siku status --home {root / 'provincial'}")
        _out(f"  API        {c.listen.url()}/api/v1/search?q=dunhuang")
        _out(f"  peers      .venv/bin/siku peers --home {root / 'national'}")
        _out(f"  status     .venv/bin/siku status --home {county}")
        token = root / "national" / "keys" / "admin.token"
        admin = national.admin_listen.url()
        _out(f"  console    {admin}/   (sign in with the token in {token})")
        _out(f"  network    .venv/bin/siku status --network --home {root / 'national'}")
        _out(f'  metrics    curl -H "Authorization: Bearer $(cat {token})" {admin}/metrics')
        _out("Press Ctrl-C to stop all four.")
        sys.stdout.flush()
        try:
            while True:
                time.sleep(1)
                processes.check_alive()
        except KeyboardInterrupt:
            _out("stopping the four daemons")
    _out("stopped")
    return EX_OK


def _public_search(config: Config, query: str) -> list[str]:
    """pids a node's public search API returns for `query` (first page)."""
    import urllib.parse
    import urllib.request

    url = f"{config.listen.url()}/api/v1/search?" + urllib.parse.urlencode({"q": query})
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (our own loopback node)
        data = json.loads(resp.read())
    return [str(hit["pid"]) for hit in data.get("results", [])]


def _demo_catalogue_sync(
    root: Path, county: Path, configs: dict[str, Config], processes: Any
) -> None:
    """Show catalogue sync: the sample reaches every node; a new resource ingested at the county
    is found by search at the national node within seconds, and so is its deletion."""
    from node.demo import wait_until

    async def records(config: Config) -> int | None:
        status = await daemon_status(config)
        return None if status is None else int(status["counts"]["records"])

    want = asyncio.run(records(configs["county"]))

    def everywhere() -> bool:
        processes.check_alive()
        return all(asyncio.run(records(c)) == want for c in configs.values())

    wait_until(everywhere, 120, "the sample catalogue to reach every node", interval=1.0)
    _out(f"catalogue sync: all four nodes hold the county's {want} records")
    stamp = time.strftime("%H%M%S")
    new = root / "new-resources" / f"敦煌新获写本 {stamp}.txt"
    new.parent.mkdir(exist_ok=True)
    new.write_text("敦煌新获写本 (demo resource)\n", encoding="utf-8")
    query = f"敦煌新获写本 {stamp}"
    national = configs["national"]
    rc = cmd_ingest(
        argparse.Namespace(
            home=str(county), paths=[str(new)], collection=None, access=None,
            embargo_until=None, rights=None, license=None, json=False, quiet=True,
        )
    )  # fmt: skip
    if rc != EX_OK:
        raise NodeError("the demo resource could not be ingested at the county node")
    started = time.monotonic()
    wait_until(lambda: bool(_public_search(national, query)), 60, "the new record at national")
    pid = _public_search(national, query)[0]
    _out(
        f"  ingested {new.name} at the county: searchable at the national node after"
        f" {time.monotonic() - started:.1f} s  ({pid})"
    )
    cmd_delete(argparse.Namespace(home=str(county), pid=pid))
    started = time.monotonic()
    wait_until(lambda: not _public_search(national, query), 60, "the deletion at national")
    _out(f"  deleted it at the county: gone from the national node after"
         f" {time.monotonic() - started:.1f} s")  # fmt: skip


def _demo_replication(root: Path, configs: dict[str, Config], processes: Any) -> None:
    """Show replication: every resource of the county reaches the copies the policy asks for
    (≥ 3, one at a higher tier of Gansu, one outside it), and the national lectures reach the
    county, which subscribes to them."""
    from node.demo import NATIONAL_COLLECTION, wait_until

    async def replication(config: Config) -> dict[str, Any] | None:
        status = await daemon_status(config)
        return None if status is None else dict(status.get("replication") or {})

    started = time.monotonic()

    def settled() -> bool:
        processes.check_alive()
        states = [asyncio.run(replication(c)) for c in configs.values()]
        if any(s is None or not s.get("enabled") for s in states):
            return False
        # The county holds nothing of other libraries but the national lectures: as
        # subscriptions, or as preservation copies where the policy placed them there.
        county = asyncio.run(replication(configs["county"])) or {}
        subscribed = sum(c["copies"] for c in county.get("copies", {}).values())
        return (
            all(s is not None and not s["queued"] and not s["active"] for s in states)
            and all(s is not None and s["last_plan_ms"] for s in states)
            and not any(
                sum(s["below_policy"].values()) or s["at_risk"] for s in states if s is not None
            )
            and subscribed >= 3
        )

    wait_until(settled, 180, "replication to meet the policy", interval=1.0)
    _out(
        f"replication: after {time.monotonic() - started:.0f} s every resource meets the policy"
        " (≥ 3 copies, one at a higher tier of its province, one outside it), and the county"
        f" holds the national collection {NATIONAL_COLLECTION} it subscribes to"
    )
    for key in ("county", "municipal", "provincial", "national"):
        _out("")
        _out(f"$ siku status --home {root / key}    # {configs[key].tier}")
        cmd_status(
            argparse.Namespace(
                home=str(root / key), json=False, network=False, require_daemon=False
            )
        )


async def _peers_of(config: Config) -> list[dict[str, Any]] | None:
    from node.cli_membership import daemon_peers

    return await daemon_peers(config)


# --- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siku", description="siku digital-library node")
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def home(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--home",
            default=DEFAULT_HOME,
            help=f"node home folder (default {DEFAULT_HOME}, or $SIKU_HOME)",
        )

    p = sub.add_parser("init", help="create a node's home: node.toml, keys, empty store")
    home(p)
    p.add_argument("--name", required=True, help="library name")
    p.add_argument("--code", required=True, help="library code used in identifiers")
    p.add_argument("--tier", required=True, choices=TIERS)
    p.add_argument("--parent", help="parent library's peer URL, e.g. http://10.20.0.5:8470")
    p.add_argument("--region", help="GB/T 2260 code of the library's region (for enrolment)")
    p.add_argument("--network", help="the network's network.toml (from siku network init)")
    p.add_argument("--public-url", help="URL other libraries reach this node at")
    p.add_argument("--listen", default="127.0.0.1:8470", help="public listener HOST:PORT")
    p.add_argument(
        "--admin-listen", default="127.0.0.1:8471", help="admin listener HOST:PORT (loopback)"
    )
    p.add_argument("--network-name", default="siku", help="network name")
    p.add_argument("--ark-naan", default="99999", help="network's ARK prefix (NAAN)")
    p.add_argument("--quota-gib", type=int, default=4096, help="storage quota in GiB")
    p.add_argument(
        "--force", action="store_true", help="replace an existing home (old store kept aside)"
    )
    p.set_defaults(fn=cmd_init)

    p = sub.add_parser("ingest", help="add files, folders, BagIt bags or a CSV of resources")
    home(p)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--collection", help="collection for resources that name none")
    p.add_argument(
        "--access",
        choices=ACCESS_VALUES,
        help="access status where the input gives none (default open)",
    )
    p.add_argument(
        "--embargo-until", metavar="YYYY-MM-DD", help="end of the embargo, with --access embargoed"
    )
    p.add_argument("--rights", metavar="URI", help="RightsStatements.org URI")
    p.add_argument("--license", metavar="URI", help="licence URI")
    p.add_argument("--json", action="store_true", help="one JSON object per resource on stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="print only errors and the summary")
    p.set_defaults(fn=cmd_ingest)

    p = sub.add_parser("run", help="run the daemon (until SIGTERM or Ctrl-C)")
    home(p)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("search", help="search the catalogue held by this node")
    home(p)
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_search)

    p = sub.add_parser("get", help="show a record, or write one of its files")
    home(p)
    p.add_argument("pid")
    p.add_argument("--file", help="path of a file of the resource to write out (verified)")
    p.add_argument("--output", "-o", help="where to write the file (default: standard output)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_get)

    p = sub.add_parser("delete", help="withdraw one of this library's records (everywhere)")
    home(p)
    p.add_argument("pid")
    p.set_defaults(fn=cmd_delete)

    add_status_parser(sub, home)
    add_membership_parsers(sub, home)

    p = sub.add_parser(
        "demo", help="run a four-tier demo network on loopback ports 8470-8477 with a sample"
    )
    p.add_argument("--home", required=True, help="folder for the demo network's homes")
    p.add_argument("--sample", required=True, help="the sample collection folder")
    p.set_defaults(fn=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        rc: int = args.fn(args)
    except KeyboardInterrupt:
        return 130
    except (NodeError, StorageError, ProtocolError, OSError, BaseExceptionGroup) as raised:
        # Raised directly or from inside a TaskGroup: either way, a sentence, not a traceback.
        error = _first_leaf(raised)
        if not isinstance(error, NodeError | StorageError | ProtocolError | OSError):
            raise  # a bug: let it be seen whole
        sys.stderr.write(f"siku: {_describe(error)}\n")
        return _exit_code(error)
    return rc


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and not isinstance(error, NodeError | StorageError):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror or error}"
    return str(getattr(error, "message", error))


def _exit_code(error: BaseException) -> int:
    if isinstance(error, IngestError | EnrolmentError):
        return EX_DATAERR
    if isinstance(error, ConfigError | HomeError):
        return EX_CONFIG
    return EX_FAIL


if __name__ == "__main__":
    sys.exit(main())
