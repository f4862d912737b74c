"""discover: the feeds a page advertises and the usual places (issue 13)."""

from __future__ import annotations

from pathlib import Path

from aggregator.discover import advertised, usual_paths
from aggregator.models import FeedCandidate

LISTING = (Path(__file__).parent / "fixtures" / "listing" / "nato-news-listing.html").read_bytes()
URL = "https://www.nato.int/en/news-and-events/articles/news"


def test_a_listing_page_advertises_nato_s_rss_feed():
    assert advertised(LISTING, URL) == [
        FeedCandidate(
            "https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml",
            "NATO Latest News",
            "rss",
            "advertised",
        )
    ]


def test_alternate_links_of_every_feed_type_then_feed_looking_anchors_each_once():
    page = b"""<html><head><base href="https://example.org/blog/">
      <link rel="alternate" type="application/atom+xml" title=" Atom  feed " href="atom.xml">
      <link rel="Alternate" type="application/feed+json" href="/feed.json">
      <link rel="alternate" type="text/html" href="/fr/">
      <link rel="stylesheet" type="application/rss+xml" href="/not-alternate.rss">
      </head><body>
      <a href="/comments/feed/">Comments feed</a>
      <a href="atom.xml#top">Atom again</a>
      <a href="/feedback">Feedback</a>
      <a href="javascript:alert(1)">rss</a>
      <a href="https://other.example/news.rss">Partner news</a>
      </body></html>"""
    assert advertised(page, "https://example.org/blog/post") == [
        FeedCandidate("https://example.org/blog/atom.xml", "Atom feed", "atom", "advertised"),
        FeedCandidate("https://example.org/feed.json", "", "json", "advertised"),
        FeedCandidate("https://example.org/comments/feed/", "Comments feed", "", "linked"),
        FeedCandidate("https://other.example/news.rss", "Partner news", "", "linked"),
    ]


def test_a_page_that_is_not_html_advertises_nothing():
    assert advertised(b"\x00\xff" * 1000, URL) == []
    assert advertised(b"", URL) == []


def test_usual_paths_are_on_the_page_s_site():
    urls = [candidate.url for candidate in usual_paths(URL)]
    assert urls[:3] == [
        "https://www.nato.int/feed",
        "https://www.nato.int/rss.xml",
        "https://www.nato.int/atom.xml",
    ]
    assert all(candidate.how == "usual" for candidate in usual_paths(URL))


def test_a_page_in_its_own_charset_gives_titles_as_written():
    page = '<meta charset="windows-1252"><link rel="alternate" type="application/rss+xml" '
    page += 'title="Actualités – OTAN" href="/fr/rss.xml">'
    (found,) = advertised(page.encode("cp1252"), URL)
    assert found.title == "Actualités – OTAN"
    (served,) = advertised(
        'x<link rel="alternate" type="application/rss+xml" title="Défense" href="/a">'.encode(
            "latin-1"
        ),
        URL,
        {"content-type": "text/html; charset=ISO-8859-1"},
    )
    assert served.title == "Défense"
