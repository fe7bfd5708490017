"""Peers: the membership view, the signed peer API (server and client), the peer table, dialing
and discovery."""
