"""Polls through the real path: a loopback HTTP server, httpx, feedparser, a SQLite file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

from aggregator import pipeline
from aggregator.config import load
from aggregator.models import Origin, PollReport
from aggregator.store import Archive
from aggregator.store.items import ItemsMixin
from tests.conftest import FIXTURES, ROOT, SEEDS, table_counts
from tests.feedserver import Route

NATO = "nato-news"


def rss(*items: tuple[str, str, str], title: str = "NATO Latest News") -> bytes:
    """items: (title, link, description), all dated 10 Jan. 2024."""
    body = "".join(
        f"<item><title>{t}</title><link>{link}</link><description>{d}</description>"
        "<pubDate>10 Jan. 2024 12:00:00 GMT</pubDate></item>"
        for t, link, d in items
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{title}'
        f"</title><link>https://www.nato.int/</link>{body}</channel></rss>"
    ).encode()


STORY = ("Allies meet partners", "https://www.nato.int/cps/en/natohq/news_1.htm", "First text.")


class Setup:
    """A project copy whose NATO source points at the feed server, its config and archive."""

    def __init__(self, project, feed_server, seeds: bool = True):
        self.project, self.server = project, feed_server
        self.url = feed_server.url("/nato.rss")
        project.replace_in_config(
            "https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml", self.url
        )
        self.config = load(project.config)
        self.archive = Archive(self.config.archive.database)
        pipeline.sync_sources(self.archive, self.config)
        if seeds:
            pipeline.import_seeds(self.archive, [SEEDS])

    def serve(self, *steps: Route, **kwargs) -> None:
        self.server.route("/nato.rss", *steps, **kwargs)

    def poll(self, force: bool = True) -> PollReport:
        (report,) = pipeline.poll_all(self.config, self.archive, NATO, force=force)
        return report

    def source(self):
        return self.archive.get_source(NATO)

    def log(self):
        return self.archive.fetch_log(NATO)


@pytest.fixture
def setup(project, feed_server):
    made = Setup(project, feed_server)
    yield made
    made.archive.close()


@pytest.fixture
def parses(monkeypatch):
    """Counts calls of the real parser, and the threads they ran in."""
    calls: list[int] = []
    real = pipeline.parse_document

    def spy(*args, **kwargs):
        calls.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "parse_document", spy)
    return calls


# --- the seeded articles and the live feed ----------------------------------------------------


def test_live_feeds_carrying_seeded_stories_merge_into_the_seeds(setup):
    assert setup.archive.count_items() == 10
    setup.serve(body=(FIXTURES / "nato-news-2022-11-26.rss").read_bytes())
    first = setup.poll()
    assert (first.error, first.status, first.new, first.updated) == (None, 200, 3, 7)
    setup.serve(body=(FIXTURES / "nato-news-2023-05-24.rss").read_bytes())
    second = setup.poll()
    assert (second.error, second.new, second.updated) == (None, 2, 1)
    archive = setup.archive
    assert archive.count_items() == 10 + 3 + 2  # never a duplicate
    assert archive.count_items(Origin.SEED) == 10
    seeds = {item.title: item for item in archive.list_items(origin=Origin.SEED)}
    vilnius = seeds["NATO meets with partners to reaffirm commitment ahead of Vilnius Summit"]
    assert vilnius.link == "https://www.nato.int/cps/en/natohq/news_214878.htm?selectedLocale=en"
    assert vilnius.canonical_url == "https://www.nato.int/cps/en/natohq/news_214878.htm"
    assert "Admiral Rob Bauer" in vilnius.content_text  # the seed keeps its full text
    assert sum(1 for item in seeds.values() if item.link) == 8  # 7 from listing + seed 002
    # Polling both documents again changes nothing.
    setup.server.route("/nato.rss", body=(FIXTURES / "nato-news-2022-11-26.rss").read_bytes())
    again = setup.poll()
    assert (again.new, again.updated, archive.count_items()) == (0, 0, 15)


def test_duplicate_guids_and_link_variants_in_one_document_are_one_item_each(setup):
    setup.serve(body=(FIXTURES / "duplicates.rss").read_bytes())
    report = setup.poll()
    assert (report.new, report.updated) == (2, 0)
    feed_items = setup.archive.list_items(origin=Origin.FEED)
    assert sorted(i.title for i in feed_items) == ["Story under link variants", "Story with a guid"]


def test_a_guid_that_is_another_items_link_does_not_break_the_ingest(setup):
    clash = rss(
        ("Second", "https://www.nato.int/2.htm", "B"),
        title="NATO",
    ).replace(
        b"<title>Second</title>", b"<title>Second</title><guid>https://www.nato.int/1.htm</guid>"
    )
    setup.serve(Route(body=rss(("First", "https://www.nato.int/1.htm", "A"))), Route(body=clash))
    assert setup.poll().new == 1
    report = setup.poll()
    assert (report.error, report.new) == (None, 1)
    ids = sorted(i.atom_id for i in setup.archive.list_items(origin=Origin.FEED))
    assert ids[0] == "https://www.nato.int/1.htm" and ids[1].startswith("tag:aggregator.invalid,")


def test_a_changed_story_is_a_new_revision_of_the_same_item(setup):
    changed = (STORY[0], STORY[1] + "?selectedLocale=en", "Corrected text.")
    setup.serve(Route(body=rss(STORY)), Route(body=rss(changed)))
    first, second = setup.poll(), setup.poll()
    assert (first.new, second.new, second.updated) == (1, 0, 1)
    assert second.item_ids == first.item_ids
    item = setup.archive.get_item(first.item_ids[0])
    assert (item.revision, item.summary_text) == (2, "Corrected text.")
    assert [r.revision for r in setup.archive.revisions(item.id)] == [1, 2]


# --- what a poll costs ------------------------------------------------------------------------


def test_304_costs_no_parse_and_no_item_write(setup, parses):
    etag, stamp = 'W/"v1"', "Wed, 10 Jan 2024 12:00:00 GMT"
    setup.serve(body=rss(STORY), etag=etag, last_modified=stamp)
    assert setup.poll().new == 1
    items_before = setup.archive.db["items"].rows_where(select="*")
    second = setup.poll()
    assert (second.status, second.unchanged, second.new, second.updated) == (304, True, 0, 0)
    sent = setup.server.requests("/nato.rss")[1].headers
    assert (sent["if-none-match"], sent["if-modified-since"]) == (etag, stamp)
    assert len(parses) == 1
    assert list(setup.archive.db["items"].rows_where(select="*")) == list(items_before)
    assert [entry.status for entry in setup.log()] == [304, 200]


def test_identical_bytes_from_a_server_ignoring_validators_cost_no_parse(setup, parses):
    setup.serve(body=rss(STORY), etag='"v1"', honour_validators=False)
    setup.poll()
    second = setup.poll()
    assert (second.status, second.unchanged, second.new) == (200, True, 0)
    assert len(parses) == 1
    assert len(setup.log()) == 2


def test_parsing_runs_off_the_event_loop_thread(setup, parses):
    setup.serve(body=rss(STORY))
    setup.poll()
    assert parses and parses[0] != threading.get_ident()


def built(body: bytes, built_at: str) -> bytes:
    """The document with a channel lastBuildDate, which NATO's changes on every poll."""
    link = b"<link>https://www.nato.int/</link>"
    return body.replace(link, link + f"<lastBuildDate>{built_at}</lastBuildDate>".encode(), 1)


