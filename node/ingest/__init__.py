"""`siku ingest`: reading what a librarian points at (sources) and storing it (pipeline)."""

__all__ = ["bagit", "pipeline", "sources"]
