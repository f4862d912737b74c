"""Article extraction on NATO-shaped pages (tests/fixtures/articles, synthetic) with the
real trafilatura and the project's sanitizer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.capture.extract import MIN_TEXT_CHARS, extract

ARTICLES = Path(__file__).resolve().parent / "fixtures" / "articles"
BASE = "https://www.nato.int/cps/en/natohq/"

# Text that every fixture page carries around the article and no article body contains.
CHROME = [
    "Skip to main content",
    "Declassified archives",
    "Speeches & transcripts",
    "Search NATO",
    "Français",
    "Share this",
    "LinkedIn",
    "Last updated",
    "Related news",
    "Defence Ministers review progress on burden sharing",
    "Partners attend cyber defence course",
    "Related topics",
    "Privacy policy",
    "Site map",
    "Follow NATO",
    "Boulevard Léopold III",
    "We use cookies",
    "dataLayer",
]

CASES = {
    "news_144098.htm": (
        "Leaders agree to step up fight against terrorism and share the burden fairly",
        datetime(2017, 5, 25, 12, tzinfo=UTC),
        None,
        ["NATO leaders met in Brussels on Thursday", "interlocking wings", "keep our people safe"],
    ),
    "news_208562.htm": (
        "Allies and Finland review a deepening partnership",
        datetime(2022, 11, 9, 12, tzinfo=UTC),
        None,
        ["Enhanced Opportunities Partnership", "winter warfare training", "joint statement"],
    ),
    "news_216004.htm": (
        "Exercise Baltic Lantern tests mine clearance with partners",
        datetime(2023, 6, 23, 12, tzinfo=UTC),
        "NATO Maritime Command Public Affairs",
        ["Gulf of Riga", "Captain Aurelia Vandersteen", "Partners"],
    ),
    "news_222871.htm": (
        "NATO-Ukraine Council meets at the level of defence ministers",
        datetime(2024, 2, 15, 12, tzinfo=UTC),
        None,
        ["Comprehensive Assistance Package", "Building long-term interoperability"],
    ),
}


def page(name: str) -> bytes:
    return (ARTICLES / name).read_bytes()


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_article_is_its_body_and_metadata_without_the_chrome(name):
    title, published, author, body_phrases = CASES[name]
    result = extract(page(name), BASE + name)
    assert result.verdict == "article" and result.is_article and result.reason is None
    assert (result.title, result.published, result.author) == (title, published, author)
    for phrase in body_phrases:
        assert phrase in result.text
        assert phrase in result.html
    for chrome in CHROME:
        assert chrome not in result.text, chrome
        assert chrome not in result.html, chrome


def test_the_html_is_sanitized_and_links_are_absolute():
    result = extract(page("news_208562.htm"), BASE + "news_208562.htm")
    assert (
        '<a href="https://www.nato.int/cps/en/natohq/official_texts_208100.htm" '
        'rel="noopener noreferrer nofollow">joint statement</a>'
    ) in result.html
    assert "<li>closer cooperation on cyber defence and hybrid threats;</li>" in result.html
    assert "<html" not in result.html and "<body" not in result.html


def test_script_and_handlers_inside_the_article_do_not_survive():
    hostile = page("news_144098.htm").replace(
        b"<p>Allies agreed",
        b'<script>alert("x")</script><p onclick="steal()">Allies agreed',
    )
    result = extract(hostile, BASE + "news_144098.htm")
    assert result.is_article
    assert "Allies agreed that NATO will become a full member" in result.text
    for bad in ("<script", "alert", "onclick", "steal"):
        assert bad not in result.html
        assert bad not in result.text


def test_a_page_of_chrome_only_is_boilerplate_and_carries_no_text():
    result = extract(page("gallery_145000.htm"), BASE + "gallery_145000.htm")
    assert result.verdict == "boilerplate"
    assert not result.is_article
    assert "navigation, not an article" in result.reason
    assert (result.text, result.html) == ("", "")
    assert result.title == "Photo gallery"  # known, so the record can say what the page was


def test_a_nearly_empty_page_is_too_little():
    result = extract(page("nearly_empty.htm"), BASE + "nearly_empty.htm")
    assert result.verdict == "too little"
    assert result.reason.endswith(f"(an article has {MIN_TEXT_CHARS})")
    assert (result.text, result.html) == ("", "")


@pytest.mark.parametrize(
    "body",
    [b"", b"\x00\xff\xfe garbage \x00", b"%PDF-1.7\n" + bytes(range(256)) * 40, b"<" * 100_000],
)
def test_what_is_no_page_at_all_is_too_little_and_never_raises(body):
    result = extract(body, BASE + "x.htm")
    assert result.verdict == "too little"
    assert result.text == ""


def test_control_characters_in_the_title_are_dropped():
    hostile = page("news_222871.htm").replace(
        b"<h1>NATO-Ukraine Council", b"<h1>NATO-\x1bUkraine\x07 Council"
    )
    result = extract(hostile, BASE + "news_222871.htm")
    assert result.title == "NATO-Ukraine Council meets at the level of defence ministers"
