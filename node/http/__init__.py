"""The node's HTTP surfaces: the public listener (readers) and the admin listener (staff)."""

from node.http.admin import build_admin_app
from node.http.public import build_public_app

__all__ = ["build_admin_app", "build_public_app"]
