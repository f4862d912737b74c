"""What a source can send to the parser: text XML cannot hold, references it cannot parse,
entries without titles, and structure (depth, entry counts, tags) that costs CPU and memory.
Each test goes through `parse_feed`, or the whole `aggregator fetch` over loopback."""

from __future__ import annotations

import json
from dataclasses import fields
from html.parser import HTMLParser

import nh3
import pytest

from aggregator.models import Entry
from aggregator.parse import feed as feed_module
from aggregator.parse import sanitize
from aggregator.parse.feed import FeedError, parse_feed
from aggregator.parse.prepare import MAX_TAGS
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


# --- text XML cannot hold (issue 11, case 1) -----------------------------------------------------

# Raw C0 controls, a raw U+FFFE, and controls written as references inside escaped HTML (which
# become characters only when the HTML is read), in every field an RSS item has.
RAW_CONTROLS = rss(
    "<item><title>Allies \x1bmeet\x07 partners</title>"
    "<link>https://example.org/news/1\x1b.htm</link>"
    "<guid isPermaLink='false'>tag:example.org,2024:\x0c1</guid>"
    "<description>On 10 January \x1b2024 &amp;#x1b;Allies\uffff met &amp;#1;partners."
    "</description>"
    "<content:encoded>&lt;p&gt;Long \x08text &amp;#x0b;here&lt;/p&gt;</content:encoded>"
    "<author>press@example.org (Press \x1bOffice)</author>"
    "<category>part\x1bnerships</category><category>\x1b</category>"
    "</item>"
    "<item><title>Second</title><link>https://example.org/news/2.htm</link></item>",
    ' xmlns:content="http://purl.org/rss/1.0/modules/content/"',
)


def test_text_xml_cannot_hold_is_removed_from_every_field_of_an_rss_item():
    feed = parse_feed(RAW_CONTROLS, FEED_URL)
    first, second = feed.entries
    for entry in feed.entries:
        assert_xml_safe(entry)
    assert first.title == "Allies meet partners"
    assert first.link == "https://example.org/news/1.htm"
    assert first.guid == "tag:example.org,2024:1"
    assert first.summary_text == "On 10 January 2024 Allies met partners."
    assert first.content_text == "Long text here"
    assert first.categories == ("partnerships",)
    assert first.author and "Press Office" in first.author
    assert second.title == "Second"


def test_text_xml_cannot_hold_is_removed_from_every_field_of_an_atom_entry():
    body = atom(
        "<entry><title type='html'>Allies &amp;#x1b;meet</title><id>urn:x:&#x1b;1</id>"
        "<link href='https://example.org/a&#x7;.htm'/>"
        "<author><name>Press &#x1b;Office</name></author><category term='cy&#x1b;ber'/>"
        "<summary type='html'>&lt;b&gt;Sum&amp;#xfffe;mary&lt;/b&gt;</summary>"
        "<content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>Con&#x1b;tent</div>"
        "</content><updated>2024-01-10T10:00:00Z</updated></entry>"
    )
    (entry,) = parse_feed(body, FEED_URL).entries
    assert_xml_safe(entry)
    assert (entry.title, entry.guid, entry.link) == (
        "Allies meet",
        "urn:x:1",
        "https://example.org/a.htm",
    )
    assert (entry.author, entry.categories) == ("Press Office", ("cyber",))
    assert (entry.summary_text, entry.content_text) == ("Summary", "Content")


# --- character references XML 1.0 cannot hold (issue 11, case 2) --------------------------------

BAD_REFERENCES = rss(
    "<item><title>Surrogate &#xD800; and &#55296;, beyond &#x110000; &#99999999999;</title>"
    "<link>https://example.org/news/1.htm</link>"
    "<description>Controls [&#x1b;&#27;&#0;&#x0;&#xfffe;&#65535;] kept: [&#9;&#233;]"
    "</description></item>"
    "<item><title><![CDATA[Surrogate &#xD800; in CDATA, read as HTML]]></title>"
    "<link>https://example.org/news/2.htm</link></item>"
)


def test_references_to_characters_xml_cannot_hold_do_not_stop_the_feed():
    # feedparser raised UnicodeEncodeError (and ValueError beyond U+10FFFF) for these.
    feed = parse_feed(BAD_REFERENCES, FEED_URL)
    first, second = feed.entries
    assert feed.bozo is None  # the references were neutralised: the document stays well-formed
    assert first.title == "Surrogate \ufffd and \ufffd, beyond \ufffd \ufffd"
    assert first.summary_text == "Controls [] kept: [ é]"
    assert second.title == "Surrogate \ufffd in CDATA, read as HTML"  # as RSS titles are
    for entry in feed.entries:
        assert_xml_safe(entry)
    # In CDATA text that is not HTML, what looks like a reference is text, and stays.
    plain = atom(
        "<entry><title type='text'><![CDATA[Write &#xD800; or &#x1b;]]></title><id>urn:1</id>"
        "<updated>2024-01-10T10:00:00Z</updated></entry>"
    )
    assert [e.title for e in parse_feed(plain, FEED_URL).entries] == ["Write &#xD800; or &#x1b;"]


