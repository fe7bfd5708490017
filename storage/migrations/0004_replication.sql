-- 0004: content replication. Holdings pages (every node's, this one's included), the network's
-- replication policy, node status records, the copies this node keeps of other libraries' content, and the keys
-- that tie catalogue records to holdings.

-- Signed holdings pages exactly as verified (protocol.holdings), one per (holder, page).
CREATE TABLE holding_pages (
    holder      BLOB    NOT NULL,
    page        INTEGER NOT NULL,
    hlc_wall    INTEGER NOT NULL,
    hlc_counter INTEGER NOT NULL,
    envelope    BLOB    NOT NULL,
    PRIMARY KEY (holder, page)
) WITHOUT ROWID;

-- The entries of those pages, one row per copy: who holds what. Keys are the protocol's 8-byte
-- keys read as signed 64-bit integers.
CREATE TABLE holdings (
    pid_key     INTEGER NOT NULL,
    holder      BLOB    NOT NULL,
    content_key INTEGER NOT NULL,
    verified_s  INTEGER NOT NULL,
    page        INTEGER NOT NULL,
    PRIMARY KEY (pid_key, holder)
) WITHOUT ROWID;
CREATE INDEX holdings_page ON holdings (holder, page);

-- The newest replication policy signed by the network root (none: the default policy).
CREATE TABLE policy (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    envelope BLOB    NOT NULL
);

-- Every node's newest signed status record (protocol.status): space, holdings, lag.
CREATE TABLE node_status (
    node        BLOB    PRIMARY KEY,
    hlc_wall    INTEGER NOT NULL,
    hlc_counter INTEGER NOT NULL,
    full        INTEGER NOT NULL CHECK (full IN (0, 1)),
    envelope    BLOB    NOT NULL
) WITHOUT ROWID;

-- Content this node holds for the network rather than from its own ingest: records.held = 1
-- with a row here. (Held records without one are the library's own collection.)
CREATE TABLE copies (
    pid          TEXT    PRIMARY KEY,
    class        TEXT    NOT NULL CHECK (class IN ('preservation', 'subscription', 'cache')),
    dark         INTEGER NOT NULL CHECK (dark IN (0, 1)),  -- kept, never served from here
    bytes        INTEGER NOT NULL,
    verified_ms  INTEGER NOT NULL,
    stored_ms    INTEGER NOT NULL,
    last_used_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Pid keys whose holding here changed since this node last published its pages.
CREATE TABLE holdings_dirty (
    pid_key INTEGER PRIMARY KEY
);

ALTER TABLE records ADD COLUMN pid_key INTEGER;      -- NULL until filled (Store.open)
ALTER TABLE records ADD COLUMN content_key INTEGER;
CREATE INDEX records_pid_key ON records (pid_key);
