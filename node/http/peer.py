"""Mounts the peer API (`/peer/v1/…`, see node.peer.server) on the public listener."""

from __future__ import annotations

from aiohttp import web

from node.context import NodeContext
from node.http.problems import Problem
from protocol.peering import MAX_HELLO_BYTES

__all__ = ["add_peer_routes"]


def add_peer_routes(app: web.Application, ctx: NodeContext) -> None:
    peering = ctx.peering
    if peering is None:

        async def not_enrolled(request: web.Request) -> web.Response:
            raise Problem(
                503,
                "not-enrolled",
                "Not a network member",
                "This node is not enrolled in a network (or its certificate is not valid);"
                " it talks to no peers.",
            )

        app.router.add_route("*", "/peer/v1/{tail:.*}", not_enrolled)
        return
    # A hello is bounded by its own format (MAX_HELLO_BYTES), whatever the listener's limit.
    hello = peering.server.route(peering.handle_hello, max_body=MAX_HELLO_BYTES)
    app.router.add_post("/peer/v1/hello", hello)
    app.router.add_post("/peer/v1/ping", peering.server.route(peering.handle_ping))
    routes = []
    if ctx.sync is not None:
        routes += ctx.sync.routes()
    if ctx.replication is not None:
        routes += ctx.replication.routes()
    for path, limit, handler in routes:
        app.router.add_post(path, peering.server.route(handler, max_body=limit))
