"""Decisions and background work between nodes.

Catalogue sync (issue 4): `records` (what a synced record is), `authority` (who may write
what), `engine` (push gossip and anti-entropy over two protocols, a record set and a transport),
`store` and `memory` (record sets over a node's store and in memory). Replication (placement,
transfers) comes next.
"""

__all__: list[str] = []
