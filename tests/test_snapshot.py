"""Snapshots on real archives: taken while another process writes, verified byte by byte,
restored, pruned, and readable without this program."""

from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator import config as config_module
from aggregator import pipeline, store
from aggregator import snapshot as snap
from aggregator.capture.warc import append_capture
from aggregator.cli import TerminalProgress
from aggregator.lock import WRITER_WAIT, ArchiveLock, LockHeld
from aggregator.models import Entry, Item, Origin, Precision, Revision, SourceSpec, TopicScore
from aggregator.snapshot import layout, pages, writing
from aggregator.snapshot import manifest as snapshot_manifest
from aggregator.store import Archive
from aggregator.store import snapshot as store_snapshot
from tests.conftest import ROOT, SEEDS
from tests.test_lock import hold_in_another_process, start_cli

SOURCE = SourceSpec("wire", "Wire", "http://127.0.0.1:9/feed.xml")
START = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def stories(first: int, count: int, *, edition: str = "") -> list[Entry]:
    return [
        Entry(
            title=f"Partnership dispatch {n}{edition}: allies meet partner number {n * 7919}",
            link=f"https://www.nato.int/cps/en/natohq/news_{n}.htm?utm_source=rss",
            guid=f"https://www.nato.int/cps/en/natohq/news_{n}.htm",
            summary_html=f"<p>Summary {n}{edition} with “quotes” &amp; ünïcode.</p>",
            summary_text=f"Summary {n}{edition} with “quotes” & ünïcode.",
            content_html=f"<p>Full text {n}{edition}.</p>" if n % 2 else None,
            content_text=f"Full text {n}{edition}." if n % 2 else None,
            author="NATO" if n % 3 else None,
            categories=("Partnerships", f"Region {n % 4}"),
            published=START + timedelta(hours=n),
            precision=Precision.MINUTE,
        )
        for n in range(first, first + count)
    ]


def fill(archive: Archive) -> None:
    """Seeds, feed items, a second revision and topic scores: every table has rows."""
    archive.sync_sources([SOURCE])
    pipeline.import_seeds(archive, [SEEDS])
    pipeline.store_entries(archive, stories(0, 12), SOURCE.id)
    revised = pipeline.store_entries(archive, stories(0, 2, edition=" (updated)"), SOURCE.id)
    assert revised.updated == 2
    first = next(archive.iter_items())
    archive.save_scores(
        [
            TopicScore(first.id, "partnerships", 2.5, True, ({"rule": "x"},)),
            TopicScore(first.id, "summits", 1 / 3, True),  # exported to the last digit
            TopicScore(first.id, "cyber", 0.1, False),
        ]
    )


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "database": tmp_path / "archive" / "aggregator.db",
        "snapshots": tmp_path / "archive" / "snapshots",
        "feeds": tmp_path / "feeds",
    }
    (paths["feeds"] / "wire" / "archive").mkdir(parents=True)
    (paths["feeds"] / "wire.atom").write_text("<feed>current</feed>\n")
    (paths["feeds"] / "wire" / "archive" / "2025-03.atom").write_text("<feed>march</feed>\n")
    with Archive(paths["database"]) as archive:
        fill(archive)
    return paths


def make(folders: dict[str, Path], **options) -> snap.SnapshotInfo:
    return snap.create(folders["database"], folders["snapshots"], folders["feeds"], **options)


def ticking(start: datetime = START):
    """A clock that moves a minute per call, so snapshots get distinct names."""
    moments = (start + timedelta(minutes=n) for n in range(10_000))
    return lambda: next(moments)


# --- consistency while another process writes -------------------------------------------------

WRITER = """
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from aggregator import pipeline
from aggregator.models import Entry, SourceSpec
from aggregator.store import Archive

database, stop, batch = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
archive = Archive(database)
archive.sync_sources([SourceSpec("writer", "Writer", "http://127.0.0.1:9/w.xml")])
start, n = datetime(2024, 1, 1, tzinfo=UTC), 0
while not stop.exists() and n < 50_000:
    entries = [
        Entry(title=f"Writer story {k} number {k * 104729}", link=f"https://example.org/{k}",
              guid=f"https://example.org/{k}", summary_text="x" * 400,
              summary_html="<p>" + "x" * 400 + "</p>", published=start + timedelta(minutes=k))
        for k in range(n, n + batch)
    ]
    pipeline.store_entries(archive, entries, "writer")
    n += batch
    if n == batch:
        print("writing", flush=True)
print(n, flush=True)
"""


