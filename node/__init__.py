"""The composition root: config, keys, CLI, daemon, HTTP surfaces, ingest of local input."""

__all__ = ["cli", "config", "context", "daemon", "errors", "http", "ingest", "keys", "progress"]
