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
import logging
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from aggregator import metrics, pipeline, publish
from aggregator.config import Config, load
from aggregator.models import Entry, Origin
from aggregator.store import Archive
from aggregator.store.sources import SourceSpec
from tests.conftest import ROOT

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


ODD_URL = "https://odd.example.org/feed.rss"
ODD = _entry(400005, "A story from a source with an odd title")
GOOD = _entry(400001, "NATO and Japan meet on partnership and cyber defence")
ESCAPED = _entry(400002, ESC_TITLE, summary="Text with an escape \x1b here.")
UNTITLED = _entry(400003, "", summary="An entry whose feed gave it no title.")
NONCHAR = _entry(400004, "Partners talk in Rome", summary=NONCHAR_SUMMARY)


def _store(config: Config, entries: list[Entry], seen: datetime | None = None) -> list[int]:
    """Write entries as they are (no parser cleans them) and classify them; their ids."""
    with Archive(config.archive.database) as archive:
        pipeline.sync_sources(archive, config)
        counts = pipeline.store_entries(archive, entries, "nato-news", Origin.FEED, seen)
        pipeline.classify_items(archive, config, counts.item_ids)
    assert counts.new == len(entries)
    return list(counts.item_ids)


def _specs(config: Config) -> list[SourceSpec]:
    return [SourceSpec(s.id, s.title, s.url, s.enabled) for s in config.sources]


