-- Starling SQLite schema, migration 001: the three storage shapes of
-- src/storage/storage.h. Applied once, inside the migration transaction;
-- schema_version is created and maintained by the migration runner.
-- "when" and "with" are SQL keywords, hence quoted everywhere.

-- keyval: one value per (host, user, store).
CREATE TABLE keyval (
    host  TEXT NOT NULL,
    user  TEXT NOT NULL,
    store TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (host, user, store)
) WITHOUT ROWID;
-- Listing the users of a store (accounts) without a full scan.
CREATE INDEX keyval_store ON keyval (store, host, user);

-- kvmap: one value per (host, user, store, key).
CREATE TABLE kvmap (
    host  TEXT NOT NULL,
    user  TEXT NOT NULL,
    store TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (host, user, store, key)
) WITHOUT ROWID;

-- archive: append-only items; id orders items with equal "when".
CREATE TABLE archive (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    host   TEXT NOT NULL,
    user   TEXT NOT NULL,
    store  TEXT NOT NULL,
    uid    TEXT NOT NULL UNIQUE,
    "when" INTEGER NOT NULL,
    "with" TEXT,
    value  BLOB NOT NULL
);
CREATE INDEX archive_when ON archive (host, user, store, "when", id);
CREATE INDEX archive_with ON archive (host, user, store, "with", "when", id);
