-- 0001: the catalogue: signed records, their search index, chunk accounting, ingest memory.

CREATE TABLE records (
    id            INTEGER PRIMARY KEY,
    pid           TEXT    NOT NULL UNIQUE,
    kind          TEXT    NOT NULL,
    origin        BLOB    NOT NULL,
    hlc_wall      INTEGER NOT NULL,
    hlc_counter   INTEGER NOT NULL,
    deleted       INTEGER NOT NULL CHECK (deleted IN (0, 1)),
    collection    TEXT    NOT NULL,
    access        TEXT    NOT NULL,
    embargo_until TEXT,
    title         TEXT    NOT NULL,
    summary       TEXT    NOT NULL,   -- JSON: what a search hit shows, so hits need no decoding
    content_size  INTEGER NOT NULL,
    file_count    INTEGER NOT NULL,
    envelope      BLOB    NOT NULL,   -- the signed record exactly as verified
    stored_at     INTEGER NOT NULL    -- ms since epoch, local clock
);
CREATE INDEX records_origin ON records (origin, hlc_wall);
CREATE INDEX records_collection ON records (collection) WHERE deleted = 0;

-- Every chunk a live record refers to, counted once however many files share it.
CREATE TABLE chunks (
    digest BLOB    PRIMARY KEY,
    size   INTEGER NOT NULL,
    refs   INTEGER NOT NULL CHECK (refs >= 0)
) WITHOUT ROWID;

-- What `siku ingest` has seen: the same input again changes nothing.
CREATE TABLE ingest_sources (
    fingerprint BLOB PRIMARY KEY,      -- SHA-256 of the input's metadata and file digests
    pid         TEXT NOT NULL,
    source_key  BLOB                   -- SHA-256 of the input's identity: its dc:identifier, else
                                       -- its path (NULL: a CSV row without an identifier)
) WITHOUT ROWID;
CREATE INDEX ingest_sources_source ON ingest_sources (source_key) WHERE source_key IS NOT NULL;

-- The node's hybrid logical clock, shared by the daemon and CLI processes.
CREATE TABLE clock (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    wall_ms INTEGER NOT NULL,
    counter INTEGER NOT NULL
);
INSERT INTO clock (id, wall_ms, counter) VALUES (1, 0, 0);

-- Pre-segmented text (storage/textindex.py): CJK as bigrams + unigrams, other words as is.
CREATE VIRTUAL TABLE search_fts USING fts5 (
    title, creator, subject, description,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
