"""An article page's main text, title, author and date, with trafilatura.

Pure: bytes in, an `Extracted` value out, nothing raises for what a server sent. The body
trafilatura finds is rendered to HTML and passed through the project's sanitizer (the same
allowlist as feed content), and the plain text is read from that sanitized HTML, so the
text and the HTML always say the same thing.

A page whose extraction yields little, or only navigation-like short lines (trafilatura
falls back to the whole page when it finds no article), is not an article: its verdict
says which and why, and it carries no text, so chrome is never stored as an article.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

import trafilatura
from trafilatura.htmlprocessing import build_html_output

from aggregator.parse.dates import at_noon
from aggregator.parse.sanitize import sanitize_html, sanitized_html_to_text
from aggregator.xmlchars import xml_safe

Verdict = Literal["article", "boilerplate", "too little"]

MIN_TEXT_CHARS = 200  # less main text than this is no article (a "page moved" notice)
# Prose is what articles are made of and navigation is not: lines of a sentence or more.
SENTENCE_WORDS = 8
MIN_PROSE_CHARS = 200  # main text with less prose than this is chrome


@dataclass(frozen=True, slots=True)
class Extracted:
    verdict: Verdict
    reason: str | None = None  # why a page is not an article; None for an article
    text: str = ""  # plain text of the article body, one block a line; "" unless an article
    html: str = ""  # the article body, sanitized; "" unless an article
    title: str | None = None
    author: str | None = None
    published: datetime | None = None  # aware UTC; a date known to the day is 12:00 UTC

    @property
    def is_article(self) -> bool:
        return self.verdict == "article"


def extract(html: bytes, url: str) -> Extracted:
    """The article in `html` (a page fetched from `url`, which resolves its links)."""
    document = _extract_document(html, url)
    if document is None or document.body is None:
        return Extracted("too little", "no text found on the page")
    title, author = _one_line(document.title), _one_line(document.author)
    published = _published(document.date)
    body = sanitize_html(build_html_output(document))
    text = sanitized_html_to_text(body)
    reason = _not_an_article(text)
    if reason:
        verdict, why = reason
        return Extracted(verdict, why, title=title, author=author, published=published)
    return Extracted("article", None, text, body, title, author, published)


def _extract_document(html: bytes, url: str):
    try:
        return trafilatura.bare_extraction(
            html,
            url=url,
            with_metadata=True,
            include_formatting=True,
            include_links=True,
            include_images=True,
            include_tables=True,
            include_comments=False,
        )
    except (ValueError, TypeError, UnicodeError, RecursionError):
        # lxml and htmldate raise these on input no page should contain; trafilatura
        # catches most, and this page then simply has no article.
        return None


def _not_an_article(text: str) -> tuple[Verdict, str] | None:
    if len(text) < MIN_TEXT_CHARS:
        return (
            "too little",
            f"{len(text)} characters of main text (an article has {MIN_TEXT_CHARS})",
        )
    prose = sum(len(line) for line in text.splitlines() if len(line.split()) >= SENTENCE_WORDS)
    if prose < MIN_PROSE_CHARS:
        return "boilerplate", (
            f"{len(text)} characters of text but only {prose} in lines of "
            f"{SENTENCE_WORDS} words or more: navigation, not an article"
        )
    return None


def _one_line(value: str | None) -> str | None:
    if not value:
        return None
    return " ".join(xml_safe(value).split()) or None


def _published(value: str | None) -> datetime | None:
    """trafilatura (htmldate) gives the original publication day as YYYY-MM-DD."""
    if not value:
        return None
    try:
        return at_noon(date.fromisoformat(value[:10]))
    except ValueError:
        return None
