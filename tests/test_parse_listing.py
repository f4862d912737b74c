"""parse.listing: a news listing page read with CSS selectors (issue 13)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.config import Selectors
from aggregator.models import Precision
from aggregator.parse import dates
from aggregator.parse.listing import ListingError, parse_listing

PAGE = (Path(__file__).parent / "fixtures" / "listing" / "nato-news-listing.html").read_bytes()
URL = "https://www.nato.int/en/news-and-events/articles/news"
FETCHED = datetime(2022, 11, 26, 15, 40, tzinfo=UTC)
NATO = Selectors(item="div.news-card", title="h3", link="h3 a", date="time", summary="p.summary")


def test_every_card_is_an_entry_with_its_title_link_date_and_summary():
    feed = parse_listing(PAGE, URL, NATO, FETCHED)
    assert feed.title == "News | NATO" and feed.version == "html" and feed.note is None
    got = [(e.title, e.link, e.published, e.precision) for e in feed.entries]
    assert got == [
        (
            "Partners join Allies for a cyber defence workshop in Tallinn",
            "https://www.nato.int/cps/en/natohq/news_209611.htm?selectedLocale=en",
            datetime(2022, 11, 24, 12, tzinfo=UTC),
            Precision.DAY,
        ),
        (
            "Chair of the NATO Military Committee visits Allied Command Transformation",
            "https://www.nato.int/cps/en/natohq/news_209547.htm",
            datetime(2022, 11, 22, 12, tzinfo=UTC),
            Precision.DAY,
        ),
        (  # "1 week 2 days ago" from 26 Nov.: a day, at noon
            "Ukraine and NATO hold talks on fuel & energy supplies",
            "https://www.nato.int/en/news-and-events/articles/news/2022/11/17/"
            "ukraine-and-nato-hold-talks-on-fuel-supplies",
            datetime(2022, 11, 17, 12, tzinfo=UTC),
            Precision.DAY,
        ),
        (  # the datetime attribute wins over the text; Brussels is UTC+1 in November
            "Mongolia and NATO review their individual partnership",
            "https://www.nato.int/en/news-and-events/articles/articles/news/2022/11/15/"
            "mongolia-partnership-dialogue",
            datetime(2022, 11, 15, 8, 36, tzinfo=UTC),
            Precision.SECOND,
        ),
        (  # "3 hours ago": to the minute
            "Secretary General meets Indo-Pacific partners",
            "https://www.nato.int/en/news-and-events/articles/news/2022/11/26/"
            "secretary-general-meets-partners",
            datetime(2022, 11, 26, 12, 40, tzinfo=UTC),
            Precision.MINUTE,
        ),
    ]
    first = feed.entries[0]
    assert first.summary_text.startswith("On 24 November 2022, cyber experts")
    assert first.summary_html.startswith("<p>On 24 November 2022")
    assert first.guid is None and not first.date_inferred
    assert feed.entries[-1].summary_text == ""  # a card without a summary


def test_a_page_whose_item_selector_matches_nothing_is_a_structure_change():
    moved = Selectors(item="article.teaser", title="h3", link="h3 a")
    with pytest.raises(ListingError) as caught:
        parse_listing(PAGE, URL, moved, FETCHED)
    assert str(caught.value) == (
        'the page\'s structure changed: selector "article.teaser" (item) matched nothing'
    )


def test_a_link_selector_that_matches_in_no_card_is_a_structure_change():
    renamed = Selectors(item="div.news-card", title="h3", link="h2 a")
    with pytest.raises(ListingError, match=r'selector "h2 a" \(link\) matched nothing in any'):
        parse_listing(PAGE, URL, renamed, FETCHED)


def test_an_empty_or_foreign_page_is_a_structure_change_not_an_empty_success():
    for body in (b"", b"<html><body><p>Maintenance</p></body></html>", b"\x00\xff" * 100):
        with pytest.raises(ListingError, match="structure changed"):
            parse_listing(body, URL, NATO, FETCHED)


def test_a_heading_selector_as_link_finds_the_link_inside_it():
    feed = parse_listing(PAGE, URL, Selectors(item="div.news-card", title="h3", link="h3"), FETCHED)
    assert feed.entries[1].link == "https://www.nato.int/cps/en/natohq/news_209547.htm"


def test_hostile_cards_stay_text_and_odd_links_are_dropped():
    body = b"""<div class=c><h3><a href="javascript:alert(1)">A <b>bold</b> \x1b title</a></h3>
      <p class=s>&lt;script&gt;x&lt;/script&gt; and <script>alert(2)</script></p></div>
      <div class=c><h3><a href="http://[::1">Broken link</a></h3></div>"""
    selectors = Selectors(item="div.c", title="h3", link="h3 a", summary="p.s")
    first, second = parse_listing(body, URL, selectors, FETCHED).entries
    assert first.title == "A bold title" and first.link is None
    assert "<script>" not in first.summary_html and "&lt;script&gt;" in first.summary_html
    assert second.title == "Broken link" and second.link is None


def test_cards_over_max_entries_are_dropped_and_said():
    feed = parse_listing(PAGE, URL, NATO, FETCHED, max_entries=2)
    assert len(feed.entries) == 2 and feed.dropped == 3
    assert feed.note == "3 entries over fetch.max_entries (2) were dropped"


def test_the_page_charset_is_honoured():
    body = '<meta charset="iso-8859-1"><div class=c><h3><a href="/a">Sécurité</a></h3></div>'
    selectors = Selectors(item="div.c", title="h3", link="h3 a")
    feed = parse_listing(body.encode("latin-1"), URL, selectors, FETCHED)
    assert feed.entries[0].title == "Sécurité"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2022-12-07", (datetime(2022, 12, 7, 12, tzinfo=UTC), Precision.DAY)),
        ("2022-12-07T10:00:00Z", (datetime(2022, 12, 7, 10, tzinfo=UTC), Precision.SECOND)),
        ("07 Dec. 2022", (datetime(2022, 12, 7, 12, tzinfo=UTC), Precision.DAY)),
        ("19 Jul. 2021 09:36", (datetime(2021, 7, 19, 7, 36, tzinfo=UTC), Precision.MINUTE)),
        ("2 weeks 3 days ago", (datetime(2022, 11, 9, 12, tzinfo=UTC), Precision.DAY)),
        ("5 minutes ago", (datetime(2022, 11, 26, 15, 35, tzinfo=UTC), Precision.MINUTE)),
        ("Tuesday", None),
        ("", None),
        ("99999-01-01T00:00:00", None),
    ],
)
def test_written_dates_in_the_forms_listing_pages_use(text, expected):
    assert dates.written_date(text, FETCHED) == expected
