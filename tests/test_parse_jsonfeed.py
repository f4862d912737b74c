"""parse.jsonfeed: JSON Feed 1.0 and 1.1 read into the same entries as RSS (issue 13)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from aggregator.models import Precision
from aggregator.parse import parse_document
from aggregator.parse.feed import FeedError

URL = "https://example.org/feed.json"


def document(version: str = "1.1", **changes) -> bytes:
    feed = {
        "version": f"https://jsonfeed.org/version/{version}",
        "title": "NATO partners (JSON)",
        "home_page_url": "https://example.org/news/",
        "items": [
            {
                "id": "urn:story:1",
                "url": "stories/1.html",
                "title": "Japan and NATO \x1b sign a partnership programme",
                "content_html": "<p>Signed in Brussels.</p><script>alert(1)</script>",
                "summary": "A new programme.",
                "date_published": "2024-05-09T10:00:00+02:00",
                "date_modified": "2024-05-10T08:00:00Z",
                "tags": ["Japan", "Partnerships", "Japan"],
                "authors": [{"name": "NATO Press"}],
            },
            {"id": "urn:story:2", "content_text": "Plain text only\n\nTwo paragraphs."},
            "not an item",
            {"id": "urn:story:3", "title": "Day only", "date_published": "2024-05-08"},
        ],
    }
    feed.update(changes)
    return json.dumps(feed).encode()


def test_a_json_feed_11_reads_into_entries_like_rss():
    feed = parse_document(document(), URL, {"content-type": "application/feed+json"})
    assert feed.version == "json11" and feed.title == "NATO partners (JSON)"
    first, second, third = feed.entries
    assert first.title == "Japan and NATO sign a partnership programme"
    assert first.link == "https://example.org/news/stories/1.html"
    assert first.guid == "urn:story:1"
    assert first.summary_text == "A new programme."
    assert first.content_html == "<p>Signed in Brussels.</p>" and "script" not in first.content_html
    assert first.published == datetime(2024, 5, 9, 8, tzinfo=UTC)
    assert first.updated == datetime(2024, 5, 10, 8, tzinfo=UTC)
    assert first.categories == ("Japan", "Partnerships") and first.author == "NATO Press"
    assert second.title == "Plain text only Two paragraphs."  # the summary's first words
    assert second.summary_text == "Plain text only\nTwo paragraphs." and second.date_inferred
    assert (third.published, third.precision) == (
        datetime(2024, 5, 8, 12, tzinfo=UTC),
        Precision.DAY,
    )
    assert feed.unreadable == 1 and "1 entry could not be read" in feed.note


def test_a_json_feed_10_with_author_is_read_without_a_json_content_type():
    body = document("1", items=[{"id": "a", "title": "One", "author": {"name": "Press"}}])
    feed = parse_document(body, URL, {"content-type": "text/plain"})
    assert feed.version == "json10" and feed.entries[0].author == "Press"


def test_items_over_max_entries_are_dropped_and_said():
    items = [{"id": str(n), "title": f"Story {n}"} for n in range(10)]
    feed = parse_document(document(items=items), URL, max_entries=4)
    assert [e.title for e in feed.entries] == ["Story 0", "Story 1", "Story 2", "Story 3"]
    assert feed.dropped == 6 and feed.note == "6 entries over fetch.max_entries (4) were dropped"


@pytest.mark.parametrize(
    "body",
    [
        b'{"version": "https://example.org/not-json-feed", "items": []}',
        b'{"version": "https://jsonfeed.org/version/1.1"}',
        b"{not json",
        b"{" * 100_000,
        b'["https://jsonfeed.org/version/1.1"]',
    ],
)
def test_json_that_is_not_a_json_feed_is_one_clear_error(body):
    with pytest.raises(FeedError) as caught:
        parse_document(body, URL, {"content-type": "application/json"})
    assert str(caught.value).startswith("not a JSON Feed") and "\n" not in str(caught.value)


def test_rss_still_goes_to_feedparser():
    rss = (
        b"<rss version='2.0'><channel><title>T</title><item><title>A</title></item></channel></rss>"
    )
    assert parse_document(rss, URL).version == "rss20"


def test_relative_links_in_json_feed_content_are_made_absolute_like_rss():
    body = document(
        items=[
            {
                "id": "a",
                "title": "One",
                "url": "/news/1",
                "content_html": '<p><a href="/rel">More</a> <img src="i.png" alt="x"></p>',
            }
        ]
    )
    (entry,) = parse_document(body, URL).entries
    assert entry.link == "https://example.org/news/1"
    assert 'href="https://example.org/rel"' in entry.summary_html
    assert 'src="https://example.org/news/i.png"' in entry.summary_html
