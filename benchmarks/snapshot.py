"""Snapshot speed against a plain SQLite online backup of the same archive, in one run.

    .venv/bin/python benchmarks/snapshot.py [--items 100000] [--rounds 3]

Builds an archive of N items through the real pipeline (once; reused from the system's
temporary folder on later runs), then times `snapshot.create` (backup, integrity check,
items.jsonl, feeds copy, checksums, manifest) and `sqlite3.Connection.backup` alone on the
same file, alternating, best of `--rounds` each (wall time; CPU time beside).
Target: the snapshot within 2x.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aggregator import pipeline, snapshot  # noqa: E402
from aggregator.models import Entry, Precision, SourceSpec  # noqa: E402
from aggregator.store import Archive  # noqa: E402

CHUNK = 2000
SOURCE = SourceSpec("bench", "Benchmark wire", "http://127.0.0.1:9/feed.xml")
START = datetime(2015, 1, 1, 12, tzinfo=UTC)


def texts(vocabulary: list[str], count: int, length: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(vocabulary, k=length)) for _ in range(count)]


class Corpus:
    """Pools of generated text, combined per item: realistic sizes, quick to make."""

    def __init__(self) -> None:
        rng = random.Random(7)
        letters = "abcdefghijklmnopqrstuvwxyz"
        vocabulary = ["".join(rng.choices(letters, k=rng.randint(3, 11))) for _ in range(8000)]
        self.titles = texts(vocabulary, 997, 8, 1)
        self.summaries = texts(vocabulary, 1009, 60, 2)
        self.bodies = texts(vocabulary, 1013, 450, 3)

    def entries(self, first: int, count: int) -> list[Entry]:
        return [self.entry(n) for n in range(first, first + count)]

    def entry(self, n: int) -> Entry:
        summary = self.summaries[n % len(self.summaries)]
        body = self.bodies[n % len(self.bodies)] if n % 2 else None  # half carry full text
        url = f"https://www.nato.int/cps/en/natohq/news_{n}.htm"
        return Entry(
            title=f"{self.titles[n % len(self.titles)].capitalize()} ({n})",
            link=url,
            guid=url,
            summary_html=f"<p>{summary}</p>",
            summary_text=summary,
            content_html=f"<p>{body}</p>" if body else None,
            content_text=body,
            author="NATO",
            categories=("News", ("Partnerships", "Summits", "Operations")[n % 3]),
            published=START + timedelta(minutes=67 * n),
            precision=Precision.MINUTE,
        )


def build(database: Path, items: int) -> None:
    corpus = Corpus()
    partial = database.with_suffix(".building")
    for path in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        path.unlink(missing_ok=True)
    started = time.perf_counter()
    with Archive(partial) as archive:
        archive.sync_sources([SOURCE])
        for first in range(0, items, CHUNK):
            pipeline.store_entries(
                archive, corpus.entries(first, min(CHUNK, items - first)), SOURCE.id
            )
            print(f"\r  built {min(first + CHUNK, items)}/{items} items", end="", flush=True)
        archive.optimize()
    partial.rename(database)
    print(f" in {time.perf_counter() - started:.0f} s")


def timed(work) -> tuple[float, float]:
    """Wall time and CPU time (all threads of this process) of `work()`."""
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def plain_backup(database: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    source, copy = sqlite3.connect(database), sqlite3.connect(target)
    source.backup(copy)
    copy.close()
    source.close()


def our_snapshot(database: Path, snapshots: Path, feeds: Path) -> None:
    shutil.rmtree(snapshots, ignore_errors=True)
    snapshot.create(database, snapshots, feeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cache = Path(tempfile.gettempdir()) / "aggregator-bench-snapshot"
    cache.mkdir(exist_ok=True)
    database = cache / f"archive-{args.items}.db"
    if not database.exists():
        print(f"building an archive of {args.items} items in {cache} (reused next time)")
        build(database, args.items)
    with Archive(database, readonly=True) as archive:
        count = archive.count_items()
    size = database.stat().st_size
    print(f"archive: {count} items, {size / 2**20:.0f} MB ({database})")
    work = Path(tempfile.mkdtemp(prefix="snapshot-bench-", dir=cache))
    feeds = work / "feeds"
    (feeds / "partnerships" / "archive").mkdir(parents=True)
    for month in range(1, 25):  # a feed's worth of documents
        path = feeds / "partnerships" / "archive" / f"2024-{month:02}.atom"
        path.write_bytes(b"<feed>" + b"x" * 200_000 + b"</feed>")
    try:
        plain, ours = [], []
        for _ in range(args.rounds):  # alternating, so both see the same machine
            plain.append(timed(lambda: plain_backup(database, work / "plain.db")))
            ours.append(timed(lambda: our_snapshot(database, work / "snapshots", feeds)))
        (plain_wall, plain_cpu), (our_wall, our_cpu) = min(plain), min(ours)
        print(f"plain sqlite3 backup: {plain_wall:6.2f} s  (cpu {plain_cpu:5.2f} s)")
        print(f"snapshot create:      {our_wall:6.2f} s  (cpu {our_cpu:5.2f} s)")
        print(f"  best of {args.rounds}; the snapshot runs its backup, export, integrity check")
        print("  and checksums on two threads, so it needs two free cores to reach its best")
        print(f"ratio snapshot/backup: {our_wall / plain_wall:.2f}x  (target: within 2x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
