"""Capture end to end (issue 15): a loopback server serves a feed and NATO-shaped article
pages (tests/fixtures/articles); the real fetcher, guard, robots.txt cache, pace, WARC
writer, trafilatura, store, classify and publish run as the program runs them."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from aggregator import pipeline
from aggregator.capture.warc import records
from aggregator.config import load
from aggregator.fetch import Fetcher
from aggregator.models import CaptureState
from aggregator.store import Archive
from tests.conftest import run_cli
from tests.test_capture_extract import CHROME

ARTICLES = Path(__file__).resolve().parent / "fixtures" / "articles"
INTERVAL = 0.2  # capture.per_host_interval in these tests: short, so the suite stays quick
PAGES = {  # path -> fixture, title in the feed; the words after are only in the full text
    "/news/144098.htm": ("news_144098.htm", "Leaders agree to step up fight against terrorism"),
    "/news/208562.htm": ("news_208562.htm", "Allies and Finland review a deepening partnership"),
    "/news/145000.htm": ("gallery_145000.htm", "Photo gallery: the summit in pictures"),
}
ONLY_IN_FULL_TEXT = "interlocking wings"


def feed(server, paths=PAGES) -> bytes:
    day = datetime(2024, 3, 1, 12, tzinfo=UTC)
    items = "".join(
        f"<item><title>{title}</title><link>{server.url(path)}</link>"
        f"<guid>{path}</guid><description>A short summary of {title}.</description>"
        f"<pubDate>{format_datetime(day - timedelta(days=n))}</pubDate></item>"
        for n, (path, (_, title)) in enumerate(paths.items())
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>NATO News</title>'
        f"<link>https://www.nato.int/</link>{items}</channel></rss>"
    ).encode()


def serve_site(server, paths=PAGES) -> None:
    server.route("/feed.rss", body=feed(server, paths))
    for path, (fixture, _) in paths.items():
        body = (ARTICLES / fixture).read_bytes()
        server.route(path, body=body, content_type="text/html; charset=utf-8", etag=f'"{path}"')


def write_config(root: Path, server, *, private: bool = True, extra: str = "") -> Path:
    (root / "archive").mkdir(parents=True, exist_ok=True)
    path = root / "config.toml"
    path.write_text(
        f"""
[fetch]
allow_private_addresses = {str(private).lower()}
[capture]
per_host_interval = "{INTERVAL}s"
max_attempts = 2
{extra}
[[sources]]
id = "loop"
title = "Loopback NATO"
url = "{server.url("/feed.rss")}"
interval = "1m"
[[feeds]]
slug = "all"
title = "Everything"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def site(tmp_path, feed_server):
    serve_site(feed_server)
    return feed_server, write_config(tmp_path, feed_server)


def fetch_and_capture(config_path: Path, **kwargs):
    config = load(config_path)
    with Archive(config.archive.database) as archive:
        pipeline.sync_sources(archive, config)
        pipeline.fetch_all(archive, config)
        reports = pipeline.capture_queue(archive, config, **kwargs)
    return config, reports


def item_at(archive: Archive, url: str):
    return next(item for item in archive.iter_items() if item.link == url)


def test_each_new_item_is_queued_with_its_item_and_captured_to_its_article_body(site):
    server, config_path = site
    config, reports = fetch_and_capture(config_path)
    assert sorted(r.state for r in reports) == [
        CaptureState.CAPTURED, CaptureState.CAPTURED, CaptureState.NOT_ARTICLE
    ]  # fmt: skip
    with Archive(config.archive.database) as archive:
        item = item_at(archive, server.url("/news/144098.htm"))
        assert ONLY_IN_FULL_TEXT in item.content_text and "NATO leaders met" in item.content_text
        assert not [chrome for chrome in CHROME if chrome in item.content_text]
        assert "<script" not in item.content_html and item.revision == 2
        record = archive.get_capture(item.id, with_page=True)
        assert record.page == (ARTICLES / "news_144098.htm").read_bytes()  # kept, compressed
        assert record.state is CaptureState.CAPTURED and record.captured is not None
        gallery = item_at(archive, server.url("/news/145000.htm"))
        why = archive.get_capture(gallery.id).reason
        assert why.startswith(("boilerplate", "too little")) and gallery.content_text is None
        assert gallery.revision == 1  # chrome is never stored as the article
    published = (config.server.feeds_dir / "all.atom").read_text(encoding="utf-8")
    assert ONLY_IN_FULL_TEXT in published


