"""The archive's schema as numbered migrations; `PRAGMA user_version` says which have run.

Append new migrations at the end and never edit one that has shipped: an archive
created months ago must reach the current shape by running the steps it missed.

Each migration gets the archive's sqlite-utils `Database`, inside the transaction that also
sets the version. sqlite-utils does what it does well: `enable_fts` builds the search index
in the shape its own tools and Datasette recognise, and a migration that changes a table's
columns would use `table.transform` (which drops the table's triggers: recreate them; and,
as items is referenced ON DELETE CASCADE, run it with foreign keys off). The tables stay
SQL: `create_table` cannot write their CHECK constraints, and shipped steps must not change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_utils import Database

V1_CORE = """
CREATE TABLE sources (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL DEFAULT 'feed' CHECK (kind IN ('feed', 'seed')),
    title TEXT NOT NULL,
    url TEXT NOT NULL,                    -- where we poll now (follows permanent redirects)
    config_url TEXT NOT NULL,             -- the URL config.toml gave; a change resets url
    enabled INTEGER NOT NULL DEFAULT 1,
    gone INTEGER NOT NULL DEFAULT 0,      -- answered 410 Gone: never polled again
    etag TEXT,
    last_modified TEXT,
    body_hash TEXT,
    last_poll TEXT,
    last_status INTEGER,
    last_error TEXT,
    consecutive_errors INTEGER NOT NULL DEFAULT 0,
    next_poll_not_before TEXT,
    created TEXT NOT NULL
);

CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL CHECK (origin IN ('seed', 'feed')),
    source_id TEXT NOT NULL REFERENCES sources(id),
    atom_id TEXT NOT NULL UNIQUE,
    guid TEXT,
    guid_key TEXT UNIQUE,                 -- source id + guid: guids are only unique per source
    link TEXT,
    canonical_url TEXT UNIQUE,
    title_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    title TEXT NOT NULL,
    summary_html TEXT NOT NULL,
    summary_text TEXT NOT NULL,
    content_html TEXT,
    content_text TEXT,
    author TEXT,
    categories TEXT NOT NULL DEFAULT '[]',
    published TEXT NOT NULL,
    updated TEXT NOT NULL,
    precision TEXT NOT NULL CHECK (precision IN ('day', 'minute', 'second')),
    date_inferred INTEGER NOT NULL DEFAULT 0,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 1,
    content_hash TEXT NOT NULL
);
CREATE INDEX items_fingerprint ON items(fingerprint);
CREATE INDEX items_title_key ON items(title_key);
CREATE INDEX items_published ON items(published);
CREATE INDEX items_source ON items(source_id);

CREATE TABLE item_revisions (
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    revision INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    title TEXT NOT NULL,
    summary_html TEXT NOT NULL,
    content_html TEXT,
    content_hash TEXT NOT NULL,
    published TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (item_id, revision)
);

