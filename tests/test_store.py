"""The archive on a real SQLite file: migrations, transactions, idempotent seed import."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from aggregator import pipeline
from aggregator.clock import now_to_the_second as now
from aggregator.models import Entry, Origin
from aggregator.parse.seed import SeedError, read_seed_file, seed_files
from aggregator.store import SCHEMA_VERSION, Archive, ArchiveError
from aggregator.store.sources import SEED_SOURCE_ID
from tests.conftest import FIXTURES, SEEDS, table_counts

NATO_URL = "https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml"


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
    first = pipeline.import_seeds(archive, [SEEDS])
    second = pipeline.import_seeds(archive, [SEEDS])
    assert (first.new, second.new, second.updated) == (10, 0, 0)
    assert archive.count_items(Origin.SEED) == 10
    assert archive.db["item_revisions"].count == 10


def test_ensure_seeds_only_imports_into_an_archive_without_them(archive):
    assert pipeline.ensure_seeds(archive, SEEDS).new == 10
    assert pipeline.ensure_seeds(archive, SEEDS) is None


def test_full_text_index_follows_the_items(archive):
    pipeline.import_seeds(archive, [SEEDS])
    assert ["Serbia" in item.title for item in archive.search("Serbia")] == [True]
    link = "https://www.nato.int/cps/en/natohq/news_1.htm"
    pipeline.store_entries(archive, [Entry(title="Alpha meeting", link=link)], "seed")
    pipeline.store_entries(archive, [Entry(title="Gamma meeting", link=link)], "seed")
    assert archive.search("alpha") == []
    [revised] = archive.search("gamma")
    assert revised.revision == 2
    assert [r.title for r in archive.revisions(revised.id)] == ["Alpha meeting", "Gamma meeting"]


def test_a_transaction_that_fails_half_way_changes_nothing(archive):
    pipeline.import_seeds(archive, [SEEDS])
    before = table_counts(archive)
    entries = [Entry(title=f"Story {n}", link=f"https://example.org/{n}") for n in range(5)]
    archive.ensure_seed_source()

    class Boom(Exception):
        pass

    with pytest.raises(Boom), archive.transaction():
        pipeline.store_entries(archive, entries, "seed", Origin.FEED, now())
        assert archive.count_items() == 15  # written inside the transaction...
        raise Boom
    assert table_counts(archive) == before  # ...and rolled back, index included
    assert archive.search("Story") == []


def test_a_bad_seed_file_imports_nothing(archive, tmp_path):
    folder = tmp_path / "seeds"
    folder.mkdir()
    (folder / "a.txt").write_text("Good story\n  • 01 Jan. 2024 -\n\nBody.\n", encoding="utf-8")
    (folder / "b.txt").write_text("Only ages\n\n2 days ago\nNo dates.\n", encoding="utf-8")
    with pytest.raises(SeedError, match=r"b\.txt: .*--reference-date"):
        pipeline.import_seeds(archive, [folder])
    assert archive.count_items() == 0


def store_cut_seeds(project) -> list[Entry]:
    """An archive made before seeds kept their whole text: their summaries were cut and
    listing items had no content."""
    entries = [e for path in seed_files(SEEDS) for e in read_seed_file(path)]
    gone = {"content_html": None, "content_text": None, "summary_html": ""}
    cut = [replace(e, summary_text=e.summary_text[:200], **gone) for e in entries]
    with Archive(project.database) as archive:
        archive.ensure_seed_source()
        pipeline.store_entries(archive, cut, SEED_SOURCE_ID, Origin.SEED)
    return entries


def test_reimporting_seeds_into_an_archive_of_cut_seeds_revises_them_in_place(project):
    entries = store_cut_seeds(project)
    assert project.cli("search", '"Mission to NATO"').stdout.strip() == "no items"

    done = project.cli("import-seeds")
    assert done.stdout.strip() == f"seeds: 0 new, {len(entries)} updated, 0 unchanged"
    with Archive(project.database) as archive:
        items = archive.list_items(origin=Origin.SEED)
        assert sorted(i.title for i in items) == sorted(e.title for e in entries)
        assert {i.revision for i in items} == {2}
        assert all(i.content_text for i in items)
    assert "Serbia" in project.cli("search", '"Mission to NATO"').stdout
    assert project.cli("import-seeds").stdout.strip().endswith(f"{len(entries)} unchanged")


def test_reimporting_seeds_merged_with_live_stories_completes_their_text_once(project, feed_server):
    """The live source owns a merged item's title, summary and version; the seed brings
    its whole text, once: neither a second import nor the next poll revises it again."""
    nato = (FIXTURES / "nato-news-2022-11-26.rss").read_bytes()
    url = feed_server.route("/nato.rss", body=nato)
    project.replace_in_config(NATO_URL, url)
    store_cut_seeds(project)
    assert ", 3 new, 7 updated, " in project.cli("fetch").stdout  # 7 seeds merged

    assert project.cli("import-seeds").stdout.strip() == "seeds: 0 new, 10 updated, 0 unchanged"
    assert project.cli("import-seeds").stdout.strip() == "seeds: 0 new, 0 updated, 10 unchanged"
    feed_server.route("/nato.rss", body=nato + b"<!-- other bytes, same stories -->")
    polled = project.cli("fetch", "--force").stdout
    assert polled.startswith("nato-news: 200, ") and ", 0 new, 0 updated, " in polled
    with Archive(project.database) as archive:
        seeds = archive.list_items(origin=Origin.SEED)
        assert sum(1 for item in seeds if item.link) == 7
        assert {item.revision for item in seeds} == {2}
    assert "Serbia" in project.cli("search", '"Mission to NATO"').stdout
