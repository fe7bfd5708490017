"""`python -m deploy.lab`: bring a lab up until Ctrl-C or SIGTERM, or clean up after one."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from deploy.lab.lab import Lab, LabSpec
from deploy.lab.netns import (
    LabError,
    Shaping,
    clean_all,
    clean_stale,
    lab_namespaces,
    missing_requirements,
    parse_loss,
    parse_rate,
)

COMMANDS = ("up", "clean", "list")
WATCH_INTERVAL_SECONDS = 2.0


def _pairs(values: Sequence[str], what: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        name, sep, value = v.partition("=")
        if not sep or not name or not value:
            raise LabError(f"{what} {v!r}: expected NODE=VALUE")
        out.append((name, value))
    return out


def _spec(args: argparse.Namespace) -> LabSpec:
    if args.rate is not None:
        parse_rate(args.rate)
    loss = parse_loss(args.loss) if args.loss is not None else None
    links: dict[str, Shaping] = {}
    for name, rate in _pairs(args.node_rate, "--node-rate"):
        links[name] = Shaping(rate, links.get(name, Shaping(args.rate, loss)).loss)
    for name, value in _pairs(args.node_loss, "--node-loss"):
        links[name] = Shaping(links.get(name, Shaping(args.rate, loss)).rate, parse_loss(value))
    return LabSpec(
        provincial=args.provincial,
        municipal=args.municipal,
        county=args.county,
        rate=args.rate,
        loss=loss,
        shaping=links,
        peers=tuple(_pairs(args.peer, "--peer")),
        hello_interval_seconds=args.hello,
        sync_interval_seconds=args.sync,
        zeroconf=args.zeroconf,
    )


def _up(args: argparse.Namespace) -> int:
    spec = _spec(args)
    tools = ["ip"] + (["tc"] if args.rate or args.node_rate else [])
    tools += ["nft"] if args.loss or args.node_loss else []
    reason = missing_requirements(tools)
    if reason is not None:
        raise LabError(reason)
    # SIGTERM/SIGHUP end the lab like Ctrl-C: the `with` block's exit tears everything down.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    workdir = Path(args.workdir).resolve() if args.workdir else None
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        print(f"lab: {text}", file=sys.stderr, flush=True)

    try:
        with Lab(spec, workdir, say=say) as lab:
            if args.check:
                say("checking unicast and multicast between every pair of nodes")
                lab.check()
            print(f"lab {lab.run_id}: {len(lab.nodes)} nodes up", flush=True)
            print(lab.table(), flush=True)
            print(
                "run a command in a node's namespace: ip netns exec NAMESPACE"
                f" env SIKU_HOME=HOME {sys.executable} -m node.cli peers",
                flush=True,
            )
            deadline = None if args.seconds is None else time.monotonic() + args.seconds
            say("up; Ctrl-C (or SIGTERM) stops the daemons and deletes the namespaces")
            exited: set[str] = set()
            while deadline is None or time.monotonic() < deadline:
                time.sleep(WATCH_INTERVAL_SECONDS)
                for node in lab.nodes.values():
                    if node.name not in exited and not lab.running(node):
                        exited.add(node.name)
                        say(f"the daemon of {node.name} exited; see {node.home}/daemon.log")
    except KeyboardInterrupt:
        say("stopped; daemons stopped and namespaces deleted")
        return 130
    say("done; daemons stopped and namespaces deleted")
    return 0


def _clean(args: argparse.Namespace) -> int:
    reason = missing_requirements()
    if reason is not None:
        raise LabError(reason)
    runs = clean_all() if args.all else clean_stale()
    print(f"deleted the namespaces of {len(runs)} lab(s): {' '.join(runs) or '-'}")
    return 0


def _list(args: argparse.Namespace) -> int:
    reason = missing_requirements()
    if reason is not None:
        raise LabError(reason)
    for run, names in sorted(lab_namespaces().items()):
        print(f"{run}  {' '.join(sorted(names))}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m deploy.lab",
        description="siku nodes of the four tiers, each in its own network namespace on one"
        " bridge (needs root, iproute2; nftables for --loss). Without a command: up.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build and run a lab until Ctrl-C or SIGTERM")
    up.add_argument("--provincial", type=int, default=1, help="provincial libraries (1)")
    up.add_argument("--municipal", type=int, default=1, help="municipal libraries (1)")
    up.add_argument("--county", type=int, default=1, help="county libraries (1)")
    up.add_argument("--rate", help="tbf rate on every link, each way, e.g. 100mbit")
    up.add_argument("--loss", help="packets dropped on every link, each way, e.g. 1%%")
    up.add_argument(
        "--node-rate", action="append", default=[], metavar="NODE=RATE", help="per node"
    )
    up.add_argument(
        "--node-loss", action="append", default=[], metavar="NODE=LOSS", help="per node"
    )
    up.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="A=B",
        help="node A lists node B in its [peers] urls (repeatable)",
    )
    up.add_argument("--hello", type=int, default=1, help="hello interval, seconds (1)")
    up.add_argument("--sync", type=int, default=2, help="anti-entropy interval, seconds (2)")
    up.add_argument("--zeroconf", action="store_true", help="mDNS discovery on the bridge")
    up.add_argument(
        "--workdir", help="folder for the homes, kept afterwards (default: a temporary one)"
    )
    up.add_argument("--check", action="store_true", help="ping every pair before serving")
    up.add_argument("--for", dest="seconds", type=float, help="tear down after this many seconds")
    up.set_defaults(fn=_up)
    clean = sub.add_parser(
        "clean", aliases=["down"], help="delete the namespaces of labs whose process is gone"
    )
    clean.add_argument("--all", action="store_true", help="also of running labs")
    clean.set_defaults(fn=_clean)
    listing = sub.add_parser("list", help="the labs on this machine and their namespaces")
    listing.set_defaults(fn=_list)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, "up")
    args = parser().parse_args(args_list)
    try:
        code: int = args.fn(args)
    except LabError as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
