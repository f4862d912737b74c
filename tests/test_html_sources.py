"""When the feed moves or dies (issue 13): html listing sources, JSON Feed sources, feed
discovery and OPML, through the CLI in a subprocess against a loopback server."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import feedparser

from tests.feedserver import FIXTURES

LISTING_PATH = "/en/news-and-events/articles/news"
LISTING = (FIXTURES / "listing" / "nato-news-listing.html").read_text(encoding="utf-8")
RSS = (FIXTURES / "nato-news-2022-11-26.rss").read_bytes()
HOME = b"""<!doctype html><html><head><title>NATO</title>
<link rel="alternate" type="application/rss+xml" title="NATO news, new address"
      href="/en/news-and-events/feed.rss"></head><body><p>Welcome</p></body></html>"""
HTML = "text/html; charset=utf-8"
SELECTORS = """[sources.selectors]
item = "div.news-card"
title = "h3"
link = "h3 a"
date = "time"
summary = "p.summary"
"""


def feed_source(url: str, source_id: str = "nato-news") -> str:
    return f'[[sources]]\nid = "{source_id}"\ntitle = "NATO News"\nurl = "{url}"\ninterval = "1m"\n'


def html_source(url: str) -> str:
    return (
        f'[[sources]]\nid = "nato-listing"\ntitle = "NATO news (listing page)"\nurl = "{url}"\n'
        f'kind = "html"\ninterval = "1m"\n{SELECTORS}'
    )


def configure(project, *blocks: str) -> None:
    text = project.config.read_text(encoding="utf-8")
    text = re.sub(r"\[\[sources\]\]\n(?:[a-z_]+ = .*\n)+", "", text, count=1)
    project.write_config(text + "\n" + "\n".join(blocks))


def items(project, source: str | None = None) -> list[dict]:
    rows = [json.loads(line) for line in project.cli("items", "--json").stdout.splitlines()]
    return [row for row in rows if source is None or row["source"] == source]


def sources(project) -> dict[str, dict]:
    lines = project.cli("sources", "--json").stdout.splitlines()
    return {row["id"]: row for row in map(json.loads, lines)}


def card(title: str, path: str, when: str) -> str:
    return (
        f'<div class="news-card"><time>{when}</time><h3><a href="{path}">{title}</a></h3>'
        f'<p class="summary">{title}: NATO and its partners.</p></div>'
    )


def with_card(extra: str) -> bytes:
    return LISTING.replace(
        '<section class="news-list">', f'<section class="news-list">{extra}'
    ).encode()


# --- html sources ------------------------------------------------------------------------------


def test_an_html_source_reads_the_listing_with_its_dates_and_publishes_it(project, feed_server):
    url = feed_server.route(LISTING_PATH, body=LISTING.encode(), content_type=HTML)
    configure(project, html_source(url))
    before = datetime.now(UTC)

    result = project.cli("fetch")

    assert re.search(r"nato-listing: 200, \d+ bytes, 5 new", result.stdout), result.stdout
    stored = {row["title"]: row for row in items(project, "nato-listing")}
    assert len(stored) == 5
    cyber = stored["Partners join Allies for a cyber defence workshop in Tallinn"]
    assert cyber["published"].startswith("2022-11-24")
    assert cyber["url"] == "https://www.nato.int/cps/en/natohq/news_209611.htm?selectedLocale=en"
    fuel = stored["Ukraine and NATO hold talks on fuel & energy supplies"]
    assert fuel["url"] == f"{url}/2022/11/17/ukraine-and-nato-hold-talks-on-fuel-supplies"
    expected_day = (before - timedelta(weeks=1, days=2)).date().isoformat()
    assert fuel["published"].startswith(expected_day)  # "1 week 2 days ago" from the fetch
    recent = datetime.fromisoformat(
        stored["Secretary General meets Indo-Pacific partners"]["published"].replace("Z", "+00:00")
    )
    assert timedelta(hours=2, minutes=58) < before - recent < timedelta(hours=3, minutes=2)
    published = feedparser.parse((project.feeds / "all.atom").read_bytes())
    assert "Secretary General meets Indo-Pacific partners" in {e.title for e in published.entries}


def test_a_listing_whose_structure_changed_is_a_failed_poll_that_names_the_selector(
    project, feed_server
):
    redesigned = LISTING.replace("news-card", "teaser-card").encode()
    url = feed_server.route(LISTING_PATH, body=redesigned, content_type=HTML)
    configure(project, html_source(url))

    result = project.cli("fetch", check=False)

    assert result.returncode == 1
    message = 'the page\'s structure changed: selector "div.news-card" (item) matched nothing'
    assert message in result.stdout
    state = sources(project)["nato-listing"]
    assert message in state["last_error"] and state["consecutive_errors"] == 1
    assert items(project, "nato-listing") == []


def test_a_gone_feed_is_marked_and_named_while_the_listing_keeps_the_feeds_growing(
    project, feed_server
):
    feed_url = feed_server.route("/cps/rss/en/natohq/rssFeed.xml", body=RSS)
    listing_url = feed_server.route(LISTING_PATH, body=LISTING.encode(), content_type=HTML)
    feed_server.route("/", body=HOME, content_type=HTML)
    configure(project, feed_source(feed_url), html_source(listing_url))
    project.cli("fetch")
    first = items(project)
    # The listing's first two cards are stories the feed carries (same canonical link).
    shared = [row for row in first if "news_209611" in (row["url"] or "")]
    assert len(shared) == 1, shared
    assert len([row for row in first if "news_209547" in (row["url"] or "")]) == 1

    feed_server.route("/cps/rss/en/natohq/rssFeed.xml", status=410, body=b"")
    news = card("Japan and NATO sign a new partnership programme", "/en/japan-itpp", "2 hours ago")
    feed_server.route(LISTING_PATH, body=with_card(news), content_type=HTML)
    result = project.cli("fetch", "--force", check=False)

    assert result.returncode == 0, result.stdout  # one source still works
    gone = sources(project)["nato-news"]
    assert gone["state"] == "gone"
    assert gone["last_error"].startswith("410 Gone")
    assert "the site advertises: " in gone["last_error"]
    assert feed_server.url("/en/news-and-events/feed.rss") in gone["last_error"]
    assert "advertises" in result.stdout
    after = items(project)
    assert len(after) == len(first) + 1
    published = feedparser.parse((project.feeds / "all.atom").read_bytes())
    titles = [entry.title for entry in published.entries]
    assert "Japan and NATO sign a new partnership programme" in titles
    assert len(titles) == len(set(titles))


def test_a_feed_source_answering_404_or_a_web_page_names_the_advertised_feed(project, feed_server):
    page = HOME.replace(b"<p>Welcome</p>", b"<p>Our news moved</p>")
    url = feed_server.route("/rss.xml", status=404, body=page, content_type=HTML)
    other = feed_server.route("/old-feed", body=page, content_type=HTML)
    configure(project, feed_source(url), feed_source(other, "old-feed"))

    project.cli("fetch", check=False)

    state = sources(project)
    assert state["nato-news"]["last_error"].startswith("HTTP 404 Not Found; the site advertises: ")
    assert state["old-feed"]["last_error"].startswith("not a feed")
    assert "the site advertises: " in state["old-feed"]["last_error"]
    assert feed_server.requests("/") == []  # the page itself named the feed: no extra request


# --- JSON Feed sources ---------------------------------------------------------------------------


def test_a_json_feed_source_ingests_like_the_rss_one(project, feed_server):
    parsed = feedparser.parse(RSS)
    document = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "NATO Latest News",
        "items": [
            {
                "id": entry.link,
                "url": entry.link,
                "title": entry.title,
                "content_text": entry.summary,
                "date_published": datetime(*entry.published_parsed[:6], tzinfo=UTC).isoformat(),
            }
            for entry in parsed.entries
        ],
    }
    url = feed_server.route(
        "/feed.json", body=json.dumps(document).encode(), content_type="application/feed+json"
    )
    configure(project, feed_source(url))

    result = project.cli("fetch")

    assert re.search(r"nato-news: 200, \d+ bytes, 3 new, 7 updated", result.stdout), result.stdout
    assert len(items(project)) == 13  # the ten seeds, three of them completed, and three new


# --- discover --------------------------------------------------------------------------------


def test_discover_lists_the_feeds_a_page_advertises_with_their_item_counts(project, feed_server):
    feed_server.route("/", body=HOME, content_type=HTML)
    feed_server.route("/en/news-and-events/feed.rss", body=RSS)
    result = project.cli("discover", feed_server.url("/"))
    lines = result.stdout.splitlines()
    assert lines[0] == f"{feed_server.url('/en/news-and-events/feed.rss')}"
    assert "  NATO Latest News: rss20, 10 items (advertised)" in lines  # the feed's own title
    assert "rss20, 10 items" in result.stdout


def test_discover_tries_the_usual_paths_when_a_page_advertises_nothing(project, feed_server):
    feed_server.route("/", body=b"<html><body>No links here</body></html>", content_type=HTML)
    feed_server.route("/atom.xml", body=RSS)
    result = project.cli("discover", feed_server.url("/"))
    assert feed_server.url("/atom.xml") in result.stdout and "10 items" in result.stdout


def test_discover_holds_a_feed_advertised_on_another_host_to_public_addresses(project, feed_server):
    elsewhere = f"http://localhost:{feed_server.port}/internal.rss"
    page = f'<html><head><link rel="alternate" type="application/rss+xml" href="{elsewhere}">'
    feed_server.route("/", body=page.encode(), content_type=HTML)
    feed_server.route("/internal.rss", body=RSS)
    result = project.cli("discover", feed_server.url("/"), check=False)
    assert result.returncode == 1 and "no feed found" in result.stderr
    assert feed_server.requests("/internal.rss") == []  # refused before connecting


def test_discover_says_when_nothing_is_found(project, feed_server):
    feed_server.route("/", body=b"<html><body>Nothing</body></html>", content_type=HTML)
    result = project.cli("discover", feed_server.url("/"), check=False)
    assert result.returncode == 1
    assert "no feed found" in result.stderr


# --- OPML --------------------------------------------------------------------------------------


OPML = """<?xml version="1.0"?>
<opml version="2.0"><body>
  <outline text="NATO" xmlUrl="https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml"/>
  <outline text="Defence One" xmlUrl="https://www.defenseone.com/rss/all/"/>
</body></opml>
"""


def test_sources_import_prints_the_new_sources_and_appends_them_on_request(project):
    opml = project.root / "subscriptions.opml"
    opml.write_text(OPML, encoding="utf-8")
    before = project.config.read_text(encoding="utf-8")

    printed = project.cli("sources", "import", str(opml)).stdout

    assert printed.count("[[sources]]") == 1 and 'id = "defence-one"' in printed
    assert project.config.read_text(encoding="utf-8") == before
    project.cli("sources", "import", str(opml), "--append")
    assert project.config.read_text(encoding="utf-8").startswith(before.rstrip("\n"))
    assert "defence-one" in project.cli("check-config").stdout
    again = project.cli("sources", "import", str(opml)).stdout
    assert "[[sources]]" not in again and "nothing to add" in again


def test_sources_import_of_a_file_that_is_not_opml_is_one_line(project):
    bad = project.root / "bad.opml"
    bad.write_bytes(b"<rss/>")
    result = project.cli("sources", "import", str(bad), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "not OPML" in result.stderr
