"""What a source can send to the parser: text XML cannot hold, references it cannot parse,
entries without titles, and structure (depth, entry counts, tags) that costs CPU and memory.
Each test goes through `parse_feed`, or the whole `aggregator fetch` over loopback."""

from __future__ import annotations

from dataclasses import fields
from html.parser import HTMLParser

import nh3
import pytest

from aggregator.models import Entry
from aggregator.parse import sanitize
from aggregator.parse.feed import parse_feed
from aggregator.parse.sanitize import MAX_DEPTH, html_to_text, sanitize_html

FEED_URL = "https://example.org/feed.xml"


def rss(items: str, namespaces: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"{namespaces}><channel>'
        f"<title>T</title><link>https://example.org/</link>{items}</channel></rss>"
    ).encode()


def atom(entries: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>T</title><id>urn:feed</id><updated>2024-01-10T10:00:00Z</updated>{entries}</feed>"
    ).encode()


def not_xml(text: str) -> list[str]:
    """The characters of `text` outside XML 1.0's Char production."""
    return [
        c
        for c in text
        if not (
            c in "\t\n\r"
            or "\x20" <= c <= "\ud7ff"
            or "\ue000" <= c <= "\ufffd"
            or "\U00010000" <= c <= "\U0010ffff"
        )
    ]


def texts(entry: Entry) -> dict[str, str]:
    values = {f.name: getattr(entry, f.name) for f in fields(entry)}
    found = {k: v for k, v in values.items() if isinstance(v, str)}
    found.update({f"category {i}": c for i, c in enumerate(entry.categories)})
    return found


def assert_xml_safe(entry: Entry) -> None:
    bad = {name: not_xml(value) for name, value in texts(entry).items() if not_xml(value)}
    assert not bad, bad
    assert entry.title.strip()


# --- depth (issue 11, case 3a) -------------------------------------------------------------------


VOID = frozenset({"br", "img", "hr", "wbr", "area", "col", "embed", "input", "source", "track"})


class _Depth(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.depth = self.deepest = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in VOID:
            self.depth += 1
            self.deepest = max(self.deepest, self.depth)

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID:
            self.depth -= 1


def depth_of(fragment: str) -> int:
    parser = _Depth()
    parser.feed(fragment)
    parser.close()
    assert parser.depth == 0, "sanitized output is well-nested"
    return parser.deepest


LEVELS = 3000  # deep enough to show the limit; 100,000 levels cost a minute of CPU without it


def nested(levels: int = LEVELS) -> str:
    """Block quotes (which the sanitizer keeps) nested in divs (which it drops), a word each."""
    opening = "".join(f"<div><blockquote>w{n} " for n in range(levels))
    return opening + "</blockquote></div>" * levels


def nested_documents() -> dict[str, bytes]:
    inner = nested()
    escaped = inner.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    item = "<item><title>Deep</title><link>https://example.org/deep</link>{}</item>"
    return {
        "escaped HTML in an RSS description": rss(
            item.format(f"<description>{escaped}</description>")
        ),
        "CDATA in an RSS description": rss(
            item.format(f"<description><![CDATA[{inner}]]></description>")
        ),
        "Atom xhtml content": atom(
            "<entry><title>Deep</title><id>urn:deep</id><updated>2024-01-10T10:00:00Z</updated>"
            "<content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>"
            f"{inner}</div></content></entry>"
        ),
    }


@pytest.mark.parametrize("shape", list(nested_documents()))
def test_deeply_nested_html_is_flattened_below_the_depth_limit_and_keeps_its_text(shape):
    (entry,) = parse_feed(nested_documents()[shape], FEED_URL).entries
    html = entry.content_html or entry.summary_html
    # The first levels keep their structure (half of them divs, which the sanitizer drops).
    assert MAX_DEPTH // 2 <= depth_of(html) <= MAX_DEPTH
    text = entry.content_text or entry.summary_text
    assert text.split() == [f"w{n}" for n in range(LEVELS)]


def test_the_sanitizer_and_the_text_renderer_bound_depth_themselves():
    fragment = "<ul><li>" * LEVELS + "bottom" + "</li></ul>" * LEVELS
    assert depth_of(sanitize_html(fragment)) == MAX_DEPTH
    assert html_to_text(fragment) == "bottom"
    # Depth the HTML tree builder would make from tags it closes itself, or never closes.
    for shape in ("<blockquote>", "<div><table>", "<div/><blockquote/>", "<ul><li><p>x"):
        cleaned = sanitize_html(shape * LEVELS)
        assert depth_of(cleaned) <= MAX_DEPTH + 2, shape


def test_markup_that_is_not_too_deep_sanitizes_as_before():
    # Long enough (more than MAX_DEPTH tags) to go through the depth limit.
    paragraphs = "".join(
        f'<p class="x">Para {n} <a href="https://example.org/{n}?a=1&amp;b=2" onclick="x()">'
        f"link</a><br/><img src='/i/{n}.png' alt=\"a &quot;b&quot;\"><!-- c --></p>"
        for n in range(150)
    )
    sloppy = "<ul>" + "<li>item <b>bold</b>" * 150 + "</ul>" + "<p>a<p>b" * 150 + "<table><tr><td>c"
    for fragment in (paragraphs, sloppy):
        assert fragment.count("<") > MAX_DEPTH
        unlimited = nh3.clean(
            fragment,
            tags=sanitize.ALLOWED_TAGS,
            attributes=sanitize.ALLOWED_ATTRIBUTES,
            url_schemes=sanitize.URL_SCHEMES,
            link_rel="noopener noreferrer nofollow",
            strip_comments=True,
        ).strip()
        assert sanitize_html(fragment) == unlimited
