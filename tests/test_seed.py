"""The seed text formats: articles and listing captures, and the dates in them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aggregator.models import Precision
from aggregator.parse.seed import SeedError, parse_seed_text, read_seed_file, seed_files
from tests.conftest import SEEDS


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(hour=12, tzinfo=UTC)


def test_the_four_shipped_seeds_give_ten_items_with_their_dates():
    entries = [e for path in seed_files(SEEDS) for e in read_seed_file(path)]
    assert len(entries) == 10
    articles, listing = entries[:3], entries[3:]
    assert [e.published for e in articles] == [
        day("2022-02-23"),
        day("2021-07-13"),
        day("2023-05-23"),
    ]
    # "Last updated" is Brussels time: 18:10 CET is 17:10 UTC, 09:36 CEST is 07:36 UTC.
    assert articles[0].updated == datetime(2022, 2, 23, 17, 10, tzinfo=UTC)
    assert articles[1].updated == datetime(2021, 7, 19, 7, 36, tzinfo=UTC)
    assert all(e.content_text and len(e.content_text) > 1000 for e in articles)
    assert [e.published.date().isoformat() for e in listing] == [
        "2022-11-09",
        "2022-11-08",
        "2022-11-03",
        "2022-10-27",
        "2022-10-27",
        "2022-10-25",
        "2022-10-25",
    ]
    assert all(e.precision is Precision.DAY for e in entries)
    titles = " ".join(e.title for e in entries)
    assert "Subscribe" not in titles and "What´s new" not in titles


ARTICLE = """Allies and partners meet on resilience

  • 04 Mar. 2024 -
  • |
  • Last updated: 05 Mar. 2024 16:45

On Monday, partners from across the globe met at NATO Headquarters.

A second paragraph with <angle brackets> & ampersands.
"""


def test_article_with_date_lines():
    [entry] = parse_seed_text(ARTICLE)
    assert entry.title == "Allies and partners meet on resilience"
    assert entry.published == day("2024-03-04")
    assert entry.updated == datetime(2024, 3, 5, 15, 45, tzinfo=UTC)
    assert entry.summary_text.startswith("On Monday, partners")
    assert "&lt;angle brackets&gt; &amp; ampersands" in entry.content_html
    assert "<angle" not in entry.content_html


def test_article_without_date_line_takes_the_first_date_in_its_text():
    [entry] = parse_seed_text("A title\nSome words. On 2nd September 2019 a meeting; 1 May 2020.")
    assert entry.published == day("2019-09-02")
    assert entry.updated == entry.published


def test_article_without_any_date_is_refused():
    with pytest.raises(ValueError, match="no publication date"):
        parse_seed_text("A title\nNo dates in here at all.")


# A capture of another day, written for this test: other ages, other counts, an hour age,
# one block whose text mentions an old date, and chrome after the last block.
LISTING = """Header chrome

NATO and Japan deepen cooperation on cyber defence

3 days ago
On 12 March 2024, NATO and Japan agreed to step up their cooperation.

Deputy Secretary General visits Mongolia

1 week 1 day ago
The Deputy Secretary General was in Ulaanbaatar on 7 March 2024 for talks.

Science for Peace and Security anniversary

2 weeks ago
The programme, launched in 1958 and renewed on 3 April 2008, marks another year.

Breaking: statement on the situation

5 hours 20 minutes ago
A short statement.
2 minutes ago
Subscribe to NATO News feed
"""


def test_listing_infers_the_capture_day_and_prefers_explicit_dates():
    entries = parse_seed_text(LISTING)
    assert [e.title for e in entries] == [
        "NATO and Japan deepen cooperation on cyber defence",
        "Deputy Secretary General visits Mongolia",
        "Science for Peace and Security anniversary",
        "Breaking: statement on the situation",
    ]
    # 12 March + 3 days and 7 March + 8 days agree: captured on 15 March 2024.
    assert entries[0].published == day("2024-03-12")
    assert entries[1].published == day("2024-03-07")
    # "3 April 2008" is far from "2 weeks ago": the age wins.
    assert entries[2].published == day("2024-03-01")
    # Hours without a capture time: only the day is known.
    assert entries[3].published == day("2024-03-15")
    assert entries[3].precision is Precision.DAY
    assert entries[0].summary_text.startswith("On 12 March 2024")
    assert entries[0].content_text is None


def test_listing_with_a_given_capture_time_has_minute_precision():
    entries = parse_seed_text(LISTING, reference="2024-03-15T18:30:00Z")
    assert entries[3].published == datetime(2024, 3, 15, 13, 10, tzinfo=UTC)
    assert entries[3].precision is Precision.MINUTE
    assert entries[0].published == day("2024-03-12")


def test_listing_with_only_ages_needs_a_reference_date():
    text = "First story\n\n2 days ago\nNo date here.\n\nSecond story\n\n1 week ago\nNone either.\n"
    with pytest.raises(ValueError, match="--reference-date"):
        parse_seed_text(text)
    entries = parse_seed_text(text, reference="2024-01-10")
    assert [e.published for e in entries] == [day("2024-01-08"), day("2024-01-03")]


def test_bad_reference_date_and_unreadable_file(tmp_path):
    with pytest.raises(ValueError, match="reference date must look like"):
        parse_seed_text("Story\n\n2 days ago\nText.\n", reference="last tuesday")
    path = tmp_path / "bad.txt"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SeedError, match=r"bad\.txt: cannot read"):
        read_seed_file(path)
