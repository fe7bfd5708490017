"""The disk: chunk store, record database, full-text index, import of files into chunks."""

__all__ = ["catalogue", "chunks", "database", "errors", "importer", "store", "textindex"]
