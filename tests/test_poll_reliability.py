"""Nothing a source sends stops a poll run (issue 11): every poll ends as an outcome recorded
on its source, whatever went wrong, and the other sources go on.

Through the real path: the loopback feed server, httpx, the parser, a SQLite file, and the
CLI in a subprocess.
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from aggregator import pipeline
from aggregator.config import load
from aggregator.fetch import Fetcher
from aggregator.store import Archive
from tests.conftest import table_counts
from tests.feedserver import Route

BACKOFF_MAX = timedelta(hours=6)  # config.toml's fetch.backoff_max


def with_sources(project, sources: dict[str, str]) -> None:
    """Replace config's sources with these (id -> url)."""
    blocks = "".join(
        f'[[sources]]\nid = "{sid}"\ntitle = "{sid}"\nurl = "{url}"\ninterval = "30m"\n\n'
        for sid, url in sources.items()
    )
    text = project.config.read_text(encoding="utf-8")
    text = re.sub(r"\[\[sources\]\]\n(?:[a-z_]+ = .*\n)+\n?", "", text)
    project.write_config(text.replace("[daemon]", f"{blocks}[daemon]", 1))


def sources_json(project) -> dict[str, dict]:
    lines = project.cli("sources", "--json").stdout.splitlines()
    return {row["id"]: row for row in map(json.loads, lines)}


def fetch_log_rows(project) -> dict[str, int]:
    conn = sqlite3.connect(project.database)
    try:
        return dict(conn.execute("SELECT source_id, count(*) FROM fetch_log GROUP BY source_id"))
    finally:
        conn.close()


def rss_with(description: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>odd</title>'
        "<link>https://odd.example/</link><item><title>Odd story</title>"
        f"<link>https://odd.example/1</link><description>{description}</description>"
        "<pubDate>10 Jan. 2024 12:00:00 GMT</pubDate></item></channel></rss>"
    ).encode()


# --- case 2: odd answers ----------------------------------------------------------------------


ODD_ANSWERS = {
    "to-javascript": Route(status=302, location="javascript:alert(1)"),
    "to-data": Route(status=301, location="data:application/rss+xml,<rss/>"),
    "to-bad-port": Route(status=302, location="http://127.0.0.1:99999/feed.rss"),
    "to-bad-ipv6": Route(status=302, location="http://[::1/feed.rss"),
    "retry-in-31000-years": Route(status=429, retry_after="999999999999"),
    "retry-in-year-9999": Route(status=503, retry_after="Fri, 31 Dec 9999 23:59:59 GMT"),
}


def test_odd_answers_are_each_their_sources_recorded_failure_and_the_rest_go_on(
    project, feed_server
):
    sources = {"nato-news": feed_server.feed("/nato.rss", "nato-news-2022-11-26.rss")}
    for source_id, route in ODD_ANSWERS.items():
        sources[source_id] = feed_server.route(f"/{source_id}", route)
    sources["lone-surrogate"] = feed_server.route("/surrogate", body=rss_with("a &#xD800; b"))
    with_sources(project, sources)
    before = datetime.now(UTC).replace(microsecond=0)

    done = project.cli("fetch", check=False)

    assert done.returncode == 0, done.stderr  # one source stored its items
    assert "Traceback" not in done.stderr and "poll crashed" not in done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert set(lines) == set(sources)
    assert "3 new" in lines["nato-news"]
    state = sources_json(project)
    assert state["nato-news"]["state"] == "ok" and state["nato-news"]["items"] == 3
    for source_id in ODD_ANSWERS:
        row = state[source_id]
        assert "(error: " in lines[source_id], lines[source_id]
        assert (row["state"], row["consecutive_errors"]) == ("backing off", 1), row
        assert row["last_error"] and row["last_poll"]
        next_poll = datetime.fromisoformat(row["next_poll"].replace("Z", "+00:00"))
        assert before < next_poll <= datetime.now(UTC) + BACKOFF_MAX + timedelta(seconds=1)
    assert "redirect" in state["to-javascript"]["last_error"]
    assert state["lone-surrogate"]["last_poll"]  # read or refused, but recorded
    assert fetch_log_rows(project) == {source_id: 1 for source_id in sources}
    # The back-off holds: a second run polls none of them.
    again = project.cli("fetch", check=False)
    assert all("skipped" in line for line in again.stdout.splitlines())
    assert all(len(feed_server.requests(f"/{source_id}")) == 1 for source_id in ODD_ANSWERS)


@pytest.fixture
def two_sources(project, feed_server):
    """An archive with a NATO source and a second one, both served by the feed server."""
    with_sources(
        project,
        {
            "nato-news": feed_server.feed("/nato.rss", "nato-news-2022-11-26.rss"),
            "other": feed_server.route("/other.rss", body=rss_with("plain text")),
        },
    )
    config = load(project.config)
    archive = Archive(config.archive.database)
    from aggregator import pipeline

    pipeline.sync_sources(archive, config)
    yield config, archive
    archive.close()


