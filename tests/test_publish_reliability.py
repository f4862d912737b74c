"""Publish keeps the feeds flowing whatever the archive holds (issue 11, cases 1 and 6).

Case 1: an item no renderer can write (a control character XML cannot hold, an empty
title) is left out of the documents it would break, logged once and counted, while every
other item and feed publishes. The parser now cleans what it makes, so the bad items are
written straight into a real archive with the store API, as an older archive may hold them.

Case 6: a publish that failed (or never ran) is recorded in the archive as owed, and the
next run settles it. A feeds folder that cannot be written is a real one: tests run as
root, so instead of permissions a regular file stands where a folder must be, or a folder
where a feed file must be.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from aggregator import ingest, metrics, publish
from aggregator.config import Config, load
from aggregator.models import Entry, Origin
from aggregator.store import Archive

ESC_TITLE = "Allies meet \x1b[31m in Brussels"
NONCHAR_SUMMARY = "Partners talk \ufffe in Rome, a non-character no XML can hold."


def _entry(number: int, title: str, day: str = "2024-05-02", summary: str = "", **extra) -> Entry:
    published = datetime.fromisoformat(day).replace(hour=9, tzinfo=UTC)
    summary = summary or f"Story number {number} about partners."
    return Entry(
        title=title,
        link=f"https://www.nato.int/cps/en/natohq/news_{number}.htm",
        summary_html=f"<p>{summary}</p>",
        summary_text=summary,
        published=published,
        updated=published,
        **extra,
    )


GOOD = _entry(400001, "NATO and Japan meet on partnership and cyber defence")
ESCAPED = _entry(400002, ESC_TITLE, summary="Text with an escape \x1b here.")
UNTITLED = _entry(400003, "", summary="An entry whose feed gave it no title.")
NONCHAR = _entry(400004, "Partners talk in Rome", summary=NONCHAR_SUMMARY)


def _store(config: Config, entries: list[Entry], seen: datetime | None = None) -> list[int]:
    """Write entries as they are (no parser cleans them) and classify them; their ids."""
    with Archive(config.archive.database) as archive:
        ingest.sync_sources(archive, config)
        counts = ingest.store_entries(archive, entries, "nato-news", Origin.FEED, seen)
        ingest.classify_items(archive, config, counts.item_ids)
    assert counts.new == len(entries)
    return list(counts.item_ids)


def _documents(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _ids_in(path: Path) -> set[str]:
    if path.suffix == ".json":
        return {item["id"] for item in json.loads(path.read_bytes())["items"]}
    return {entry.id for entry in feedparser.parse(path.read_bytes()).entries}


def _atom_id(config: Config, item_id: int) -> str:
    with Archive(config.archive.database) as archive:
        return archive.get_item(item_id).atom_id


def _left_out(feed: str, reason: str) -> float:
    sample = metrics.REGISTRY.get_sample_value(
        "aggregator_publish_items_left_out_total", {"feed": feed, "reason": reason}
    )
    return sample or 0.0


def _publishes(outcome: str) -> float:
    sample = metrics.REGISTRY.get_sample_value(
        "aggregator_publishes_total", {"outcome": outcome}
    )
    return sample or 0.0


@pytest.fixture
def config(project) -> Config:
    project.cli("import-seeds")
    shutil.rmtree(project.feeds)  # whatever the import published
    return load(project.config)


# --- case 1: one item cannot stop a document, one feed cannot stop the others ------------------


@pytest.mark.slow
def test_publish_leaves_out_items_it_cannot_render_and_publishes_the_rest(project, config):
    good, escaped, untitled = _store(config, [GOOD, ESCAPED, UNTITLED])

    result = project.cli("publish")

    assert len(result.stdout.splitlines()) == len(config.feeds)
    lines = [line for line in result.stderr.splitlines() if "left out" in line]
    assert len(lines) == 2, result.stderr  # once per item, not once per document
    escaped_line = next(line for line in lines if f"item {escaped} " in line)
    untitled_line = next(line for line in lines if f"item {untitled} " in line)
    assert "XML cannot hold" in escaped_line and "all.atom" in escaped_line
    assert "empty title" in untitled_line and "all.atom" in untitled_line
    documents = _documents(project.feeds)
    assert len(documents) >= 4 * 3 + 5
    for path in documents:
        if path.suffix == ".json":
            json.loads(path.read_bytes())
        else:
            parsed = feedparser.parse(path.read_bytes())
            assert not parsed.bozo, (path, parsed.get("bozo_exception"))
    everything = project.feeds / "all.atom"
    assert _atom_id(config, good) in _ids_in(everything)
    assert _atom_id(config, escaped) not in _ids_in(everything)
    assert _atom_id(config, escaped) not in _ids_in(project.feeds / "all.rss")
    assert _atom_id(config, untitled) not in _ids_in(everything)
    assert _atom_id(config, good) in _ids_in(project.feeds / "all" / "archive" / "2024-05.atom")
    with Archive(config.archive.database) as archive:
        assert len(_ids_in(everything)) == archive.count_items() - 2  # all but the two


def test_every_format_leaves_out_only_what_it_cannot_hold(config):
    good, escaped, nonchar = _store(config, [GOOD, ESCAPED, NONCHAR])
    before = _left_out("all", "not_xml_text")

    with Archive(config.archive.database) as archive:
        report = publish.publish_all(archive, config)

    folder = config.server.feeds_dir
    ids = {name: _ids_in(folder / name) for name in ("all.atom", "all.rss", "all.json")}
    for name in ids:
        assert _atom_id(config, good) in ids[name]
    for bad in (escaped, nonchar):
        assert _atom_id(config, bad) not in ids["all.atom"] | ids["all.rss"]
        assert _atom_id(config, bad) in ids["all.json"]  # JSON can hold any character
    may = _ids_in(folder / "all" / "archive" / "2024-05.atom")
    assert may == {_atom_id(config, good)}  # the month of all three: the good one only
    assert {(left.item_id, left.reason) for left in report.left_out} == {
        (escaped, "not_xml_text"),
        (nonchar, "not_xml_text"),
    }
    # counted once per feed that had to leave each out, however many documents
    assert _left_out("all", "not_xml_text") == before + 2
    assert not report.failed


def test_a_second_publish_of_an_archive_with_a_bad_item_rewrites_nothing(config):
    _store(config, [GOOD, ESCAPED, UNTITLED])
    with Archive(config.archive.database) as archive:
        first = publish.publish_all(archive, config)
        second = publish.publish_all(archive, config)
    assert first.written and second.written == ()
    assert second.unchanged == len(first.written) + first.unchanged


def test_a_feed_that_cannot_be_written_does_not_stop_the_others(config):
    folder = config.server.feeds_dir
    (folder / "partnerships.atom").mkdir(parents=True)  # a folder where a feed file must go

    with Archive(config.archive.database) as archive:
        report = publish.publish_all(archive, config)

    assert [failure.slug for failure in report.failed] == ["partnerships"]
    assert "partnerships.atom" in report.failed[0].error
    assert "\n" not in report.failed[0].error
    published = {feed.slug for feed in report.feeds}
    assert published == {feed.slug for feed in config.feeds} - {"partnerships"}
    for slug in published:
        assert (folder / f"{slug}.atom").is_file() and (folder / f"{slug}.json").is_file()