def test_a_snapshot_taken_while_another_process_ingests_is_consistent(
    folders, tmp_path, monkeypatch
):
    batch = 7
    with Archive(folders["database"], readonly=True) as archive:
        before = archive.count_items()
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folders["database"]), str(stop), str(batch)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )

    def wait_for_a_commit(seen: list[int]) -> None:
        with Archive(folders["database"], readonly=True) as live:
            first = live.count_items()
            deadline = time.monotonic() + 20
            while live.count_items() == first and time.monotonic() < deadline:
                time.sleep(0.01)
            seen.extend([first, live.count_items()])

    during_backup: list[int] = []
    during_export: list[int] = []
    original = Archive.backup_to

    def backup_to(self, target, progress=None):
        def step(done: int, total: int) -> None:
            if not during_backup:
                wait_for_a_commit(during_backup)

        return original(self, target, step)

    def watch(stage: str, done: int, total: int) -> None:
        if stage == "export" and not during_export:
            wait_for_a_commit(during_export)

    monkeypatch.setattr(Archive, "backup_to", backup_to)
    monkeypatch.setattr(store_snapshot, "BACKUP_PAGES", 1)  # many steps
    monkeypatch.setattr(store_snapshot, "EXPORT_BATCH", 5)
    try:
        assert writer.stdout.readline().strip() == "writing"
        made = make(folders, progress=watch)
    finally:
        stop.touch()
        written = int(writer.communicate(timeout=60)[0].split()[-1])
    # the writer committed while the backup ran and while the export ran
    assert during_backup[0] < during_backup[1] and during_export[0] < during_export[1]
    manifest = snap.verify_folder(made.path)
    count = manifest["items"]
    assert count == made.items
    assert count <= min(during_backup[0], during_export[0])  # the archive at one instant
    assert (count - before) % batch == 0  # whole ingest transactions only
    lines = (made.path / snap.ITEMS).read_bytes().splitlines()
    with Archive(made.path / snap.DATABASE, readonly=True) as copy:
        assert len(lines) == copy.count_items() == count
        assert copy.count_revisions() == manifest["revisions"]
    with Archive(folders["database"], readonly=True) as archive:
        assert archive.count_items() == before + written


# --- the manifest and items.jsonl ----------------------------------------------------------------


def test_the_manifest_describes_the_snapshot(folders):
    made = make(folders, label="Before the summit!", clock=lambda: START)
    assert made.name == "20250301T093000Z-before-the-summit"
    assert made.path == folders["snapshots"] / made.name
    manifest = json.loads((made.path / snap.MANIFEST).read_text())
    assert manifest["created"] == "2025-03-01T09:30:00Z"
    assert manifest["label"] == "Before the summit!"
    assert manifest["schema_version"] == store.SCHEMA_VERSION and manifest["program_version"]
    assert manifest["items"] == 22 and manifest["revisions"] == 24
    assert manifest["items_by_origin"] == {"feed": 12, "seed": 10}
    assert manifest["items_by_source"] == {"seed": 10, "wire": 12}
    assert manifest["oldest_published"] < "2022" < manifest["newest_published"]
    assert set(manifest["files"]) == {
        "aggregator.db",
        "items.jsonl",
        "feeds/wire.atom",
        "feeds/wire/archive/2025-03.atom",
    }
    for relative, entry in manifest["files"].items():
        data = (made.path / relative).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert (made.path / "feeds/wire.atom").read_text() == "<feed>current</feed>\n"
    # by hand, years later: `sha256sum -c SHA256SUMS` in the folder
    sums = subprocess.run(
        ["sha256sum", "-c", snap.SUMS], cwd=made.path, capture_output=True, text=True
    )
    assert sums.returncode == 0 and sums.stdout.count(": OK") == 5
    copy = sqlite3.connect(f"file:{made.path / snap.DATABASE}?mode=ro", uri=True)
    assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file, no WAL
    copy.close()


def test_items_jsonl_alone_reproduces_every_item(folders):
    made = make(folders)
    records = [json.loads(line) for line in (made.path / snap.ITEMS).read_text().splitlines()]
    with Archive(folders["database"], readonly=True) as archive:
        stored = list(archive.iter_items())
        revisions = {item.id: archive.revisions(item.id) for item in stored}
        topics = {item.id: item.topics for item in archive.list_items()}
    assert [from_record(record) for record in records] == stored
    assert {r["id"]: [revision(v) for v in r["revisions"]] for r in records} == revisions
    assert {
        r["id"]: {t["topic"]: t["score"] for t in r["topics"] if t["matched"]} for r in records
    } == topics
    assert any(len(r["revisions"]) == 2 for r in records)
    scored = next(r["topics"] for r in records if r["topics"])
    assert [(t["topic"], t["matched"], t["rules"]) for t in scored] == [
        ("cyber", False, []),
        ("partnerships", True, [{"rule": "x"}]),
        ("summits", True, []),
    ]


