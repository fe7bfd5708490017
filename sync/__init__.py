"""Decisions and background work between nodes: gossip, anti-entropy, placement, transfers.

Empty until catalogue sync (issue 4) and replication (issue 5) land; the package exists so the
layering (protocol ← storage ← sync ← node) is fixed from the start.
"""

__all__: list[str] = []