def test_the_warc_file_round_trips_through_warcio(site):
    server, config_path = site
    config, _ = fetch_and_capture(config_path)
    kept = {uri: (status, headers, body) for uri, _, status, headers, body in records(
        config.capture.warc)}  # fmt: skip
    assert set(kept) == {server.url(path) for path in PAGES}
    status, headers, body = kept[server.url("/news/208562.htm")]
    assert status == 200 and body == (ARTICLES / "news_208562.htm").read_bytes()
    assert headers["content-type"].startswith("text/html")


def test_search_finds_a_live_item_by_a_word_only_its_full_text_has(site):
    server, config_path = site
    config = load(config_path)
    run_cli("--config", str(config_path), "fetch")
    before = run_cli("--config", str(config_path), "search", ONLY_IN_FULL_TEXT, "--json").stdout
    assert before == ""  # --json: one line per match, and none yet
    out = run_cli("--config", str(config_path), "capture").stdout
    assert "3 captures" in out and "a new revision" in out
    found = run_cli("--config", str(config_path), "search", ONLY_IN_FULL_TEXT, "--json").stdout
    (hit,) = [json.loads(line) for line in found.splitlines()]
    assert hit["url"] == server.url("/news/144098.htm") and hit["origin"] == "feed"
    status = run_cli("--config", str(config_path), "capture", "--status").stdout
    assert "2 captured" in status and "1 not article" in status and "0 pending" in status
    assert config.capture.warc.is_file()


def test_robots_txt_disallow_is_obeyed(site):
    server, config_path = site
    server.route(
        "/robots.txt", body=b"User-agent: *\nDisallow: /news/\n", content_type="text/plain"
    )
    _, reports = fetch_and_capture(config_path)
    assert {r.state for r in reports} == {CaptureState.DISALLOWED}
    assert "robots.txt disallows" in reports[0].reason
    assert not [r for r in server.requests() if r.path.startswith("/news/")]
    assert len(server.requests("/robots.txt")) == 1  # asked once per host, then cached


def test_one_request_per_host_per_interval(site):
    server, config_path = site
    fetch_and_capture(config_path)
    times = sorted(r.time for r in server.requests() if r.path != "/feed.rss")
    assert len(times) == 4  # robots.txt, then three pages
    # The next request leaves an interval after the one before ended, which is after it
    # arrived: whatever the latency, arrivals are an interval apart.
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= INTERVAL, gaps


def test_a_reloaded_config_keeps_each_hosts_turn_and_robots_txt(site):
    """The daemon makes its capturer again when the config is reloaded: a host asked just
    before must still get its pause, and its robots.txt is not fetched again."""
    server, config_path = site
    config = load(config_path)
    with Archive(config.archive.database) as archive:
        pipeline.sync_sources(archive, config)
        pipeline.fetch_all(archive, config)

        async def one_page_a_config():
            async with Fetcher(config) as fetcher:
                capturer = pipeline.Capturer(config, fetcher)
                for _ in PAGES:
                    await pipeline.Pipeline(archive).capture_due(config, capturer, limit=1)
                    capturer = capturer.for_config(load(config_path))

        asyncio.run(one_page_a_config())
    asked = [r for r in server.requests() if r.path != "/feed.rss"]
    assert [r.path for r in asked].count("/robots.txt") == 1
    gaps = [later.time - earlier.time for earlier, later in itertools.pairwise(asked)]
    assert len(asked) == 4 and min(gaps) >= INTERVAL, gaps


def test_a_link_to_a_private_address_is_refused_with_the_setting_off(tmp_path, feed_server):
    serve_site(feed_server)
    config_path = write_config(tmp_path, feed_server, private=False)
    _, reports = fetch_and_capture(config_path)  # the configured source itself is allowed
    assert len(reports) == 3 and {r.state for r in reports} == {CaptureState.GIVEN_UP}
    assert "loopback" in reports[0].reason and "fetch.allow_private_addresses" in reports[0].reason
    assert [r.path for r in feed_server.requests()] == ["/feed.rss"]