def _date(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def from_record(r: dict) -> Item:
    return Item(
        id=r["id"],
        origin=Origin(r["origin"]),
        source_id=r["source_id"],
        atom_id=r["atom_id"],
        title=r["title"],
        link=r["link"],
        guid=r["guid"],
        canonical_url=r["canonical_url"],
        summary_html=r["summary_html"],
        summary_text=r["summary_text"],
        content_html=r["content_html"],
        content_text=r["content_text"],
        author=r["author"],
        categories=tuple(r["categories"]),
        published=_date(r["published"]),
        updated=_date(r["updated"]),
        precision=Precision(r["precision"]),
        date_inferred=r["date_inferred"],
        first_seen=_date(r["first_seen"]),
        revision=r["revision"],
        content_hash=r["content_hash"],
    )


def revision(r: dict) -> Revision:
    return Revision(
        r["item_id"],
        r["revision"],
        _date(r["recorded_at"]),
        r["title"],
        r["summary_html"],
        r["content_html"],
        r["content_hash"],
        _date(r["published"]),
        _date(r["updated"]),
    )


# --- verify ----------------------------------------------------------------------------------


def flip_a_byte(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damaged", "message"),
    [
        ("aggregator.db", "aggregator.db: sha256 mismatch"),
        ("items.jsonl", "items.jsonl: sha256 mismatch"),
        ("feeds/wire/archive/2025-03.atom", "feeds/wire/archive/2025-03.atom: sha256 mismatch"),
        ("SHA256SUMS", "SHA256SUMS: does not match the files"),
    ],
)
def test_a_flipped_byte_fails_verify_naming_the_file(folders, damaged, message):
    made = make(folders)
    assert snap.verify(folders["snapshots"], made.name).items == 22
    flip_a_byte(made.path / damaged)
    with pytest.raises(snap.SnapshotError) as failed:
        snap.verify(folders["snapshots"], made.name)
    assert str(failed.value) == message


def test_an_edited_manifest_fails_verify(folders):
    made = make(folders, label="kept")
    path = made.path / snap.MANIFEST
    original = path.read_text()
    path.write_text(original.replace('"label": "kept"', '"label": "kepu"'))
    with pytest.raises(snap.SnapshotError, match=r"^manifest.json: sha256 of its fields"):
        snap.verify(folders["snapshots"], made.name)
    path.write_text(original.replace('"items": 22', '"items": 2"'))
    with pytest.raises(snap.SnapshotError, match=r"^manifest.json: not valid JSON"):
        snap.verify(folders["snapshots"], made.name)
    # a forger who also fixes the manifest's own checksum is caught by the counts
    forged = json.loads(original)
    forged["items"] = 23
    forged["manifest_sha256"] = snapshot_manifest.fields_hash(forged)
    path.write_text(json.dumps(forged))
    with pytest.raises(snap.SnapshotError) as failed:
        snap.verify(folders["snapshots"], made.name)
    assert str(failed.value) == "aggregator.db: items is 22, manifest says 23"


def test_missing_and_extra_files_fail_verify(folders):
    made = make(folders)
    (made.path / "feeds" / "wire.atom").unlink()
    with pytest.raises(snap.SnapshotError, match=r"^feeds/wire.atom: missing$"):
        snap.verify(folders["snapshots"], made.name)
    other = make(folders, label="two")
    (other.path / "feeds" / "planted.atom").write_text("<feed/>")
    with pytest.raises(snap.SnapshotError, match=r"^feeds/planted.atom: not in the manifest$"):
        snap.verify(folders["snapshots"], other.name)


def test_a_tar_snapshot_verifies_and_names_a_damaged_member(folders):
    made = make(folders, tar=True)
    assert made.packed and made.path.name == f"{made.name}.tar.gz"
    assert snap.verify(folders["snapshots"], made.name).items == 22
    with tarfile.open(made.path) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]
    assert members[1][0].name == f"{made.name}/manifest.json"  # first, so list reads it fast
    with tarfile.open(made.path, "w:gz") as tar:
        for member, data in members:
            if member.name.endswith("/items.jsonl"):
                data = data.replace(b"Summary 3 ", b"Summary 8 ")
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    with pytest.raises(snap.SnapshotError, match=r"^items.jsonl: sha256 mismatch$"):
        snap.verify(folders["snapshots"], made.name)
    assert [p.name for p in folders["snapshots"].iterdir()] == [made.path.name]  # cleaned up