@pytest.fixture
def reads(monkeypatch):
    """What each real parse left unread as known, and how many entries it read."""
    calls: list[tuple[int, int]] = []
    real = pipeline.parse_document

    def spy(*args, **kwargs):
        parsed = real(*args, **kwargs)
        calls.append((parsed.known, len(parsed.entries)))
        return parsed

    monkeypatch.setattr(pipeline, "parse_document", spy)
    return calls


def story(n: int, text: str = "Text.") -> tuple[str, str, str]:
    return (f"Story {n}", f"https://www.nato.int/cps/en/natohq/news_{n}.htm", text)


def test_a_repoll_reads_only_the_entries_whose_bytes_changed(setup, reads):
    first = built(rss(story(1), story(2), story(3)), "Mon, 01 Jan 2024 10:00:00 GMT")
    # The next build: a new lastBuildDate, story 2 corrected, story 4 added.
    second = built(rss(story(1), story(2, "Corrected."), story(3), story(4)), "Tue, 02 Jan")
    rolled_off = built(rss(story(2, "Corrected."), story(3), story(4)), "Wed, 03 Jan")
    setup.serve(Route(body=first), Route(body=second), Route(body=rolled_off), Route(body=second))
    assert (setup.poll().new, reads[-1]) == (3, (0, 3))
    report = setup.poll()
    assert (report.error, report.new, report.updated) == (None, 1, 1)
    assert reads[-1] == (2, 2)  # stories 1 and 3 were left unread
    corrected = setup.archive.get_item(report.item_ids[0])
    assert (corrected.title, corrected.summary_text, corrected.revision) == (
        "Story 2",
        "Corrected.",
        2,
    )
    assert len(pipeline.known_entries(setup.archive, NATO)) == 4
    report = setup.poll()  # story 1 rolled off the feed: still archived, its digest dropped
    assert (report.new, report.updated, reads[-1]) == (0, 0, (3, 0))
    assert len(pipeline.known_entries(setup.archive, NATO)) == 3
    assert setup.archive.count_items(Origin.FEED) == 4
    report = setup.poll()  # story 1 back as it was: read again, and still the same item
    assert (report.new, report.updated, reads[-1]) == (0, 0, (3, 1))
    assert setup.archive.count_items(Origin.FEED) == 4


