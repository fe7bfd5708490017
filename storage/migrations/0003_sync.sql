-- 0003: catalogue sync. Every record a node holds for the network (catalogue entries and their
-- tombstones, certificates, revocations) has one row here, kept in the same transaction as the
-- record's own table; it is the set anti-entropy reconciles.

CREATE TABLE sync_items (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: "what is new since", snapshot versions
    id   BLOB    NOT NULL UNIQUE,    -- SHA-256 of the signed envelope
    ts   INTEGER NOT NULL,           -- the record's own time, ms (HLC wall, not_before, ...)
    kind TEXT    NOT NULL,
    ref  TEXT    NOT NULL,           -- where the record lives: a pid, or membership kind/subject/signer
    local INTEGER NOT NULL CHECK (local IN (0, 1))  -- 1: written here (ingest, CLI), not received
);
CREATE UNIQUE INDEX sync_items_ref ON sync_items (kind, ref);

-- 1: this node holds the record's content (its own ingest); 0: a record learned from the network,
-- whose chunks are not here and are not counted in `chunks`.
ALTER TABLE records ADD COLUMN held INTEGER NOT NULL DEFAULT 1 CHECK (held IN (0, 1));