def test_a_source_redirect_to_another_private_host_is_refused(tmp_path, feed_server):
    config_path = write_config(tmp_path, feed_server, private=False)
    moved = f"http://localhost:{feed_server.port}/elsewhere.rss"
    feed_server.route("/feed.rss", status=302, location=moved)
    config = load(config_path)
    with Archive(config.archive.database) as archive:
        pipeline.sync_sources(archive, config)
        (report,) = pipeline.fetch_all(archive, config)
    assert "refused" in report.error and "loopback" in report.error
    assert not feed_server.requests("/elsewhere.rss")


def test_a_page_that_redirects_where_we_never_go_is_given_up_at_once(site):
    server, config_path = site
    server.route("/news/208562.htm", status=302, location="ftp://files.example/article.pdf")
    server.route("/news/144098.htm", status=302, location="javascript:alert(1)")
    _, reports = fetch_and_capture(config_path)
    moved = {r.url.rsplit("/", 1)[1]: r for r in reports}
    assert moved["208562.htm"].state is CaptureState.GIVEN_UP  # a retry would be refused again
    assert moved["208562.htm"].reason == (
        "refusing to fetch a ftp URL: ftp://files.example/article.pdf"
    )
    assert moved["144098.htm"].state is CaptureState.GIVEN_UP
    assert "redirect to an invalid URL" in moved["144098.htm"].reason


def test_a_robots_txt_we_never_fetch_is_one_that_is_not_there(site):
    server, config_path = site
    server.route("/robots.txt", status=301, location="ftp://files.example/robots.txt")
    _, reports = fetch_and_capture(config_path)
    assert len(reports) == 3 and not {CaptureState.GIVEN_UP, CaptureState.DISALLOWED} & {
        r.state for r in reports
    }
    assert len([r for r in server.requests() if r.path.startswith("/news/")]) == 3
    assert len(server.requests("/robots.txt")) == 1  # and remembered as such


def test_an_unreachable_robots_txt_says_why_in_the_captures_reason(site):
    server, config_path = site
    server.route("/robots.txt", status=302, location="http://127.0.0.1:9/robots.txt")
    _, reports = fetch_and_capture(config_path)  # nothing listens on port 9
    assert [r.state for r in reports] == [CaptureState.PENDING] * 3
    for report in reports:  # what failed, not only that it did
        assert report.reason.startswith(
            "attempt 1 failed: robots.txt unreachable: cannot connect"
        ), report.reason


def test_a_failing_page_is_retried_later_then_given_up_with_the_reason(site):
    server, config_path = site
    server.route("/news/208562.htm", status=500, body=b"oops", content_type="text/plain")
    server.route("/news/144098.htm", status=404, body=b"gone", content_type="text/plain")
    start = datetime(2030, 1, 1, tzinfo=UTC)
    config, first = fetch_and_capture(config_path, clock=lambda: start)
    states = {r.url.rsplit("/", 1)[1]: r for r in first}
    assert states["208562.htm"].state is CaptureState.PENDING
    assert states["208562.htm"].reason == "attempt 1 failed: HTTP 500"
    assert states["144098.htm"].state is CaptureState.GIVEN_UP  # a 404 will not change
    assert "404" in states["144098.htm"].reason
    with Archive(config.archive.database) as archive:
        assert pipeline.capture_queue(archive, config, clock=lambda: start) == []  # not due
        later = start + timedelta(days=2)
        (second,) = pipeline.capture_queue(archive, config, clock=lambda: later)
        assert second.state is CaptureState.GIVEN_UP
        assert second.reason == "HTTP 500 (2 attempts)"
        record = archive.get_capture(item_at(archive, server.url("/news/208562.htm")).id)
        assert (record.state, record.attempts, record.last_status) == (
            CaptureState.GIVEN_UP,
            2,
            500,
        )


def test_a_changed_page_is_a_new_revision_and_an_unchanged_one_is_a_304(site):
    server, config_path = site
    config, _ = fetch_and_capture(config_path)
    url = server.url("/news/144098.htm")
    with Archive(config.archive.database) as archive:
        item_id = item_at(archive, url).id
    again = run_cli("--config", str(config_path), "capture", "--item", str(item_id)).stdout
    assert "unchanged (304)" in again
    assert server.requests("/news/144098.htm")[-1].headers["if-none-match"] == '"/news/144098.htm"'
    changed = (
        (ARTICLES / "news_144098.htm")
        .read_bytes()
        .replace(b"interlocking wings", b"interlocking sails")
    )
    server.route("/news/144098.htm", body=changed, content_type="text/html", etag='"v2"')
    out = run_cli("--config", str(config_path), "capture", "--item", str(item_id)).stdout
    assert "a new revision" in out
    with Archive(config.archive.database) as archive:
        item = archive.get_item(item_id)
        assert item.revision == 3 and "interlocking sails" in item.content_text
        revisions = archive.revisions(item_id)
        assert [r.revision for r in revisions] == [1, 2, 3]
        assert (
            revisions[0].content_html is None and "interlocking wings" in revisions[1].content_html
        )


