"""The archive file as other tools see it, an older archive migrating, and what the command
line says when the file is damaged, locked, or asked a query SQLite cannot read."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import sqlite_utils

from aggregator import store
from aggregator.store import SCHEMA_VERSION, Archive

TABLES = {"sources", "items", "item_revisions", "fetch_log", "item_topics", "meta", "items_fts"}


def _store_item(path, item_id: int, title: str) -> None:
    """One item as any schema version since 1 holds it, written with plain SQL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "INSERT OR IGNORE INTO sources (id, title, url, config_url, created) "
        "VALUES ('s', 'S', 'https://example.org/', 'https://example.org/', '2024-01-01T00:00:00Z')"
    )
    conn.execute(
        """INSERT INTO items (id, origin, source_id, atom_id, title_key, fingerprint, title,
               summary_html, summary_text, published, updated, precision, first_seen,
               last_seen, content_hash)
           VALUES (?, 'feed', 's', ?, ?, ?, ?, '', 'Partners meet in Brussels.',
               '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z', 'second',
               '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z', 'h')""",
        (item_id, f"tag:x,2024:{item_id}", title.lower(), title.lower(), title),
    )
    conn.close()


def test_a_version_2_archive_migrates_and_its_search_finds_old_and_new_items(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    with monkeypatch.context() as old:
        old.setattr(store, "SCHEMA_VERSION", 2)  # the program before version 3
        Archive(path).close()
    _store_item(path, 1, "Georgia and NATO")
    assert sqlite_utils.Database(path)["items"].detect_fts() is None  # content='items'

    with Archive(path) as archive:
        assert archive.schema_version() == SCHEMA_VERSION >= 3
        assert [item.id for item in archive.search("georgia")] == [1]
    _store_item(path, 2, "Ukraine and NATO")
    with Archive(path) as archive:
        assert [item.id for item in archive.search("ukraine")] == [2]
        assert {item.id for item in archive.search("brussels")} == {1, 2}
        assert archive.integrity_check() == "ok"


def test_items_stored_before_captures_existed_are_queued_for_capture(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    with monkeypatch.context() as old:
        old.setattr(store, "SCHEMA_VERSION", 3)  # the program before captures (version 4)
        Archive(path).close()
    for item_id, link in ((1, "https://www.nato.int/news_1.htm"), (2, None), (3, "mailto:x@y")):
        _store_item(path, item_id, f"Story {item_id}")
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE items SET link = ? WHERE id = ?", (link, item_id))

    with Archive(path) as archive:
        soon = datetime.now(UTC) + timedelta(seconds=2)
        due = archive.due_captures(soon)
        assert [(job.item_id, job.url) for job in due] == [(1, "https://www.nato.int/news_1.htm")]
        assert archive.integrity_check() == "ok"
        # Today's news goes before the backlog; and half a run's batch still takes the
        # longest due, however many new items keep coming.
        for item_id in range(4, 10):
            _store_item(path, item_id, f"Story {item_id}")
            archive.queue_captures([(item_id, f"https://www.nato.int/n_{item_id}.htm")], soon)
        assert [job.item_id for job in archive.due_captures(soon)][:2] == [9, 8]
        assert [job.item_id for job in archive.due_captures(soon, limit=4)] == [9, 8, 1, 4]
        assert [job.item_id for job in archive.due_captures(soon, limit=1)] == [1]


def test_sqlite_utils_lists_the_tables_and_columns_and_searches_the_items(project):
    project.cli("import-seeds")
    db = sqlite_utils.Database(project.database)
    assert set(db.table_names()) >= TABLES
    assert {"id", "title", "link", "published", "summary_text", "source_id"} <= set(
        db["items"].columns_dict
    )
    assert db["items"].detect_fts() == "items_fts"  # what Datasette's search box looks for
    found = list(db["items"].search("Serbia", columns=["title"]))
    assert found and all("Serbia" in row["title"] for row in found)
    listed = subprocess.run(
        [sys.executable, "-m", "sqlite_utils", "tables", "--counts", str(project.database)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"table": "items", "count": 10' in listed.stdout


def test_a_damaged_archive_is_one_line_naming_the_file(project):
    project.cli("import-seeds")
    page = 4096
    data = bytearray(project.database.read_bytes())
    assert len(data) > 2 * page and not project.database.with_suffix(".db-wal").exists()
    data[page:] = b"\xa5" * (len(data) - page)  # every page but the header and schema
    project.database.write_bytes(bytes(data))

    result = project.cli("items", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {project.database}: not a usable SQLite archive")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_an_archive_another_program_keeps_locked_is_one_line_after_the_wait(project):
    project.cli("import-seeds")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_WRITE_LOCK, str(project.database)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "holding\n"
        command = ["--config", str(project.config), "import-seeds"]
        began = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-c", _CLI_WAITING_HALF_A_SECOND, *command],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: archive {project.database} is locked: another program held its write lock "
        "for 0.5 s; try again when it is done"
    )
    assert time.monotonic() - began < 30  # the shortened wait, not the default


# Another program (a sqlite3 shell, a backup tool) in a write transaction on the archive.
_HOLD_THE_WRITE_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("holding", flush=True)
time.sleep(120)
"""

# The real command line, waiting 0.5 s for the lock instead of 30 s.
_CLI_WAITING_HALF_A_SECOND = """
import sys
from aggregator import store
store.BUSY_TIMEOUT = 0.5
from aggregator.cli import main
sys.argv[0] = "aggregator"
main()
"""


def test_a_query_sqlite_cannot_read_is_a_search_error_with_a_hint(project):
    project.cli("import-seeds")
    result = project.cli("search", "fts:NEAR(", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert "cannot read the query" in result.stderr and "NATO-Ukraine" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