def test_a_feed_read_whole_leaves_nothing_unread_next_time(setup, reads):
    """A document whose entries cannot be told apart by position (an entry nested in
    another) is read whole, as before; what the poll before it knew is forgotten, so the
    next poll reads every entry too."""
    nested = rss(story(1), story(2)).replace(b"</item><item>", b"<item>", 1)
    setup.serve(Route(body=rss(story(1), story(2))), Route(body=nested), Route(body=rss(story(1))))
    setup.poll()
    assert len(pipeline.known_entries(setup.archive, NATO)) == 2
    report = setup.poll()
    assert report.error is None and reads[-1][0] == 0  # nothing left unread
    assert pipeline.known_entries(setup.archive, NATO) == {}
    setup.poll()
    assert reads[-1] == (0, 1)


# --- redirects and gone -----------------------------------------------------------------------


def test_a_permanent_redirect_becomes_the_source_url(setup):
    setup.serve(status=301, location="/moved.rss")
    setup.server.route("/moved.rss", body=rss(STORY))
    report = setup.poll()
    assert report.status == 200 and "moved permanently" in report.note
    assert setup.source().url == setup.server.url("/moved.rss")
    setup.poll()
    assert len(setup.server.requests("/nato.rss")) == 1  # the old URL is not asked again
    assert len(setup.server.requests("/moved.rss")) == 2


def test_a_permanent_redirect_republishes_every_document_naming_the_source(setup):
    setup.serve(body=rss(STORY))
    (item_id,) = setup.poll().item_ids
    page = setup.config.server.feeds_dir / "items" / f"{item_id}.html"
    assert setup.url in page.read_text(encoding="utf-8")
    setup.serve(status=301, location="/moved.rss")
    setup.server.route("/moved.rss", body=rss(STORY))
    moved = setup.poll()
    assert (moved.new, moved.updated) == (0, 0) and "moved permanently" in moved.note
    text = page.read_text(encoding="utf-8")
    assert setup.server.url("/moved.rss") in text and setup.url not in text
    feed = (setup.config.server.feeds_dir / "all.atom").read_text(encoding="utf-8")
    assert setup.url not in feed


