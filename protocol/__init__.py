"""The wire and the records, no I/O: ids, clocks, canonical encoding, signatures, membership,
request signing, peer messages and set reconciliation."""

__all__ = [
    "ark",
    "errors",
    "hlc",
    "httpsig",
    "identity",
    "membership",
    "peering",
    "reconcile",
    "records",
]