def _documents(folder: Path) -> list[Path]:
    """The feed documents (not the item pages)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix != ".html"
    )


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
    sample = metrics.REGISTRY.get_sample_value("aggregator_publishes_total", {"outcome": outcome})
    return sample or 0.0


def _publish_runs() -> float:
    return metrics.REGISTRY.get_sample_value("aggregator_publish_duration_seconds_count") or 0.0


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


def test_an_item_no_known_rule_explains_is_found_by_rendering_each_alone(config):
    """A source whose stored title XML cannot hold (config now refuses one; an older archive
    may have it) breaks every item from it, though none of their own fields is at fault."""
    with Archive(config.archive.database) as archive:
        pipeline.sync_sources(archive, config)
        archive.sync_sources([*_specs(config), SourceSpec("odd", "Odd \x1b source", ODD_URL)])
        odd = pipeline.store_entries(archive, [ODD], "odd", Origin.FEED).item_ids[0]
        good = pipeline.store_entries(archive, [GOOD], "nato-news", Origin.FEED).item_ids[0]
        before = _left_out("all", "render_error")
        report = publish.publish_all(archive, config)

    assert [(left.item_id, left.reason) for left in report.left_out] == [(odd, "render_error")]
    assert _left_out("all", "render_error") == before + 1
    folder = config.server.feeds_dir
    for name in ("all.atom", "all.rss", "all/archive/2024-05.atom"):
        assert _ids_in(folder / name) >= {_atom_id(config, good)}
        assert _atom_id(config, odd) not in _ids_in(folder / name)
    assert _atom_id(config, odd) in _ids_in(folder / "all.json")


def test_a_second_publish_of_an_archive_with_a_bad_item_rewrites_nothing(config):
    _store(config, [GOOD, ESCAPED, UNTITLED])
    with Archive(config.archive.database) as archive:
        first = publish.publish_all(archive, config)
        second = publish.publish_all(archive, config)
    assert first.written and second.written == ()
    assert second.unchanged == len(first.written) + first.unchanged


def test_a_daemon_that_publishes_again_says_once_what_it_left_out(config, caplog):
    _, escaped = _store(config, [GOOD, ESCAPED])
    before = _left_out("all", "not_xml_text")
    with Archive(config.archive.database) as archive, caplog.at_level(logging.WARNING):
        first = publish.publish_all(archive, config)
        (config.server.feeds_dir / "all.atom").unlink()  # so that the second run renders it
        second = publish.publish_all(archive, config)
    said = [r.getMessage() for r in caplog.records if f"item {escaped} left out" in r.getMessage()]
    assert len(said) == 1, said
    assert [left.item_id for left in first.left_out] == [left.item_id for left in second.left_out]
    assert _left_out("all", "not_xml_text") == before + 2  # counted on every run all the same


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


# --- case 6: a publish that failed or never ran is owed, and settled by the next run -----------

PLAIN = _entry(400010, "Allies agree on the air defence budget", day="2024-06-03")
JAPAN_LATER = _entry(400011, "NATO and Japan meet again on partnership", day="2024-06-04")
SEEN = datetime(2024, 6, 5, 12, tzinfo=UTC)


def _unwritable(config: Config) -> Config:
    """The config with a feeds folder that cannot be made: a regular file is its parent."""
    blocker = config.server.feeds_dir.parent / "not-a-folder"
    blocker.write_text("a file where a folder must be\n")
    return replace(config, server=replace(config.server, feeds_dir=blocker / "feeds"))


def _state(config: Config):
    with Archive(config.archive.database) as archive:
        return archive.publish_state()


def test_a_store_that_changes_items_owes_a_publish_in_the_same_transaction(config):
    with Archive(config.archive.database) as archive:
        pipeline.sync_sources(archive, config)
        archive.record_publish_success(SEEN - timedelta(days=1))
        with pytest.raises(RuntimeError), archive.transaction():
            pipeline.store_entries(archive, [GOOD], "nato-news", Origin.FEED, SEEN)
            raise RuntimeError("the process dies before the commit")
        assert not archive.publish_state().owed  # rolled back with the items
        assert archive.count_items() == 10

        pipeline.store_entries(archive, [GOOD], "nato-news", Origin.FEED, SEEN)
        owed = archive.publish_state()
        assert owed.owed and owed.owed_since == SEEN and not owed.failing
        pipeline.store_entries(archive, [GOOD], "nato-news", Origin.FEED, SEEN + timedelta(hours=1))
        assert archive.publish_state() == owed  # nothing changed: nothing more owed


def test_a_publish_the_process_never_ran_is_settled_by_the_next_run(project, config):
    script = (
        "import os, sys\n"
        "from aggregator import pipeline\n"
        "from aggregator.config import load\n"
        "from aggregator.models import Origin\n"
        "from aggregator.store import Archive\n"
        "from tests.test_publish_reliability import GOOD\n"
        "config = load(sys.argv[1])\n"
        "archive = Archive(config.archive.database)\n"
        "pipeline.sync_sources(archive, config)\n"
        "pipeline.store_entries(archive, [GOOD], 'nato-news', Origin.FEED)\n"
        "os._exit(9)  # killed between the ingest commit and the publish\n"
    )
    died = subprocess.run(
        [sys.executable, "-c", script, str(project.config)], cwd=ROOT, capture_output=True
    )
    assert died.returncode == 9, died.stderr
    assert _state(config).owed

    with Archive(config.archive.database) as archive:
        assert pipeline.settle_publish(archive, config) is True
        good = archive.list_items(limit=1)[0]
        assert not archive.publish_state().owed
        assert archive.publish_state().last_success is not None
        assert pipeline.settle_publish(archive, config) is None  # nothing owed any more
    assert good.atom_id in _ids_in(config.server.feeds_dir / "all.atom")


def test_a_failed_publish_is_recorded_owed_and_settled_once_the_folder_is_fixed(config):
    broken = _unwritable(config)
    failed_before, seconds_before = _publishes("failed"), _publish_runs()
    with Archive(config.archive.database) as archive:
        pipeline.sync_sources(archive, config)
        counts = pipeline.store_entries(archive, [PLAIN], "nato-news", Origin.FEED, SEEN)

        assert pipeline.classify_and_publish(archive, broken, counts) is False  # and raises nothing
        state = archive.publish_state()
        assert state.owed and state.failing and state.owed_since == SEEN
        assert "not-a-folder" in state.last_error and "\n" not in state.last_error
        assert _publishes("failed") == failed_before + 1
        assert _publish_runs() == seconds_before + 1
        assert pipeline.settle_publish(archive, broken) is False  # still failing, still owed
        assert archive.publish_state().owed

        ok_before = _publishes("ok")
        assert pipeline.settle_publish(archive, config) is True
        state = archive.publish_state()
        assert not state.owed and not state.failing and state.last_error is None
        assert _publishes("ok") == ok_before + 1
        plain = archive.get_item(counts.item_ids[0])
    assert plain.atom_id in _ids_in(config.server.feeds_dir / "all.atom")
    assert plain.atom_id in _ids_in(config.server.feeds_dir / "all.json")


def test_publish_records_a_failure_then_raises_one_line(config):
    broken = _unwritable(config)
    with Archive(config.archive.database) as archive:
        with pytest.raises(publish.PublishError) as raised:
            pipeline.publish(archive, broken)
        message = str(raised.value)
        assert message.startswith("publish failed: feed partnerships: ")
        assert "\n" not in message and "not-a-folder" in message
        assert {f.slug for f in raised.value.report.failed} == {f.slug for f in config.feeds}
        state = archive.publish_state()
        assert state.owed and state.failing and state.last_error in message


def test_after_a_failed_publish_the_next_store_republishes_every_feed(config):
    obstacle = config.server.feeds_dir / "partnerships.atom"
    obstacle.mkdir(parents=True)  # a folder where a feed file must go: that feed fails
    with Archive(config.archive.database) as archive:
        pipeline.sync_sources(archive, config)
        japan = pipeline.store_entries(archive, [JAPAN_LATER], "nato-news", Origin.FEED, SEEN)
        assert pipeline.classify_and_publish(archive, config, japan) is False
        japan_id = archive.get_item(japan.item_ids[0]).atom_id
        obstacle.rmdir()

        # this item touches only the feed of every item, but the debt is every feed's
        plain = pipeline.store_entries(archive, [PLAIN], "nato-news", Origin.FEED, SEEN)
        assert pipeline.classify_and_publish(archive, config, plain) is True
        assert not archive.publish_state().owed
    assert japan_id in _ids_in(config.server.feeds_dir / "partnerships.atom")


def test_a_change_stored_while_a_publish_ran_stays_owed(config):
    with Archive(config.archive.database) as archive:
        archive.mark_publish_owed(SEEN)
        covered = archive.publish_debt().marks  # what a publish starting now will show
        archive.mark_publish_owed(SEEN + timedelta(seconds=1))  # stored during the publish
        archive.record_publish_success(SEEN + timedelta(seconds=2), covers=covered)
        assert archive.publish_state().owed
        archive.record_publish_success(SEEN + timedelta(seconds=3))
        assert not archive.publish_state().owed