def test_capture_item_refuses_an_item_without_a_link(site):
    _, config_path = site
    result = run_cli("--config", str(config_path), "capture", "--item", "999", check=False)
    assert result.returncode != 0 and "item 999" in result.stderr


@pytest.mark.slow
def test_the_daemon_works_the_queue_in_its_own_job(tmp_path, feed_server):
    from tests.test_daemon import Daemon, free_port

    serve_site(feed_server)
    port = free_port()
    extra = (
        f'every = "1s"\n[daemon]\njitter = "0s"\n'
        f'[server]\nport = {port}\nbase_url = "http://127.0.0.1:{port}"\n'
    )
    config_path = write_config(tmp_path, feed_server, extra=extra)
    project = type("Project", (), {"config": config_path, "root": tmp_path})()
    daemon = Daemon(project, port, "--log-format", "json")
    try:
        daemon.wait_ready()
        daemon.wait_for(lambda: daemon.log().count('"capture"') >= 3, what="three captures")
        metrics = daemon.get("/metrics").text
        assert 'aggregator_captures_queued{state="captured"} 2.0' in metrics
        assert 'aggregator_captures_queued{state="pending"} 0.0' in metrics
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=15) == 0


def test_a_snapshot_includes_the_pages_and_verify_reads_every_record(site):
    from aggregator.snapshot.layout import PAGES

    _, config_path = site
    config, _ = fetch_and_capture(config_path)
    made = run_cli("--config", str(config_path), "snapshot", "create").stdout
    (folder,) = [p for p in config.archive.snapshots.iterdir() if p.is_dir()]
    kept = folder / PAGES
    assert "snapshot" in made and kept.read_bytes() == config.capture.warc.read_bytes()
    assert "pages.warc.gz" in json.loads((folder / "manifest.json").read_text())["files"]
    assert run_cli("--config", str(config_path), "snapshot", "verify", folder.name).returncode == 0
    snapshotted = kept.read_bytes()
    with config.capture.warc.open("ab") as later:  # captures made after the snapshot
        later.write(b"later records")
    run_cli("--config", str(config_path), "snapshot", "restore", folder.name)
    assert config.capture.warc.read_bytes() == snapshotted
    (replaced,) = config.capture.warc.parent.glob("pages.warc.gz.replaced-*")
    assert replaced.read_bytes().endswith(b"later records")
    damaged = bytearray(kept.read_bytes())
    damaged[-5] ^= 0xFF
    kept.write_bytes(bytes(damaged))
    result = run_cli("--config", str(config_path), "snapshot", "verify", folder.name, check=False)
    assert result.returncode != 0 and "pages.warc.gz" in result.stderr


def test_a_record_half_written_while_a_snapshot_copies_is_left_out(tmp_path):
    from aggregator.capture.warc import append_capture
    from aggregator.snapshot.pages import check_pages, copy_pages

    source = tmp_path / "pages.warc.gz"
    for n in range(2):
        append_capture(source, f"https://www.nato.int/{n}", datetime.now(UTC), 200,
                       {"content-type": "text/html"}, b"<p>text</p>" * 50, {})  # fmt: skip
    whole = source.stat().st_size
    with source.open("ab") as file:
        file.write(source.read_bytes()[300:340])  # the start of a record still being written
    copy_pages(source, tmp_path / "copy.warc.gz")
    assert (tmp_path / "copy.warc.gz").stat().st_size == whole
    assert check_pages(tmp_path / "copy.warc.gz") == 5  # warcinfo, then request + response x2