def test_any_exception_in_a_poll_is_that_sources_failure_with_back_off(two_sources, monkeypatch):
    """The guard around a whole poll: a fault no stage foresaw (here the fetcher itself
    failing, as a library bug would) is recorded like any failed poll."""
    config, archive = two_sources
    real_get = Fetcher.get

    async def faulty_get(self, url, *args, **kwargs):
        if url.endswith("/other.rss"):
            raise RecursionError("maximum recursion depth exceeded in a library")
        return await real_get(self, url, *args, **kwargs)

    monkeypatch.setattr(Fetcher, "get", faulty_get)
    before = datetime.now(UTC)
    reports = {r.source_id: r for r in pipeline.poll_all(config, archive)}
    assert reports["nato-news"].error is None and reports["nato-news"].new == 10
    failed = reports["other"]
    assert (
        failed.error
        == "internal error: RecursionError: maximum recursion depth exceeded in a library"
    )
    source = archive.get_source("other")
    assert (source.consecutive_errors, source.last_error, source.state) == (
        1, failed.error, "backing off",
    )  # fmt: skip
    assert source.next_poll_not_before > before
    (logged,) = archive.fetch_log("other")
    assert logged.error == failed.error
    # Skipped while backing off, like any other failure.
    assert pipeline.poll_all(config, archive, "other")[0].skipped


def test_a_parser_that_raises_anything_is_a_failed_poll_keeping_what_was_fetched(
    two_sources, monkeypatch
):
    config, archive = two_sources
    real_parse = pipeline.parse_document

    def faulty_parse(body, url, *args, **kwargs):
        if url.endswith("/other.rss"):
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        return real_parse(body, url, *args, **kwargs)

    monkeypatch.setattr(pipeline, "parse_document", faulty_parse)
    reports = {r.source_id: r for r in pipeline.poll_all(config, archive)}
    assert reports["nato-news"].new == 10
    failed = reports["other"]
    assert failed.error.startswith("cannot parse: UnicodeEncodeError: ")
    assert failed.status == 200 and failed.bytes > 0
    (logged,) = archive.fetch_log("other")
    assert (logged.status, logged.bytes, logged.error) == (200, failed.bytes, failed.error)
    assert archive.get_source("other").consecutive_errors == 1


# --- metrics ------------------------------------------------------------------------------------


class Counted:
    """The change of the process's counters (aggregator.metrics) since it was made."""

    def __init__(self) -> None:
        self.before = self._samples()

    @staticmethod
    def _samples() -> dict[tuple, float]:
        from aggregator.metrics import REGISTRY

        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in REGISTRY.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        }

    def __call__(self, name: str, **labels: str) -> float:
        key = (f"aggregator_{name}_total", tuple(sorted(labels.items())))
        return self._samples().get(key, 0.0) - self.before.get(key, 0.0)


def test_polls_items_and_bytes_are_counted_by_source(two_sources, feed_server):
    config, archive = two_sources
    nato_bytes = len(feed_server.routes["/nato.rss"][0].body)
    counted = Counted()
    pipeline.poll_all(config, archive)  # both store their items
    pipeline.poll_all(config, archive, force=True)  # the same bytes again: unchanged
    pipeline.poll_all(config, archive)  # not due: skipped
    feed_server.route("/other.rss", status=500)
    pipeline.poll_all(config, archive, "other", force=True)
    assert counted("polls", source="nato-news", outcome="ok") == 1
    assert counted("polls", source="nato-news", outcome="unchanged") == 1
    assert counted("polls", source="nato-news", outcome="skipped") == 1
    assert counted("polls", source="other", outcome="error") == 1
    assert counted("items_stored", source="nato-news", change="new") == 10
    assert counted("items_stored", source="other", change="new") == 1
    assert counted("items_stored", source="nato-news", change="updated") == 0
    assert counted("fetch_bytes", source="nato-news") == 2 * nato_bytes


# --- case 10: a full disk -----------------------------------------------------------------------


