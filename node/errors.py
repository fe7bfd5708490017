"""Typed errors of the node layer (config, keys, ingest input); each names what to fix."""

from __future__ import annotations

__all__ = [
    "EX_CONFIG",
    "EX_DATAERR",
    "EX_FAIL",
    "EX_OK",
    "EX_UNAVAILABLE",
    "EX_USAGE",
    "ConfigError",
    "HomeError",
    "IngestError",
    "NodeError",
]

# Exit codes of the siku command (sysexits.h), so scripts can tell a bad input from a broken node.
EX_OK = 0
EX_FAIL = 1
EX_USAGE = 2
EX_DATAERR = 65  # some input was rejected
EX_UNAVAILABLE = 69  # the daemon is not reachable
EX_CONFIG = 78  # node.toml, keys or home folder need fixing


class NodeError(Exception):
    """Root of the node layer's errors. `code` is stable; the message says what to do."""

    code = "node-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(NodeError):
    """node.toml (or a command-line setting) is missing, malformed or out of range."""

    code = "config-error"


class HomeError(NodeError):
    """The node's home folder is missing, already initialised, or its keys are unsafe."""

    code = "home-error"


class IngestError(NodeError):
    """Input to `siku ingest` that cannot be accepted. `source` names the file or CSV row."""

    code = "bad-input"

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.detail = message