def test_a_temporary_redirect_keeps_the_source_url(setup):
    setup.serve(status=302, location="/elsewhere.rss")
    setup.server.route("/elsewhere.rss", body=rss(STORY))
    assert setup.poll().new == 1
    assert setup.source().url == setup.url


def test_410_disables_the_source_and_keeps_its_items(setup):
    setup.serve(Route(body=rss(STORY)), Route(status=410))
    setup.poll()
    gone = setup.poll()
    assert gone.error.startswith("410 Gone") and gone.next_poll is None
    source = setup.source()
    assert (source.gone, source.enabled, source.state, source.item_count) == (
        True, False, "gone", 1,
    )  # fmt: skip
    skipped = setup.poll()  # even forced
    assert skipped.skipped and "gone" in skipped.note
    assert len(setup.server.requests("/nato.rss")) == 2
    pipeline.sync_sources(setup.archive, setup.config)  # a restart does not revive it
    assert setup.source().state == "gone"


def test_a_new_url_in_config_starts_afresh_even_while_backing_off(setup):
    """The offline first start backs off; pointing the source elsewhere must not wait for it."""
    from aggregator.schedule import first_run

    setup.serve(status=500)
    setup.poll()
    setup.poll()
    assert setup.source().state == "backing off"
    setup.server.route("/working.rss", body=rss(STORY))
    setup.project.replace_in_config(setup.url, setup.server.url("/working.rss"))
    setup.config = load(setup.project.config)
    pipeline.sync_sources(setup.archive, setup.config)  # what a reload or a restart does
    source = setup.source()
    assert (source.consecutive_errors, source.last_error, source.next_poll_not_before) == (
        0, None, None,
    )  # fmt: skip
    now = datetime.now(UTC)
    assert first_run(source, 1800.0, now, 0.0, 0.0) == now  # the daemon polls it at once
    assert setup.poll(force=False).new == 1


def test_a_poll_in_flight_when_the_url_changes_leaves_the_new_url_afresh(setup, monkeypatch):
    """A reload during a poll's fetch: the old URL's answer is logged, not kept on the source."""
    from aggregator.fetch import Fetcher

    setup.serve(status=500)
    setup.poll()
    working = setup.server.route("/working.rss", body=rss(STORY))
    fetch = Fetcher.get

    async def fetch_then_reload(self, *args, **kwargs):
        answer = await fetch(self, *args, **kwargs)
        setup.project.replace_in_config(setup.url, working)
        pipeline.sync_sources(setup.archive, load(setup.project.config))
        return answer

    monkeypatch.setattr(Fetcher, "get", fetch_then_reload)
    assert setup.poll().status == 500  # began under the old URL
    source = setup.source()
    assert source.url == working and source.consecutive_errors == 0
    assert (source.last_error, source.next_poll_not_before) == (None, None)
    assert [line.status for line in setup.log()] == [500, 500]


def test_a_move_is_a_publish_owed_until_it_is_published(setup, monkeypatch):
    setup.serve(body=rss(STORY))
    (item_id,) = setup.poll().item_ids
    setup.serve(status=301, location="/moved.rss")
    setup.server.route("/moved.rss", body=rss(STORY))

    def fails(archive, config):
        raise OSError("disk gone")

    monkeypatch.setattr(pipeline, "publish_or_say_why", fails)
    assert "moved permanently" in setup.poll().note
    assert setup.archive.publish_state().owed  # a later run republishes what names it
    monkeypatch.undo()
    assert pipeline.settle_publish(setup.archive, setup.config) is True
    page = setup.config.server.feeds_dir / "items" / f"{item_id}.html"
    assert setup.server.url("/moved.rss") in page.read_text(encoding="utf-8")


# --- back-off -----------------------------------------------------------------------------------


def test_a_poll_reports_the_next_poll_the_archive_keeps(setup):
    """The log line and `sources` name the same second (the report had the microseconds)."""
    for step in (Route(body=rss(STORY)), Route(status=500)):
        setup.serve(step)
        report = setup.poll()
        assert report.next_poll == setup.source().next_poll_not_before
        assert report.next_poll.microsecond == 0


