"""The seed text formats: articles and listing captures, and the dates in them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from aggregator.models import Origin, Precision
from aggregator.parse.seed import SeedError, parse_seed_text, read_seed_file, seed_files
from aggregator.store import Archive
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
    with pytest.raises(SeedError, match="no publication date"):
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
    assert entries[0].content_text == entries[0].summary_text  # short: the whole text


def test_listing_with_a_given_capture_time_has_minute_precision():
    entries = parse_seed_text(LISTING, reference="2024-03-15T18:30:00Z")
    assert entries[3].published == datetime(2024, 3, 15, 13, 10, tzinfo=UTC)
    assert entries[3].precision is Precision.MINUTE
    assert entries[0].published == day("2024-03-12")


def test_listing_with_only_ages_needs_a_reference_date():
    text = "First story\n\n2 days ago\nNo date here.\n\nSecond story\n\n1 week ago\nNone either.\n"
    with pytest.raises(SeedError, match="--reference-date"):
        parse_seed_text(text)
    entries = parse_seed_text(text, reference="2024-01-10")
    assert [e.published for e in entries] == [day("2024-01-08"), day("2024-01-03")]


def test_bad_reference_date_and_unreadable_file(tmp_path):
    with pytest.raises(SeedError, match="reference date must look like"):
        parse_seed_text("Story\n\n2 days ago\nText.\n", reference="last tuesday")
    path = tmp_path / "bad.txt"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SeedError, match=r"bad\.txt: cannot read"):
        read_seed_file(path)


# --- paragraphs and the whole text ----------------------------------------------------------

BODY_LINES = [
    "On Monday, partners from across the globe met at NATO Headquarters " * 3,
    "A second paragraph, on its own line and no blank line before it. " * 3,
    "A third one. " * 12,
]


def test_paragraphs_separated_by_single_newlines_are_paragraphs():
    [entry] = parse_seed_text("A title\n  • 04 Mar. 2024 -\n\n" + "\n".join(BODY_LINES) + "\n")
    assert entry.content_text.split("\n\n") == [" ".join(line.split()) for line in BODY_LINES]
    assert entry.content_html.count("<p>") == 3
    assert entry.summary_text == " ".join(BODY_LINES[0].split())


def test_paragraphs_wrapped_at_a_fixed_width_are_joined_again():
    import textwrap

    wrapped = "\n\n".join(textwrap.fill(line, 72) for line in BODY_LINES)
    [entry] = parse_seed_text("A title\n  • 04 Mar. 2024 -\n\n" + wrapped + "\n")
    assert entry.content_text.split("\n\n") == [" ".join(line.split()) for line in BODY_LINES]


def test_a_long_summary_is_shortened_for_display_and_kept_whole_as_content():
    long_line = "Partners met in Brussels on 9 November 2022 to talk. " * 30
    [entry] = parse_seed_text(f"Story\n\n2 days ago\n{long_line}\n", reference="2022-11-11")
    assert entry.summary_text.endswith("…") and len(entry.summary_text) <= 601
    assert entry.content_text == " ".join(long_line.split())
    assert entry.content_html == f"<p>{entry.content_text}</p>"


def test_seed_text_is_made_xml_safe_where_entries_are_made():
    [entry] = parse_seed_text("A \x1btitle\n  • 04 Mar. 2024 -\n\nBody \x00with\ufffe controls.\n")
    assert entry.title == "A title"
    assert entry.content_text == "Body with controls." == entry.summary_text


def stored_seeds(project) -> list:
    with Archive(project.database) as archive:
        return archive.list_items(origin=Origin.SEED)


def test_cli_search_finds_words_from_the_end_of_a_long_listing_item(project):
    project.cli("import-seeds")
    found = project.cli("search", '"Mission to NATO"', "--json").stdout.splitlines()
    [item] = [json.loads(line) for line in found]
    assert item["title"].startswith("“NATO fully respects Serbia’s policy of military neutrality")


def test_cli_import_keeps_the_single_newline_paragraphs_of_seed_002(project):
    project.cli("import-seeds")
    lines = (SEEDS / "002_72bea906deca7b67.txt").read_text(encoding="utf-8").splitlines()
    [item] = [i for i in stored_seeds(project) if i.title == lines[0]]
    paragraphs = [" ".join(line.split()) for line in lines[1:] if line.strip()]
    assert len(paragraphs) > 5
    assert item.content_text.split("\n\n") == paragraphs
    assert item.content_html.count("<p>") == len(paragraphs)
    assert item.summary_text == paragraphs[0]


def test_cli_import_stores_the_whole_text_of_every_seed_file(project):
    project.cli("import-seeds")
    stored = "\n".join(f"{i.title}\n{i.content_text}" for i in stored_seeds(project))
    for path in seed_files(SEEDS):
        # Every line of prose (titles, dates, ages and page chrome are short) is stored.
        prose = [" ".join(line.split()) for line in path.read_text(encoding="utf-8").splitlines()]
        prose = [line for line in prose if len(line) > 80]
        assert prose and all(line in stored for line in prose), path.name
