"""What the daemon's services share: settings, identity, store and start time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from node.config import Config
from node.events import Events
from node.keys import Identity
from storage.store import Store

if TYPE_CHECKING:
    from node.peer.service import Peering
    from node.peer.sync import CatalogueSync
    from node.replication import Replication

__all__ = ["VERSION", "NodeContext"]

VERSION = "0.1.0"


@dataclass
class NodeContext:
    config: Config
    identity: Identity
    store: Store
    admin_token: str
    peering: Peering | None = None  # None until the node is enrolled in a network
    sync: CatalogueSync | None = None  # catalogue sync, with peering
    replication: Replication | None = None  # content replication, with sync
    events: Events = field(default_factory=Events)  # recent significant events (console)
    started_monotonic: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)

    @property
    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started_monotonic