CREATE TABLE fetch_log (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    source_id TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    status INTEGER,
    bytes INTEGER NOT NULL DEFAULT 0,
    duration_ms REAL NOT NULL DEFAULT 0,
    new_items INTEGER NOT NULL DEFAULT 0,
    updated_items INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX fetch_log_time ON fetch_log(time);
CREATE INDEX fetch_log_source ON fetch_log(source_id, time);

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

V1_SEARCH = """
CREATE VIRTUAL TABLE items_fts USING fts5(
    title, summary_text, content_text,
    content='items', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER items_fts_insert AFTER INSERT ON items BEGIN
    INSERT INTO items_fts(rowid, title, summary_text, content_text)
    VALUES (new.id, new.title, new.summary_text, new.content_text);
END;
CREATE TRIGGER items_fts_delete AFTER DELETE ON items BEGIN
    INSERT INTO items_fts(items_fts, rowid, title, summary_text, content_text)
    VALUES ('delete', old.id, old.title, old.summary_text, old.content_text);
END;
CREATE TRIGGER items_fts_update AFTER UPDATE OF title, summary_text, content_text ON items BEGIN
    INSERT INTO items_fts(items_fts, rowid, title, summary_text, content_text)
    VALUES ('delete', old.id, old.title, old.summary_text, old.content_text);
    INSERT INTO items_fts(rowid, title, summary_text, content_text)
    VALUES (new.id, new.title, new.summary_text, new.content_text);
END;
"""

V2_CLASSIFICATION = """
CREATE TABLE item_topics (
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    score REAL NOT NULL,
    matched INTEGER NOT NULL,             -- score reached the topic's threshold
    rules TEXT NOT NULL DEFAULT '[]',     -- JSON: the rules that fired, for `explain`
    PRIMARY KEY (item_id, topic)
);
CREATE INDEX item_topics_topic ON item_topics(topic, matched);
"""


# Version 3: the same index, declared as sqlite-utils declares one (content="items"), which
# is what `sqlite-utils search`, `enable_fts(replace=True)` and Datasette's search box look
# for. Our triggers stay: sqlite-utils' update trigger re-indexes an item on any UPDATE,
# ours only when its text changes. They name "items_fts" quoted, so sqlite-utils'
# `disable_fts` finds and drops them with the index.
FTS_COLUMNS = ("title", "summary_text", "content_text")
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"

V3_SEARCH_TRIGGERS = """
CREATE TRIGGER items_fts_insert AFTER INSERT ON items BEGIN
    INSERT INTO "items_fts" (rowid, title, summary_text, content_text)
    VALUES (new.id, new.title, new.summary_text, new.content_text);
END;
CREATE TRIGGER items_fts_delete AFTER DELETE ON items BEGIN
    INSERT INTO "items_fts" ("items_fts", rowid, title, summary_text, content_text)
    VALUES ('delete', old.id, old.title, old.summary_text, old.content_text);
END;
CREATE TRIGGER items_fts_update AFTER UPDATE OF title, summary_text, content_text ON items BEGIN
    INSERT INTO "items_fts" ("items_fts", rowid, title, summary_text, content_text)
    VALUES ('delete', old.id, old.title, old.summary_text, old.content_text);
    INSERT INTO "items_fts" (rowid, title, summary_text, content_text)
    VALUES (new.id, new.title, new.summary_text, new.content_text);
END;
"""


def _search_as_sqlite_utils_declares_it(db: Database) -> None:
    for trigger in ("items_fts_insert", "items_fts_delete", "items_fts_update"):
        db.execute(f"DROP TRIGGER {trigger}")
    db["items_fts"].drop()
    db["items"].enable_fts(FTS_COLUMNS, tokenize=FTS_TOKENIZER)  # creates and fills it
    _script(V3_SEARCH_TRIGGERS)(db)


# Version 4: the capture queue and what each capture found (issue 15). The article's text
# goes into its item (content_html, content_text: a revision); the page, compressed, here.
V4_CAPTURES = """
CREATE TABLE captures (
    item_id INTEGER PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'captured', 'not article', 'disallowed', 'given up')),
    attempts INTEGER NOT NULL DEFAULT 0,  -- failures since the last answer that counted
    next_attempt TEXT,                    -- pending: not before this
    queued TEXT NOT NULL,
    last_attempt TEXT,
    last_status INTEGER,
    reason TEXT,                          -- why not an article, disallowed, given up or retried
    final_url TEXT,
    etag TEXT,
    last_modified TEXT,
    title TEXT,                           -- as extracted from the page
    author TEXT,
    published TEXT,
    page BLOB,                            -- the page's HTML as fetched, zlib-compressed
    captured TEXT                         -- when the article was last stored
);
CREATE INDEX captures_due ON captures(state, next_attempt);
"""


# Version 5: each entry of a feed source's document at its last stored poll, by the digest
# of its bytes (parse.prepare.entry_digests), with the item it went to, the content hash it
# gave it and its identity, so that the next poll reads only the entries that changed.
V5_ENTRY_DIGESTS = """
CREATE TABLE entry_digests (
    source_id TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    digest BLOB NOT NULL,
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    content_hash TEXT NOT NULL,
    guid_key TEXT,
    canonical_url TEXT,
    fingerprint TEXT NOT NULL,
    title_key TEXT NOT NULL,
    PRIMARY KEY (source_id, digest)
) WITHOUT ROWID;
CREATE INDEX entry_digests_item ON entry_digests(item_id);
"""


# Version 6: the items stored before captures existed (version 4) are captured too: each feed
# item with an http(s) link and no capture joins the queue, due now, as a new item would.
V6_CAPTURE_OLDER_ITEMS = """
INSERT INTO captures (item_id, url, next_attempt, queued)
SELECT id, link, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
FROM items
WHERE origin = 'feed' AND (link LIKE 'http://%' OR link LIKE 'https://%')
    AND id NOT IN (SELECT item_id FROM captures);
"""


def _script(sql: str) -> Callable[[Database], None]:
    def run(db: Database) -> None:
        # executescript() would COMMIT first; run statement by statement inside our transaction.
        for statement in _statements(sql):
            db.conn.execute(statement)

    return run


def _statements(sql: str) -> list[str]:
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        if line.strip().startswith("--") and not buffer.strip():
            continue
        buffer += line
        if _complete(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


def _complete(buffer: str) -> bool:
    return buffer.strip().endswith(";") and sqlite3.complete_statement(buffer)


MIGRATIONS: list[Callable[[Database], None]] = [
    _script(V1_CORE + V1_SEARCH),
    _script(V2_CLASSIFICATION),
    _search_as_sqlite_utils_declares_it,
    _script(V4_CAPTURES),
    _script(V5_ENTRY_DIGESTS),
    _script(V6_CAPTURE_OLDER_ITEMS),
]

SCHEMA_VERSION = len(MIGRATIONS)