def test_a_feed_with_a_surrogate_reference_is_fetched_and_stored(project, feed_server):
    body = rss(
        "".join(
            f"<item><title>{title}</title><link>https://example.org/news/{n}.htm</link>"
            f"<description>Story {n}.</description><pubDate>10 Jan. 2024 12:00:00 GMT</pubDate>"
            "</item>"
            for n, title in enumerate(["First", "Broken &#xD800; reference", "Bell &#x7; rung"])
        )
    )
    url = feed_server.route("/feed.rss", body=body)
    project.replace_in_config("https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml", url)
    fetched = project.cli("fetch", check=False)
    assert "Traceback" not in fetched.stderr, fetched.stderr
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert fetched.stdout.startswith("nato-news: 200, "), fetched.stdout
    (row,) = [json.loads(line) for line in project.cli("sources", "--json").stdout.splitlines()]
    assert (row["state"], row["last_status"], row["items"], row["consecutive_errors"]) == (
        "ok",
        200,
        3,
        0,
    )
    titles = {
        json.loads(line)["title"] for line in project.cli("items", "--json").stdout.splitlines()
    }
    assert {"First", "Broken \ufffd reference", "Bell rung"} <= titles


def test_a_date_out_of_range_is_no_date_and_the_entry_is_kept():
    # Year 1 at 00:10 in Brussels is before datetime's range once made UTC.
    body = rss(
        "<item><title>Odd date</title><link>https://example.org/2</link>"
        "<pubDate>January 1, 0001 00:10</pubDate></item>"
    )
    feed = parse_feed(body, FEED_URL)
    assert [(e.title, e.published) for e in feed.entries] == [("Odd date", None)]
    assert feed.unreadable == 0 and feed.note is None


def test_an_entry_that_cannot_be_converted_is_dropped_alone_and_counted(monkeypatch):
    # No input known today breaks the conversion; a converter that fails on one entry stands
    # for the next one found, so that the isolation itself is what is tested.
    categories = feed_module._categories

    def failing_on_the_odd_one(raw):
        if "Odd" in (raw.get("title") or ""):
            raise OverflowError("date value out of range")
        return categories(raw)

    monkeypatch.setattr(feed_module, "_categories", failing_on_the_odd_one)
    body = rss(
        "<item><title>First</title><link>https://example.org/1</link></item>"
        "<item><title>Odd one</title><link>https://example.org/2</link></item>"
        "<item><title>Third</title><link>https://example.org/3</link></item>"
    )
    feed = parse_feed(body, FEED_URL)
    assert [e.title for e in feed.entries] == ["First", "Third"]
    assert feed.unreadable == 1 and feed.dropped == 0
    assert feed.note and "1 entry could not be read" in feed.note and "OverflowError" in feed.note
    assert "\n" not in feed.note


# --- titles --------------------------------------------------------------------------------------


def test_an_entry_without_a_title_gets_one_and_only_empty_entries_are_dropped():
    words = " ".join(f"w{n}" for n in range(1, 15))
    body = rss(
        f"<item><title></title><description>{words}</description></item>"
        "<item><title> \x1b </title><link>https://example.org/only-a-link</link></item>"
        "<item><title>&#x1b;</title><guid isPermaLink='false'>urn:only-a-guid</guid></item>"
        "<item><description>&lt;p&gt;&lt;/p&gt;</description></item>"
    )
    feed = parse_feed(body, FEED_URL)
    assert [e.title for e in feed.entries] == [
        "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12…",
        "https://example.org/only-a-link",
    ]
    html_title = atom(
        "<entry><title type='html'>&lt;b&gt; &lt;/b&gt;</title><id>urn:1</id>"
        "<summary>A short summary</summary><updated>2024-01-10T10:00:00Z</updated></entry>"
    )
    assert [e.title for e in parse_feed(html_title, FEED_URL).entries] == ["A short summary"]


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


