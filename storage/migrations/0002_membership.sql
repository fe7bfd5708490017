-- 0002: membership records this node holds (certificates, revocations) and its peer table.

-- Signed membership records exactly as verified. One per (kind, subject, signer): a newer
-- certificate or revocation for the same pair replaces the older.
CREATE TABLE membership (
    kind      TEXT    NOT NULL,   -- 'certificate' | 'revocation'
    subject   BLOB    NOT NULL,   -- the public key the record is about
    signer    BLOB    NOT NULL,
    envelope  BLOB    NOT NULL,
    stored_at INTEGER NOT NULL,   -- ms since epoch, local clock
    PRIMARY KEY (kind, subject, signer)
) WITHOUT ROWID;

-- The peer table as the daemon last saved it: where to find other members, and how it went.
CREATE TABLE peers (
    url          TEXT    PRIMARY KEY,
    node_id      TEXT,              -- NULL until a hello has told who answers there
    name         TEXT,
    tier         TEXT,
    region       TEXT,
    source       TEXT    NOT NULL,  -- 'configured' | 'zeroconf' | 'exchange'
    state        TEXT    NOT NULL,
    last_seen_ms INTEGER,
    rtt_ms       REAL,
    failures     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    address      BLOB               -- the node's signed address record, if it gave one
) WITHOUT ROWID;