def test_429_with_retry_after_means_no_request_before_it(setup):
    setup.serve(status=429, retry_after="3600")
    before = datetime.now(UTC)
    report = setup.poll()
    assert report.status == 429 and report.error.startswith("HTTP 429")
    assert report.next_poll >= before + timedelta(seconds=3599)
    skipped = setup.poll(force=False)
    assert skipped.skipped and skipped.note.startswith("backing off until")
    assert len(setup.server.requests("/nato.rss")) == 1
    assert setup.source().state == "backing off"


def test_errors_count_up_and_a_success_resets_them(setup):
    setup.serve(Route(status=500), Route(status=503), Route(body=rss(STORY)))
    assert setup.poll().error == "HTTP 500 Internal Server Error"
    assert setup.source().consecutive_errors == 1
    setup.poll()
    source = setup.source()
    assert source.consecutive_errors == 2 and source.last_error.startswith("HTTP 503")
    assert setup.poll().error is None
    assert (setup.source().consecutive_errors, setup.source().last_error) == (0, None)


# --- bad input ----------------------------------------------------------------------------------


def test_an_html_page_with_200_is_a_failed_poll_that_stores_no_validators(setup):
    page = (FIXTURES / "not-a-feed.html").read_bytes()
    setup.serve(body=page, content_type="text/html; charset=utf-8", etag='"page"')
    report = setup.poll()
    assert report.error.startswith("not a feed") and report.status == 200
    source = setup.source()
    assert (source.etag, source.body_hash, source.consecutive_errors) == (None, None, 1)
    assert setup.archive.count_items(Origin.FEED) == 0


def test_a_malformed_feed_is_ingested_with_the_problem_logged(setup):
    setup.serve(body=(FIXTURES / "malformed.rss").read_bytes())
    report = setup.poll()
    assert (report.error, report.new) == (None, 2)
    assert "SAXParseException" in report.note
    assert setup.log()[0].error.startswith("warning: SAXParseException")


def test_billion_laughs_from_the_server_is_refused_and_stores_nothing(setup):
    setup.serve(body=(FIXTURES / "hostile/billion-laughs.xml").read_bytes())
    report = setup.poll()
    assert "declares XML entities" in report.error
    assert setup.archive.count_items() == 10


def test_a_gzip_bomb_is_a_failed_poll(setup):
    import gzip

    setup.serve(body=gzip.compress(b" " * 30_000_000, 9), raw_encoding="gzip")
    report = setup.poll()
    assert "cap" in report.error and setup.source().consecutive_errors == 1


def test_an_error_mid_ingest_leaves_the_archive_as_it_was(setup, monkeypatch):
    body = (FIXTURES / "nato-news-2022-11-26.rss").read_bytes()
    setup.serve(body=body, etag='"v1"')
    real = ItemsMixin._record_first_revisions

    def failing(self, *args):  # the new items' rows are written by now
        assert self.conn.execute("SELECT count(*) FROM items").fetchone()[0] > 10
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ItemsMixin, "_record_first_revisions", failing)
    tables = table_counts(setup.archive)
    report = setup.poll()
    assert report.error.startswith("ingest failed, nothing stored: RuntimeError: disk on fire")
    after = table_counts(setup.archive)
    assert {k: v for k, v in after.items() if k != "fetch_log"} == {
        k: v for k, v in tables.items() if k != "fetch_log"
    }
    assert setup.source().etag is None  # so the next poll fetches the whole body again
    monkeypatch.setattr(ItemsMixin, "_record_first_revisions", real)
    assert setup.poll().new == 3


CRASHING_POLL = """
import os, signal, sys
from aggregator import pipeline
from aggregator.config import load
from aggregator.store import Archive
from aggregator.store.items import ItemsMixin

def die(self, *args):  # the new items' rows are written, the transaction is open
    assert self.conn.execute("SELECT count(*) FROM items").fetchone()[0] > 10
    os.kill(os.getpid(), signal.SIGKILL)  # a power cut in the middle of the ingest
ItemsMixin._record_first_revisions = die
config = load(sys.argv[1])
pipeline.poll_all(config, Archive(config.archive.database), "nato-news", force=True)
"""