def test_text_full_of_ampersands_is_sanitized_whole_and_at_once():
    # nh3 escapes "&" and U+00A0 in quadratic time per text node: 2,000,000 took minutes.
    import subprocess
    import sys

    script = (
        "from aggregator.parse.sanitize import sanitize_html\n"
        "print(sanitize_html('x&\\u00a0' * 2_000_000) == 'x&amp;&nbsp;' * 2_000_000)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )  # a hang guard: it takes a second or two
    assert done.stdout.strip() == "True", done.stderr


def test_an_attribute_value_longer_than_any_link_is_left_out():
    near, far = (
        "https://example.org/?" + "a=1&amp;" * 400,
        "https://example.org/?" + "a=1&amp;" * 600,
    )
    fragment = f'<a href="{near}">near</a> <a href="{far}">far</a>' + " filler" * 300
    cleaned = sanitize_html(fragment)
    assert cleaned.startswith(f'<a href="{near}" rel="noopener noreferrer nofollow">near</a>')
    assert '<a rel="noopener noreferrer nofollow">far</a>' in cleaned


# --- entries per document (issue 11, case 3b) ----------------------------------------------------


def rss20(count: int) -> bytes:
    return rss(
        "".join(
            f"<item><title>Story {n}</title><link>https://example.org/{n}</link>"
            f"<description><![CDATA[<item>not an item {n}</item>]]></description></item>"
            for n in range(count)
        )
    )


def atom_prefixed(count: int) -> bytes:
    entries = "".join(
        f"<a:entry><a:title>Story {n}</a:title><a:id>urn:{n}</a:id>"
        f"<a:link href='https://example.org/{n}'/><a:updated>2024-01-10T10:00:00Z</a:updated>"
        "</a:entry>"
        for n in range(count)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><a:feed xmlns:a="http://www.w3.org/2005/Atom">'
        f"<a:title>T</a:title><a:id>urn:feed</a:id>{entries}</a:feed>"
    ).encode()


def rss10(count: int) -> bytes:
    about = [f"https://example.org/{n}" for n in range(count)]
    seq = "".join(f'<rdf:li rdf:resource="{a}"/>' for a in about)
    items = "".join(
        f'<item rdf:about="{a}"><title>Story {n}</title><link>{a}</link></item>'
        for n, a in enumerate(about)
    )
    return (
        '<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
        ' xmlns="http://purl.org/rss/1.0/"><channel rdf:about="https://example.org/">'
        "<title>T</title><link>https://example.org/</link><description>d</description>"
        f"<items><rdf:Seq>{seq}</rdf:Seq></items></channel>{items}"
        '<textinput rdf:about="https://example.org/s"><title>Search</title>'
        "<link>https://example.org/s</link><name>q</name><description>d</description>"
        "</textinput></rdf:RDF>"
    ).encode()


@pytest.mark.parametrize("document", [rss20, atom_prefixed, rss10])
def test_entries_over_max_entries_are_dropped_before_parsing(document):
    feed = parse_feed(document(12), FEED_URL, max_entries=5)
    assert [e.title for e in feed.entries] == [f"Story {n}" for n in range(5)]
    assert feed.dropped == 7
    assert feed.note == "7 entries over fetch.max_entries (5) were dropped"
    assert feed.bozo is None  # the cut document is still well-formed
    whole = parse_feed(document(12), FEED_URL, max_entries=12)
    assert (len(whole.entries), whole.dropped, whole.note) == (12, 0, None)


def test_nested_entries_count_against_the_cap_too():
    # feedparser makes an entry of every <item> start tag, nested or not.
    body = rss("".join(f"<item><title>Story {n}</title>" for n in range(12)) + "</item>" * 12)
    feed = parse_feed(body, FEED_URL, max_entries=5)
    assert [e.title for e in feed.entries] == [f"Story {n}" for n in range(5)]
    assert feed.dropped == 7


# --- structure feedparser is slow on -------------------------------------------------------------


def test_entries_from_the_one_that_exceeds_the_tag_budget_on_are_dropped_before_parsing():
    def item(n: int, filler: str = "") -> str:
        return f"<item><title>Story {n}</title><link>https://example.org/{n}</link>{filler}</item>"

    heavy = item(3, "<x:a/>" * MAX_TAGS)
    body = rss("".join(item(n) for n in range(3)) + heavy + item(4) + item(5), ' xmlns:x="urn:x"')
    feed = parse_feed(body, FEED_URL)
    assert [e.title for e in feed.entries] == ["Story 0", "Story 1", "Story 2"]
    assert feed.dropped == 3
    assert feed.note == f"3 entries were dropped: the document has more than {MAX_TAGS:,} tags"


@pytest.mark.parametrize(
    ("what", "body", "reason"),
    [
        (
            "tags outside any entry",
            rss("<x:a/>" * (MAX_TAGS + 1) + "<item><title>A</title></item>", ' xmlns:x="urn:x"'),
            r"refused: more than [\d,]+ tags outside the entries",
        ),
        (
            "an element with thousands of attributes",
            rss(
                "<item><title>A</title><x:a "
                + " ".join(f'a{n}="1"' for n in range(5000))
                + "/></item>",
                ' xmlns:x="urn:x"',
            ),
            r"refused: an element has more than [\d,]+ attributes",
        ),
        (
            "thousands of namespace prefixes",
            rss(
                "<item><title>A</title>"
                + "".join(f'<p{n}:a xmlns:p{n}="urn:{n}"/>' for n in range(5000))
                + "</item>"
            ),
            r"refused: the document declares more than [\d,]+ XML namespace prefixes",
        ),
    ],
)
def test_structure_that_costs_quadratic_time_is_refused(what, body, reason):
    with pytest.raises(FeedError, match=reason):
        parse_feed(body, FEED_URL)


# --- whatever else a source sends ----------------------------------------------------------------


def test_an_error_inside_feedparser_or_a_codec_is_a_one_line_feed_error():
    # UTF-7 can spell a lone surrogate, which feedparser's re-encoding to UTF-8 raised on.
    body = b'<?xml version="1.0"?><rss version="2.0"><channel><title>+2AA-</title></channel></rss>'
    with pytest.raises(FeedError, match=r"^cannot read the document: UnicodeEncodeError: ") as e:
        parse_feed(body, FEED_URL, {"content-type": "application/xml; charset=utf-7"})
    assert "\n" not in str(e.value)


def test_links_that_cannot_be_resolved_are_left_out_not_the_entry():
    body = rss(
        "<item><title>Odd link</title><link>//[oops/</link>"
        "<description>&lt;a href='//[x/y'&gt;more&lt;/a&gt;</description></item>"
    )
    (entry,) = parse_feed(body, FEED_URL).entries
    assert (entry.title, entry.link, entry.summary_text) == ("Odd link", None, "more")


# --- feedparser's categories in linear time ------------------------------------------------------

TAGGED = rss(
    "<item><title>a</title><category>x</category><category>x</category>"
    "<category domain='d'>x</category><category domain='d'>y</category>"
    "<category domain='d'>x</category><category domain='d'></category><category/>"
    "<dc:subject>x</dc:subject><media:category scheme='s'>m</media:category>"
    "<media:keywords>k1, k2,k1</media:keywords><itunes:keywords>k2,k3</itunes:keywords>"
    "<itunes:category text='Tech'><itunes:category text='Gadgets'/></itunes:category></item>"
    "<item><title>b</title><category>x</category><category domain='e'>x</category></item>",
    ' xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:media="http://search.yahoo.com/mrss/"'
    ' xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"',
)
TAGGED_ATOM = atom(
    "<entry><title>a</title><id>urn:1</id><updated>2024-01-10T10:00:00Z</updated>"
    "<category term='x'/><category term='x' scheme='s'/><category term='x' label='X'/>"
    "<category term='x'/><category scheme='s'/><category term='y' scheme='s' label='Y'/></entry>"
)


@pytest.mark.parametrize("body", [TAGGED, TAGGED_ATOM], ids=["rss", "atom"])
def test_tags_are_what_feedparser_itself_makes(body, monkeypatch):
    import io

    import feedparser
    from feedparser.mixin import _FeedParserMixin

    def tags() -> list:
        parsed = feedparser.parse(io.BytesIO(body))
        return [e.get("tags") for e in parsed.entries]

    feed_module._feedparser()  # the first parse replaces feedparser's _add_tag
    assert _FeedParserMixin._add_tag is feed_module._add_tag_once
    ours = tags()
    monkeypatch.setattr(_FeedParserMixin, "_add_tag", feed_module.FEEDPARSER_OWN["_add_tag"])
    assert ours == tags()
    assert any(len(t) > 3 for t in ours)


def test_an_item_with_tens_of_thousands_of_categories_is_read_at_once():
    # feedparser scanned an entry's tags for duplicates once per tag: 100,000 took two minutes.
    import subprocess
    import sys

    script = (
        "from aggregator.parse.feed import parse_feed\n"
        "cats = ''.join(f'<category>c{n}</category>' for n in range(100_000))\n"
        "body = ('<rss version=\"2.0\"><channel><title>T</title><item><title>A</title>'"
        " + cats + '</item></channel></rss>').encode()\n"
        "print(len(parse_feed(body, 'https://example.org/').entries[0].categories))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )  # a hang guard: it takes a second or two, unloaded
    assert done.stdout.strip() == "100000", done.stderr