def test_a_host_with_a_backlog_holds_one_capture_slot_not_all(tmp_path, feed_server, monkeypatch):
    monkeypatch.setattr(pipeline, "CAPTURE_CONCURRENCY", 2)
    backlog = {f"/news/a{n}.htm": ("news_208562.htm", f"Story {n}") for n in range(6)}
    serve_site(feed_server, backlog)
    article = (ARTICLES / "news_144098.htm").read_bytes()
    feed_server.route("/news/b.htm", body=article, content_type="text/html; charset=utf-8")
    other = f"http://localhost:{feed_server.port}/news/b.htm"  # another host name
    first = f"<item><title>Other</title><link>{other}</link><guid>b</guid></item><item>"
    feed_server.route(
        "/feed.rss", body=feed(feed_server, backlog).replace(b"<item>", first.encode(), 1)
    )
    fetch_and_capture(write_config(tmp_path, feed_server))
    pages = {r.path: r.time for r in feed_server.requests() if r.path.startswith("/news/")}
    assert len(pages) == 7
    started = min(pages.values())
    # Queued first, so captured last in the queue's order: yet not behind the backlog.
    assert pages["/news/b.htm"] - started < 2 * INTERVAL, pages


# --- a daemon that stops ----------------------------------------------------------------------


def test_a_stop_while_captures_are_in_flight_leaves_every_capture_as_it_was(tmp_path, feed_server):
    serve_site(feed_server)
    slow = (ARTICLES / "news_144098.htm").read_bytes()
    for path in PAGES:  # every page takes 3 s: the stop comes while the first is in flight
        feed_server.route(path, body=slow, content_type="text/html", delay=3.0)
    config = load(write_config(tmp_path, feed_server))
    with Archive(config.archive.database) as archive:
        pipeline.sync_sources(archive, config)
        pipeline.fetch_all(archive, config)

        async def stopped_midway():
            stopping = asyncio.Event()
            asyncio.get_running_loop().call_later(0.6, stopping.set)  # page 1 in flight
            async with Fetcher(config) as fetcher:
                capturer = pipeline.Capturer(config, fetcher)
                return await pipeline.Pipeline(archive).capture_due(
                    config, capturer, stopping=stopping
                )

        asyncio.run(stopped_midway())
        rows = archive.conn.execute("SELECT state, attempts, reason FROM captures").fetchall()
    assert rows == [("pending", 0, None)] * 3  # no attempt counted, none given up


def test_a_stop_during_a_poll_is_abandoned_not_a_failure(tmp_path, feed_server):
    feed_server.route("/feed.rss", body=feed(feed_server), delay=3.0)
    config = load(write_config(tmp_path, feed_server))
    with Archive(config.archive.database) as archive:
        pipeline.sync_sources(archive, config)

        async def stopped_midway():
            stopping = asyncio.Event()
            asyncio.get_running_loop().call_later(0.3, stopping.set)
            async with Fetcher(config) as fetcher:
                return await pipeline.Pipeline(archive).poll(
                    config, "loop", fetcher, stopping=stopping
                )

        report = asyncio.run(stopped_midway())
        source = archive.get_source("loop")
    assert report.note == "abandoned: stopping"
    assert (source.consecutive_errors, source.last_error) == (0, None)


def test_a_redirect_to_another_host_waits_for_that_hosts_turn(tmp_path, feed_server):
    """Two articles on one host, one reached through a redirect from another host: the
    host still gets one request per interval (its pace is taken hop by hop)."""
    other = f"http://localhost:{feed_server.port}"
    article = (ARTICLES / "news_144098.htm").read_bytes()
    for path in ("/news/b1.htm", "/news/b2.htm"):
        feed_server.route(path, body=article, content_type="text/html; charset=utf-8")
    feed_server.route("/go/b2", status=302, location=f"{other}/news/b2.htm")
    links = [f"{other}/news/b1.htm", feed_server.url("/go/b2")]
    items = "".join(
        f"<item><title>S{n}</title><link>{link}</link><guid>g{n}</guid></item>"
        for n, link in enumerate(links)
    )
    feed_server.route("/feed.rss", body=f'<rss version="2.0"><channel><title>x</title>{items}'
                      "</channel></rss>".encode())  # fmt: skip
    fetch_and_capture(write_config(tmp_path, feed_server))
    at_other = sorted(
        r.time for r in feed_server.requests() if r.headers["host"].startswith("localhost")
    )
    assert len(at_other) == 3  # robots.txt and the two articles
    gaps = [later - earlier for earlier, later in itertools.pairwise(at_other)]
    assert min(gaps) >= INTERVAL, gaps
