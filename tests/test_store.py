"""The archive on a real SQLite file: migrations, transactions, idempotent seed import."""

from __future__ import annotations

import sqlite3

import pytest

from aggregator import ingest
from aggregator.models import Entry, Origin
from aggregator.store import SCHEMA_VERSION, Archive, ArchiveError
from aggregator.store.codec import now
from tests.conftest import SEEDS


@pytest.fixture
def archive(tmp_path):
    with Archive(tmp_path / "a.db") as opened:
        yield opened


def test_migrations_build_the_schema_from_an_empty_file(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    with Archive(path) as archive:
        assert archive.schema_version() == SCHEMA_VERSION
        tables = set(archive.db.table_names())
        assert {"sources", "items", "item_revisions", "fetch_log", "items_fts"} <= tables
        assert archive.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert archive.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with Archive(path) as again:  # reopening runs nothing twice
        assert again.schema_version() == SCHEMA_VERSION


def test_an_archive_from_a_newer_program_is_refused(tmp_path):
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ArchiveError, match="newer than this program"):
        Archive(path)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ArchiveError, match="not a usable SQLite archive"):
        Archive(path)


def test_seed_import_is_idempotent(archive):
    first = ingest.import_seeds(archive, [SEEDS])
    second = ingest.import_seeds(archive, [SEEDS])
    assert (first.new, second.new, second.updated) == (10, 0, 0)
    assert archive.count_items(Origin.SEED) == 10
    assert archive.db["item_revisions"].count == 10


def test_ensure_seeds_only_imports_into_an_archive_without_them(archive):
    assert ingest.ensure_seeds(archive, SEEDS).new == 10
    assert ingest.ensure_seeds(archive, SEEDS) is None


def test_full_text_index_follows_the_items(archive):
    ingest.import_seeds(archive, [SEEDS])
    assert ["Serbia" in item.title for item in archive.search("Serbia")] == [True]
    link = "https://www.nato.int/cps/en/natohq/news_1.htm"
    ingest.store_entries(archive, [Entry(title="Alpha meeting", link=link)], "seed")
    ingest.store_entries(archive, [Entry(title="Gamma meeting", link=link)], "seed")
    assert archive.search("alpha") == []
    [revised] = archive.search("gamma")
    assert revised.revision == 2
    assert [r.title for r in archive.revisions(revised.id)] == ["Alpha meeting", "Gamma meeting"]


def test_a_transaction_that_fails_half_way_changes_nothing(archive):
    ingest.import_seeds(archive, [SEEDS])
    before = archive.table_counts()
    entries = [Entry(title=f"Story {n}", link=f"https://example.org/{n}") for n in range(5)]
    archive.ensure_seed_source()

    class Boom(Exception):
        pass

    with pytest.raises(Boom), archive.transaction():
        ingest.store_entries(archive, entries, "seed", Origin.FEED, now())
        assert archive.count_items() == 15  # written inside the transaction...
        raise Boom
    assert archive.table_counts() == before  # ...and rolled back, index included
    assert archive.search("Story") == []


def test_a_bad_seed_file_imports_nothing(archive, tmp_path):
    folder = tmp_path / "seeds"
    folder.mkdir()
    (folder / "a.txt").write_text("Good story\n  • 01 Jan. 2024 -\n\nBody.\n", encoding="utf-8")
    (folder / "b.txt").write_text("Only ages\n\n2 days ago\nNo dates.\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"b\.txt: .*--reference-date"):
        ingest.import_seeds(archive, [folder])
    assert archive.count_items() == 0
