"""The wire and the records, no I/O: ids, clocks, canonical encoding, signatures."""

__all__ = ["ark", "errors", "hlc", "identity", "records"]