# --- failures half-way -----------------------------------------------------------------------


def _broken_copy(*args, **kwargs):
    raise PermissionError(13, "Permission denied", "feeds/wire.atom")


def _broken_export(original):
    def export(self):
        for n, batch in enumerate(original(self)):
            if n == 1:
                raise OSError(28, "No space left on device")
            yield batch

    return export


@pytest.mark.parametrize("stage", ["feeds", "export"])
def test_a_failure_half_way_leaves_no_snapshot(folders, monkeypatch, stage):
    if stage == "feeds":
        monkeypatch.setattr(writing, "copy_file", _broken_copy)
    else:
        monkeypatch.setattr(store_snapshot, "EXPORT_BATCH", 5)
        monkeypatch.setattr(Archive, "export_lines", _broken_export(Archive.export_lines))
    with pytest.raises(OSError):
        make(folders, tar=stage == "export")
    assert list(folders["snapshots"].iterdir()) == []
    assert snap.list_snapshots(folders["snapshots"]) == []


STALLED = """
import sys, time
from aggregator import snapshot

def stall(stage, done, total):
    if stage == "export":
        print("exporting", flush=True)
        time.sleep(60)

snapshot.create(sys.argv[1], sys.argv[2], sys.argv[3], progress=stall)
"""


def test_a_snapshot_killed_half_way_is_not_listed_and_prune_clears_it(folders):
    args = [str(folders[key]) for key in ("database", "snapshots", "feeds")]
    child = subprocess.Popen(
        [sys.executable, "-c", STALLED, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert child.stdout.readline().strip() == "exporting"
    child.kill()
    child.wait()
    leftovers = list(folders["snapshots"].iterdir())
    assert [p.name.startswith(snap.TEMP_PREFIX) for p in leftovers] == [True]
    assert snap.list_snapshots(folders["snapshots"]) == []
    with pytest.raises(snap.SnapshotError, match="no snapshot"):
        snap.verify(folders["snapshots"], "2")
    kept = make(folders)
    assert snap.prune(folders["snapshots"], keep=1) == []
    assert list(folders["snapshots"].iterdir()) == [kept.path]  # the dead run's folder is gone


# --- prune ----------------------------------------------------------------------------------


def test_prune_keeps_the_newest_n(folders):
    clock = ticking()
    names = [make(folders, clock=clock, tar=n == 3).path.name for n in range(5)]
    stale = folders["snapshots"] / ".tmp-20250301T093000Z-999999999-abc123"
    running = folders["snapshots"] / f".tmp-20250301T093000Z-{os.getpid()}-abc123"
    foreign = folders["snapshots"] / "notes.txt"
    for path in (stale, running):
        path.mkdir()
    foreign.write_text("mine")
    assert snap.prune(folders["snapshots"], keep=2) == names[:3]
    remaining = sorted(p.name for p in folders["snapshots"].iterdir())
    assert remaining == sorted([*names[3:], running.name, "notes.txt"])
    assert [s.path.name for s in snap.list_snapshots(folders["snapshots"])] == names[3:]
    assert snap.prune(folders["snapshots"], keep=2) == []
    with pytest.raises(snap.SnapshotError, match="at least 1"):
        snap.prune(folders["snapshots"], keep=0)


def test_names_resolve_by_unique_prefix(folders):
    clock = ticking()
    first, second = make(folders, clock=clock, label="a"), make(folders, clock=clock)
    assert snap.resolve(folders["snapshots"], "20250301T0931") == second.path
    assert snap.resolve(folders["snapshots"], str(first.path)) == first.path
    with pytest.raises(snap.SnapshotError, match="matches several snapshots"):
        snap.resolve(folders["snapshots"], "2025")
    with pytest.raises(snap.SnapshotError, match='no snapshot "nope"'):
        snap.resolve(folders["snapshots"], "nope")
    assert snap.resolve(folders["snapshots"], "a") == first.path  # by its label
    assert snap.resolve(folders["snapshots"], "A") == first.path  # as the name spells it
    digits = make(folders, clock=clock, label="2025")
    with pytest.raises(snap.SnapshotError, match="matches several snapshots"):
        snap.resolve(folders["snapshots"], "2025")  # a label, and the start of every name
    assert snap.resolve(folders["snapshots"], digits.name) == digits.path
    with pytest.raises(snap.SnapshotError, match="already exists"):
        make(folders, clock=lambda: START, label="a")


def test_a_name_being_written_is_not_taken_by_a_second_create_in_either_form(folders):
    """Two creates in one second: the second is refused at once, whether it writes a
    folder or a .tar.gz, and the first completes; one snapshot of that name, never two."""
    halfway, go_on = threading.Event(), threading.Event()

    def stall(stage: str, done: int, total: int) -> None:
        halfway.set()
        go_on.wait(10)

    first = concurrent.futures.ThreadPoolExecutor(1).submit(
        make, folders, clock=lambda: START, label="y", progress=stall
    )
    assert halfway.wait(10)
    for tar in (True, False):
        with pytest.raises(snap.SnapshotError, match="already exists"):
            make(folders, clock=lambda: START, label="y", tar=tar)
    go_on.set()
    made = first.result(timeout=30)
    assert [s.path for s in snap.list_snapshots(folders["snapshots"])] == [made.path]


def test_a_numeric_label_being_written_does_not_hold_the_unlabelled_name(folders):
    """`.tmp-STAMP-2-xyz` is snapshot STAMP-2 being written, not STAMP by PID 2."""
    snapshots = folders["snapshots"]
    snapshots.mkdir(parents=True, exist_ok=True)
    labelled = layout.claim(snapshots, "20250301T093000Z-2")
    plain = layout.claim(snapshots, "20250301T093000Z")
    assert labelled != plain and labelled.is_dir() and plain.is_dir()


# --- restore -----------------------------------------------------------------------------------


def publish(archive: Archive, config) -> None:
    from aggregator.publish import publish_all

    publish_all(archive, config)


def state_of(config) -> dict:
    feeds = config.server.feeds_dir
    with Archive(config.archive.database, readonly=True) as archive:
        items = list(archive.iter_items())
        return {
            "items": items,
            "revisions": [archive.revisions(item.id) for item in items],
            "sources": archive.list_sources(include_seed=True),
            "feeds": {
                p.relative_to(feeds).as_posix(): p.read_bytes()
                for p in sorted(feeds.rglob("*"))
                if p.is_file()
            },
        }


@pytest.fixture
def config(project):
    loaded = config_module.load(project.config)
    with Archive(loaded.archive.database) as archive:
        fill(archive)
        publish(archive, loaded)
    return loaded


def mutate(config) -> None:
    with Archive(config.archive.database) as archive:
        pipeline.store_entries(archive, stories(40, 5), SOURCE.id)
        pipeline.store_entries(archive, stories(3, 1, edition=" (again)"), SOURCE.id)
        publish(archive, config)


def test_restore_round_trips(config):
    before = state_of(config)
    made = snap.create(config.archive.database, config.archive.snapshots, config.server.feeds_dir)
    mutate(config)
    changed = state_of(config)
    assert changed["items"] != before["items"] and changed["feeds"] != before["feeds"]
    report = snap.restore(config, made.name)
    assert state_of(config) == before
    assert report.note == "republished the feeds"
    assert report.replaced.name.startswith("aggregator.db.replaced-")
    with Archive(report.replaced, readonly=True) as replaced:
        assert list(replaced.iter_items()) == changed["items"]
    database = config.archive.database
    assert not Path(f"{database}-wal").exists() or Path(f"{database}-wal").stat().st_size == 0
    leftovers = [p.name for p in database.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    with Archive(database) as archive:  # the restored archive is a working archive
        assert archive.integrity_check() == "ok"
        pipeline.store_entries(archive, stories(60, 1), SOURCE.id)


def test_restore_without_publish_puts_the_feed_files_back(config, monkeypatch):
    before = state_of(config)
    made = snap.create(
        config.archive.database, config.archive.snapshots, config.server.feeds_dir, tar=True
    )
    mutate(config)
    monkeypatch.setitem(sys.modules, "aggregator.publish", None)  # import fails
    report = snap.restore(config, made.name)
    assert "put back the snapshot's" in report.note
    restored = state_of(config)
    assert restored["items"] == before["items"]
    assert all(restored["feeds"][name] == data for name, data in before["feeds"].items())


def test_restore_says_when_the_republish_failed_and_keeps_the_restored_archive(config):
    before = state_of(config)
    made = snap.create(config.archive.database, config.archive.snapshots, config.server.feeds_dir)
    mutate(config)
    feeds = config.server.feeds_dir
    shutil.rmtree(feeds)
    feeds.write_text("not a folder")  # no feed can be written
    report = snap.restore(config, made.name)
    assert report.note.startswith("publish failed: feed ")
    assert report.note.endswith("; the next fetch or daemon tick publishes again")
    with Archive(config.archive.database, readonly=True) as archive:
        assert list(archive.iter_items()) == before["items"]
        assert archive.publish_state().owed


def test_restore_is_refused_while_another_program_has_the_archive_open(config, monkeypatch):
    made = snap.create(config.archive.database, config.archive.snapshots, config.server.feeds_dir)
    mutate(config)
    monkeypatch.setattr(store, "BUSY_TIMEOUT", 0.2)
    reader = sqlite3.connect(config.archive.database)  # sqlite3, say, left open by a person
    try:
        reader.execute("SELECT count(*) FROM items").fetchone()
        before = config.archive.database.read_bytes()
        with pytest.raises(snap.SnapshotError) as refused:
            snap.restore(config, made.name)
        assert str(refused.value) == (
            f"archive {config.archive.database} is open in another process; stop it and retry"
        )
        assert config.archive.database.read_bytes() == before
    finally:
        reader.close()
    assert snap.restore(config, made.name).note == "republished the feeds"


def test_restore_refuses_a_damaged_snapshot_and_changes_nothing(config):
    made = snap.create(config.archive.database, config.archive.snapshots, config.server.feeds_dir)
    mutate(config)
    flip_a_byte(made.path / snap.DATABASE, 0.9)
    before = config.archive.database.read_bytes()
    with pytest.raises(snap.SnapshotError, match=r"^aggregator\.db: sha256 mismatch$"):
        snap.restore(config, made.name)
    assert config.archive.database.read_bytes() == before


def test_restore_is_refused_while_a_daemon_holds_the_lock(project, config):
    made = snap.create(config.archive.database, config.archive.snapshots, config.server.feeds_dir)
    daemon = hold_in_another_process(config.archive.database)
    try:
        before = config.archive.database.read_bytes()
        result = project.cli("snapshot", "restore", made.name, check=False)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"error: archive {config.archive.database} is in use by the daemon "
            f"(pid {daemon.pid}); stop it first: a restore replaces the archive it writes"
        )
        assert config.archive.database.read_bytes() == before
    finally:
        daemon.kill()
        daemon.wait()
    with ArchiveLock(config.archive.database), pytest.raises(LockHeld):
        snap.restore(config, made.name)


def test_a_fetch_under_way_keeps_a_restore_out_and_keeps_its_items(project, config, feed_server):
    """The restore must not swap the database under a writer: the fetch holds the lock."""
    made = snap.create(config.archive.database, config.archive.snapshots, config.server.feeds_dir)
    url = feed_server.feed("/nato.rss", "nato-news-2022-11-26.rss", delay=WRITER_WAIT + 3)
    project.replace_in_config("https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml", url)
    fetch = start_cli(project, "fetch")
    try:
        deadline = time.monotonic() + 30
        while not feed_server.requests("/nato.rss") and time.monotonic() < deadline:
            time.sleep(0.05)  # until the fetch, holding the lock, waits for the server
        restore = project.cli("snapshot", "restore", made.name, check=False)
        out, err = fetch.communicate(timeout=60)
    finally:
        fetch.kill()
        fetch.wait()
    assert restore.returncode == 1
    assert restore.stderr == (
        f"error: archive {config.archive.database} is in use by aggregator fetch "
        f"(pid {fetch.pid})\n"
    )
    assert fetch.returncode == 0 and "nato-news: 200" in out and "3 new" in out, out + err
    with Archive(config.archive.database, readonly=True) as archive:
        assert archive.get_source("nato-news").item_count == 3


# --- captured pages (the WARC file) ----------------------------------------------------------


_OPENING: list[list[tuple[str, str | None]]] = []  # filled by the audit hook while a test listens


def _note_opening(event: str, args: tuple) -> None:
    if event == "open" and _OPENING and isinstance(args[0], str | os.PathLike):
        for opened in _OPENING:
            opened.append((os.fspath(args[0]), args[1]))


sys.addaudithook(_note_opening)  # a hook stays for the process: it records only while asked


@contextlib.contextmanager
def files_opened(folder: Path):
    """(name, mode) of each file opened in `folder` meanwhile, as Python's audit hook sees it."""
    opened: list[tuple[str, str | None]] = []
    _OPENING.append(opened)
    try:
        yield opened
    finally:
        _OPENING.remove(opened)
    opened[:] = [(Path(path).name, mode) for path, mode in opened if Path(path).parent == folder]


def captured(warc: Path, count: int, first: int = 0) -> bytes:
    """`count` captures appended to a WARC file as capture writes them; the whole file."""
    for n in range(first, first + count):
        body = b"".join(f"<p>Partnership page {n}, paragraph {k}.</p>".encode() for k in range(90))
        url = f"https://www.nato.int/cps/en/natohq/news_{n}.htm"
        append_capture(warc, url, START + timedelta(minutes=n), 200, {}, body, {})
    return warc.read_bytes()


# a record still being appended: a gzip member without its end
TORN = gzip.compress(b"WARC/1.1\r\nWARC-Type: response\r\n" * 40, mtime=0)[:-9]


@pytest.mark.parametrize("chunk", [97, 1 << 20])  # members across reads, or many in one read
@pytest.mark.parametrize("tail", [b"", TORN, b"not gzip at all"], ids=["whole", "torn", "junk"])
def test_the_pages_copy_keeps_whole_records_and_its_entry_says_what_it_kept(
    tmp_path, monkeypatch, chunk, tail
):
    monkeypatch.setattr(pages, "CHUNK", chunk)
    source, copy = tmp_path / "pages.warc.gz", tmp_path / "copy.warc.gz"
    whole = captured(source, 3)
    with source.open("ab") as file:
        file.write(tail)
    entry = pages.copy_pages(source, copy)
    assert copy.read_bytes() == whole
    assert entry == {"size": len(whole), "sha256": hashlib.sha256(whole).hexdigest()}
    assert pages.check_pages(copy) == 7  # warcinfo, then response + request x3


def test_a_page_that_inflates_past_one_read_is_copied_whole(tmp_path):
    source, copy = tmp_path / "pages.warc.gz", tmp_path / "copy.warc.gz"
    body = b"".join(f"<p>Paragraph {n * 7919 % 1_000_003}.</p>".encode() for n in range(100_000))
    append_capture(source, "https://www.nato.int/long.htm", START, 200, {}, body, {})
    whole = captured(source, 1, first=1)
    assert len(body) > pages.CHUNK  # more text than one inflate call may give
    assert pages.copy_pages(source, copy)["size"] == len(whole)
    assert pages.check_pages(copy) == 5


def test_a_pages_file_with_no_whole_record_copies_as_empty(tmp_path):
    source, copy = tmp_path / "pages.warc.gz", tmp_path / "copy.warc.gz"
    source.write_bytes(TORN)
    assert pages.copy_pages(source, copy) == {"size": 0, "sha256": hashlib.sha256().hexdigest()}
    assert copy.read_bytes() == b""


def test_the_pages_are_read_once_and_their_copy_is_never_read_back(tmp_path):
    source, copy = tmp_path / "pages.warc.gz", tmp_path / "copy.warc.gz"
    captured(source, 3)
    with source.open("ab") as file:
        file.write(TORN)  # the copy is cut short, without reading it again
    with files_opened(tmp_path) as opened:
        pages.copy_pages(source, copy)
    assert opened == [("pages.warc.gz", "r"), ("copy.warc.gz", "w")]  # as FileIO reports modes


def test_restore_puts_back_the_pages_and_keeps_the_current_ones_beside_them(config):
    warc = config.capture.warc
    snapshotted = captured(warc, 2)
    made = snap.create(
        config.archive.database, config.archive.snapshots, config.server.feeds_dir, pages=warc
    )
    later = captured(warc, 1, first=2)  # captures made after the snapshot
    snap.restore(config, made.name)
    assert warc.read_bytes() == snapshotted
    (kept,) = warc.parent.glob(f"{warc.name}.replaced-*")
    assert kept.read_bytes() == later
    assert [p.name for p in warc.parent.iterdir() if p.name.startswith(".")] == []


def test_restore_puts_the_pages_where_none_were_yet(config, tmp_path):
    snapshotted = captured(config.capture.warc, 2)
    made = snap.create(
        config.archive.database,
        config.archive.snapshots,
        config.server.feeds_dir,
        pages=config.capture.warc,
    )
    warc = tmp_path / "elsewhere" / "pages.warc.gz"
    snap.restore(replace(config, capture=replace(config.capture, warc=warc)), made.name)
    assert warc.read_bytes() == snapshotted
    assert [p.name for p in warc.parent.iterdir()] == [warc.name]


def test_restoring_a_snapshot_without_pages_leaves_the_current_ones(config):
    made = snap.create(config.archive.database, config.archive.snapshots, config.server.feeds_dir)
    current = captured(config.capture.warc, 1)
    snap.restore(config, made.name)
    assert config.capture.warc.read_bytes() == current
    assert not list(config.capture.warc.parent.glob("pages.warc.gz.replaced-*"))


# --- the command line ------------------------------------------------------------------------


def test_the_cli_creates_lists_verifies_and_prunes(project):
    project.cli("import-seeds")
    created = project.cli("snapshot", "create", "--label", "first").stdout
    assert "10 items" in created and "-first" in created
    assert project.cli("snapshot", "create", "--tar").stdout.count(".tar.gz") == 1
    listed = project.cli("snapshot", "list").stdout.splitlines()
    assert listed[0].split() == ["name", "created", "items", "size"]
    assert len(listed) == 4 and "2 snapshots in" in listed[-1]
    rows = [
        json.loads(line) for line in project.cli("snapshot", "list", "--json").stdout.splitlines()
    ]
    assert [row["items"] for row in rows] == [10, 10] and rows[0]["label"] == "first"
    folder = Path(rows[0]["path"])
    ok = project.cli("snapshot", "verify", rows[0]["name"][:-3]).stdout  # a prefix is enough
    assert "ok (10 items)" in ok
    assert "ok" in project.cli("snapshot", "verify", rows[1]["name"]).stdout
    flip_a_byte(folder / snap.ITEMS)
    failed = project.cli("snapshot", "verify", rows[0]["name"], check=False)
    assert failed.returncode == 1
    assert failed.stderr.strip() == "error: items.jsonl: sha256 mismatch"
    pruned = project.cli("snapshot", "prune", "--keep", "1").stdout
    assert f"removed {rows[0]['name']}" in pruned and not folder.exists()
    refused = project.cli("snapshot", "prune", "--keep", "0", check=False)
    assert refused.returncode == 2 and "--keep" in refused.stderr


def test_the_cli_names_a_snapshot_one_way_and_counts_in_words(project):
    with Archive(project.database) as archive:
        archive.sync_sources([SOURCE])
        pipeline.store_entries(archive, stories(0, 1), SOURCE.id)
    created = project.cli("snapshot", "create", "--tar").stdout
    assert re.search(r": 1 item, \d+\.\d KiB$", created.strip()), created
    rows = [
        json.loads(line) for line in project.cli("snapshot", "list", "--json").stdout.splitlines()
    ]
    listed = project.cli("snapshot", "list").stdout.splitlines()
    assert rows[0]["tar"] and not rows[0]["name"].endswith(".tar.gz")
    assert listed[1].split()[0] == rows[0]["name"] and listed[1].endswith("  tar.gz")
    assert re.search(r"  \d+\.\d KiB  ", listed[1]) and "KB" not in listed[1]
    assert listed[-1].startswith("1 snapshot in ")
    verified = project.cli("snapshot", "verify", rows[0]["name"]).stdout
    assert verified == f"{rows[0]['name']}: ok (1 item)\n"
    project.cli("snapshot", "create", "--label", "second")
    pruned = project.cli("snapshot", "prune", "--keep", "1").stdout.splitlines()
    assert pruned == [f"removed {rows[0]['name']}", "removed 1 snapshot, kept the newest 1"]


def test_the_snapshot_library_leaves_drawing_progress_to_the_cli():
    for module in (ROOT / "aggregator" / "snapshot").glob("*.py"):
        tree = ast.parse(module.read_text(), str(module))
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {name for name in imported if name and name.split(".")[0] == "click"}, module


# --- progress ------------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_only_on_a_terminal_and_only_for_long_work():
    now = [0.0]
    terminal = Terminal()
    quick = TerminalProgress(terminal, clock=lambda: now[0])
    quick("backup", 50, 100)
    quick.close()
    assert terminal.getvalue() == ""
    slow = TerminalProgress(terminal, clock=lambda: now[0])
    slow("backup", 10, 100)
    now[0] = 2.0
    slow("backup", 60, 100)
    slow.close()
    assert "backup" in terminal.getvalue() and "100%" in terminal.getvalue()
    log = io.StringIO()
    quiet = TerminalProgress(log, clock=lambda: now[0] + 5)
    quiet("backup", 60, 100)
    quiet.close()
    assert log.getvalue() == ""