def test_a_full_disk_is_recorded_as_disk_full_and_the_archive_is_unharmed(two_sources):
    config, archive = two_sources
    tables = table_counts(archive)
    pages = archive.conn.execute("PRAGMA page_count").fetchone()[0]
    archive.conn.execute(f"PRAGMA max_page_count = {pages + 1}")  # room for a log row only
    (report,) = pipeline.poll_all(config, archive, "nato-news")
    assert report.error.startswith("ingest failed, nothing stored: disk full"), report.error
    assert "rollback" not in report.error
    source = archive.get_source("nato-news")
    assert (source.last_error, source.consecutive_errors) == (report.error, 1)
    assert archive.integrity_check() == "ok"
    assert {k: v for k, v in table_counts(archive).items() if k != "fetch_log"} == {
        k: v for k, v in tables.items() if k != "fetch_log"
    }
    archive.conn.execute("PRAGMA max_page_count = 1073741823")  # space again
    (again,) = pipeline.poll_all(config, archive, "nato-news", force=True)
    assert (again.error, again.new) == (None, 10)


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 600 KB tmpfs: a disk that really fills up (needs root to mount; skipped otherwise)."""
    import os
    import subprocess

    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)])
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_disk_says_disk_full_not_cannot_rollback(
    project, feed_server, tiny_filesystem
):
    """SQLite rolls a transaction back by itself when a write hits ENOSPC; the archive's own
    ROLLBACK then failed and its message hid why."""
    from tests.test_daemon import big_feed

    url = feed_server.route("/big.rss", body=big_feed(2000))
    with_sources(project, {"big": url})
    project.replace_in_config(
        'database = "archive/aggregator.db"', f'database = "{tiny_filesystem}/a.db"'
    )
    done = project.cli("fetch", check=False)
    assert "disk full" in done.stdout and "rollback" not in done.stdout, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    conn = sqlite3.connect(tiny_filesystem / "a.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM items WHERE source_id = 'big'").fetchone()[0] == 0
    finally:
        conn.close()


# --- case 6: a publish that failed is owed, and the next run settles it -------------------------


def block_the_feeds_folder(project) -> None:
    """A feeds folder that cannot be made (tests run as root: a file where a folder must be)."""
    (project.root / "blocked").write_text("a file where the feeds folder's parent must be\n")
    project.replace_in_config('feeds_dir = "feeds"', 'feeds_dir = "blocked/feeds"')


def test_fetch_fails_when_publishing_failed_and_the_next_fetch_settles_it(project, feed_server):
    url = feed_server.feed("/nato.rss", "nato-news-2022-11-26.rss")
    project.replace_in_config("https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml", url)
    block_the_feeds_folder(project)

    failed = project.cli("fetch", check=False)
    assert failed.returncode == 1
    assert failed.stdout.startswith("nato-news: 200, 7810 bytes, 3 new, 7 updated")  # stored
    last = failed.stderr.splitlines()[-1]
    assert last.startswith("error: the feeds are not published (retried by the next fetch ")
    assert "blocked/feeds" in last

    (project.root / "blocked").unlink()  # the folder can be made again
    settled = project.cli("fetch", check=False)
    assert settled.returncode == 0, settled.stderr
    assert settled.stdout.startswith("nato-news: skipped, not due")  # nothing new: it settles
    all_atom = (project.root / "blocked" / "feeds" / "all.atom").read_text(encoding="utf-8")
    assert "news_209611" in all_atom


def test_publish_reclassify_and_import_seeds_fail_in_one_line_when_publishing_failed(project):
    block_the_feeds_folder(project)
    for command in (["import-seeds"], ["publish"], ["reclassify"]):
        failed = project.cli(*command, check=False)
        assert failed.returncode == 1, command
        last = failed.stderr.splitlines()[-1]
        assert last.startswith("error: ") and "blocked/feeds" in last, (command, last)
        assert "Traceback" not in failed.stderr
    (project.root / "blocked").unlink()
    assert project.cli("publish").returncode == 0
    archive = Archive(load(project.config).archive.database)
    try:
        state = archive.publish_state()
        assert not state.owed and not state.failing
    finally:
        archive.close()


# --- case 3: entries beyond fetch.max_entries ---------------------------------------------------


def test_entries_beyond_max_entries_are_dropped_noted_and_counted(project, feed_server):
    many = [
        (f"Story {n}", f"https://www.nato.int/cps/en/natohq/news_{n}.htm", "Text.")
        for n in range(30)
    ]
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>many</title>'
        + "".join(
            f"<item><title>{t}</title><link>{link}</link><description>{d}</description>"
            "<pubDate>10 Jan. 2024 12:00:00 GMT</pubDate></item>"
            for t, link, d in many
        )
        + "</channel></rss>"
    ).encode()
    with_sources(project, {"many": feed_server.route("/many.rss", body=body)})
    project.replace_in_config("max_entries = 5000", "max_entries = 20")
    config = load(project.config)
    archive = Archive(config.archive.database)
    try:
        from aggregator import pipeline

        pipeline.sync_sources(archive, config)
        counted = Counted()
        (report,) = pipeline.poll_all(config, archive)
        assert (report.error, report.new) == (None, 20)
        assert "10 entries" in report.note and "fetch.max_entries" in report.note, report.note
        (logged,) = archive.fetch_log("many")
        assert logged.error == f"warning: {report.note}"
        assert counted("entries_dropped", source="many", reason="over_limit") == 10
        assert archive.get_source("many").consecutive_errors == 0  # a warning, not a failure
    finally:
        archive.close()