def test_a_process_killed_mid_ingest_leaves_the_archive_as_it_was(setup):
    setup.serve(body=(FIXTURES / "nato-news-2022-11-26.rss").read_bytes())
    before = table_counts(setup.archive)
    setup.archive.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_POLL, str(setup.project.config)],
        env=env,
        timeout=60,
        capture_output=True,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    setup.archive = Archive(setup.config.archive.database)
    assert setup.archive.integrity_check() == "ok"
    assert table_counts(setup.archive) == before
    assert setup.poll().new == 3


# --- the command line ---------------------------------------------------------------------------


def test_cli_fetch_and_sources(project, feed_server):
    url = feed_server.route("/nato.rss", body=(FIXTURES / "nato-news-2023-05-24.rss").read_bytes())
    project.replace_in_config("https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml", url)
    done = project.cli("fetch")
    assert done.stdout.startswith("nato-news: 200, 2581 bytes, 2 new, 1 updated, ")
    assert "next poll 20" in done.stdout
    again = project.cli("fetch")  # not due yet: skipped, and that is no failure
    assert again.stdout.startswith("nato-news: skipped, not due until ")
    table = project.cli("sources").stdout.splitlines()
    assert table[0].split()[:3] == ["id", "state", "url"]
    assert table[1].split()[:3] == ["nato-news", "ok", url]
    (row,) = [json.loads(line) for line in project.cli("sources", "--json").stdout.splitlines()]
    assert (row["id"], row["state"], row["last_status"], row["items"]) == (
        "nato-news",
        "ok",
        200,
        2,
    )
    assert row["consecutive_errors"] == 0 and row["next_poll"].endswith("Z")


def test_cli_fetch_exit_status(project, feed_server):
    url = feed_server.route("/nato.rss", status=404)
    project.replace_in_config("https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml", url)
    failed = project.cli("fetch", check=False)
    assert failed.returncode == 1  # every source failed
    assert "nato-news: 404" in failed.stdout and "HTTP 404 Not Found" in failed.stdout
    assert "backing off" in project.cli("sources").stdout
    unknown = project.cli("fetch", "no-such-source", check=False)
    assert unknown.returncode == 1 and 'no source "no-such-source"' in unknown.stderr
    # The seeds are imported even though NATO's feed is gone.
    assert len(project.cli("items", "--json").stdout.splitlines()) == 10


def test_stored_items_are_sanitized_and_undated_ones_get_their_first_seen_time(setup):
    hostile = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title><item>'
        b"<title>Injected</title><link>https://www.nato.int/x.htm</link>"
        b"<description>&lt;p onmouseover=&quot;steal()&quot;&gt;Hi&lt;/p&gt;"
        b"&lt;script&gt;alert(1)&lt;/script&gt;&lt;iframe src=&quot;https://evil.example/&quot;&gt;"
        b"&lt;/iframe&gt;&lt;a href=&quot;javascript:alert(2)&quot;&gt;x&lt;/a&gt;"
        b"&lt;form&gt;&lt;input&gt;&lt;/form&gt;&lt;style&gt;p{}&lt;/style&gt;</description>"
        b"</item></channel></rss>"
    )
    setup.serve(body=hostile)
    before = datetime.now(UTC).replace(microsecond=0)
    report = setup.poll()
    (item,) = setup.archive.list_items(origin=Origin.FEED)
    for banned in ("script", "onmouseover", "iframe", "javascript", "form", "input", "style"):
        assert banned not in item.summary_html
    assert item.summary_text == "Hi\nx"
    assert item.date_inferred and before <= item.published <= datetime.now(UTC)
    (logged,) = setup.log()
    assert (logged.url, logged.status, logged.new_items, logged.updated_items) == (
        setup.url, 200, 1, 0,
    )  # fmt: skip
    assert logged.bytes == len(hostile) == report.bytes and logged.duration_ms > 0
