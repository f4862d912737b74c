"""Feed bytes -> entries: dates, sanitizing, bad feeds and hostile XML."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime

import pytest

from aggregator.models import Precision
from aggregator.parse import feed as feed_module
from aggregator.parse import prepare
from aggregator.parse.feed import FeedError, nato_date, parse_feed
from tests.conftest import FIXTURES

NATO_URL = "https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def rss(items: str, head: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{head}<rss version="2.0"><channel>'
        f"<title>T</title><link>https://example.org/</link>{items}</channel></rss>"
    ).encode()


# --- NATO's feed -------------------------------------------------------------------------------


def test_the_nato_feed_becomes_typed_entries_with_utc_dates():
    feed = parse_feed(fixture("nato-news-2022-11-26.rss"), NATO_URL, {"content-type": "text/xml"})
    assert (feed.title, feed.version, feed.bozo, len(feed.entries)) == (
        "NATO Latest News",
        "rss20",
        None,  # text/xml without charset is not reported: every server does it
        10,
    )
    first = feed.entries[0]
    assert first.title == "Partners join Allies for a cyber defence workshop in Tallinn"
    assert first.link == "https://www.nato.int/cps/en/natohq/news_209611.htm?selectedLocale=en"
    assert first.guid is None
    assert first.published == datetime(2022, 11, 24, 12, 0, tzinfo=UTC)
    assert first.published.tzinfo is UTC
    assert first.precision is Precision.DAY  # NATO's "24 Nov. 2022 12:00:00 GMT" is a day
    assert not first.date_inferred
    assert first.summary_text.startswith("On 24 November 2022, cyber experts")
    serbia = feed.entries[6]
    assert serbia.title.startswith("“NATO fully respects Serbia’s policy")
    assert "Vučić" in serbia.summary_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("09 Nov. 2022 12:00:00 GMT", datetime(2022, 11, 9, 12, 0, tzinfo=UTC)),
        ("9 Sept. 2022", datetime(2022, 9, 9, 12, 0, tzinfo=UTC)),
        ("24 May. 2023 13:05 GMT", datetime(2023, 5, 24, 13, 5, tzinfo=UTC)),
        ("19 Jul. 2021 09:36", datetime(2021, 7, 19, 7, 36, tzinfo=UTC)),  # Brussels time
        ("soon", None),
    ],
)
def test_nato_dates_that_feedparser_cannot_read_are_read(text, expected):
    assert nato_date(text) == expected


def test_a_nato_date_feedparser_fails_on_is_read_by_our_fallback():
    body = rss("<item><title>A</title><link>https://x.org/a</link>"
               "<pubDate>09 Sept. 2022</pubDate></item>")  # fmt: skip
    (entry,) = parse_feed(body, "https://x.org/feed").entries
    assert entry.published == datetime(2022, 9, 9, 12, 0, tzinfo=UTC)


def test_dates_in_other_zones_become_utc_and_undated_entries_are_marked():
    body = rss(
        "<item><title>Zoned</title><link>https://x.org/1</link>"
        "<pubDate>Thu, 10 Oct 2024 09:30:00 +0200</pubDate></item>"
        "<item><title>Undated</title><link>https://x.org/2</link></item>"
    )
    zoned, undated = parse_feed(body, "https://x.org/feed").entries
    assert zoned.published == datetime(2024, 10, 10, 7, 30, tzinfo=UTC)
    assert zoned.precision is Precision.SECOND
    assert undated.published is None and undated.date_inferred


# --- big documents, read in parts ---------------------------------------------------------------

ITEMS = "".join(
    f"<item><title>Item {n}</title><link>/news_{n}.htm</link><guid>g{n}</guid>"
    f"<description>&lt;p&gt;Text {n} &lt;a href='/x{n}'&gt;link&lt;/a&gt;&lt;/p&gt;</description>"
    f"<category>c{n % 3}</category><pubDate>0{1 + n % 9} Nov. 2022 12:00:00 GMT</pubDate></item>"
    for n in range(9)
)
WITH_ENTRIES = prepare.with_entries
IN_PARTS = {
    "nato": fixture("nato-news-2022-11-26.rss"),
    "rss": rss(ITEMS),
    "atom": (
        '<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://example.org/a/"><title>A</title>'
        + "".join(
            f'<entry xml:base="/b{n}/"><title type="html">&lt;b&gt;E{n}&lt;/b&gt;</title>'
            f'<link href="x{n}.htm"/><id>urn:{n}</id><updated>2024-01-0{1 + n}T10:00:00Z</updated>'
            f'<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><a href="r{n}">r</a>'
            "</div></content></entry>"
            for n in range(7)
        )
        + "<rights>R</rights></feed>"
    ).encode(),
    "a channel title after the items": rss(ITEMS + "<title>Late</title>"),
    "a malformed item": rss(ITEMS.replace("</title></item>", "</titl></item>", 1)),
    "over max_entries": rss(ITEMS * 3),
}
# Documents whose entries read otherwise apart (prepare.entries_stand_alone): never split.
PODCAST_ITEMS = "".join(
    f"<item><title>E{n}</title><link>/e{n}.htm</link><description>Desc {n}.</description>"
    f"<itunes:summary>Sum {n}.</itunes:summary></item>"
    for n in range(5)
)
ITUNES = ' xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"'
UNKNOWN_NS = "http://example.com/unknown-ns"
READ_WHOLE = {
    "xml:base on the entries": IN_PARTS["atom"],
    "a podcast head (itunes:summary, then description)": rss(PODCAST_ITEMS, head="")
    .replace(b'<rss version="2.0">', f'<rss version="2.0"{ITUNES}>'.encode())
    .replace(
        b"<title>T</title>",
        b"<title>T</title><itunes:summary>S</itunes:summary><description>D</description>",
    ),
    "a namespace declared in one entry, used in a later one": rss(
        f'<item><title>S0</title><link>/0.htm</link><dc:marker xmlns:dc="{UNKNOWN_NS}"/></item>'
        + "".join(f"<item><title>S{n}</title><link>/{n}.htm</link></item>" for n in range(1, 4))
        + f'<item><title>S4</title><link>/4.htm</link><w:creator xmlns:w="{UNKNOWN_NS}">'
        "Alice</w:creator></item>"
    ),
    "content in the head": rss(PODCAST_ITEMS)
    .replace(b"<title>T</title>", b"<title>T</title><content:encoded>C</content:encoded>")
    .replace(
        b'<rss version="2.0">',
        b'<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">',
    ),
    "channel elements between the items": rss(
        PODCAST_ITEMS.replace("</item><item>", "</item><description>D</description><item>", 1)
    ).replace(b'<rss version="2.0">', f'<rss version="2.0"{ITUNES}>'.encode()),
}


def _plain(items: str) -> bytes:
    return rss(items).replace(b"<title>T</title>", b"<title>T</title><description>C</description>")


def _atom(*entries: str) -> bytes:
    head = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>T</title><id>urn:f</id><updated>2024-01-01T00:00:00Z</updated>"
    )
    return (head + "".join(entries) + "</feed>").encode()


def _atom_entry(n: int, inside: str) -> str:
    return (
        f'<entry><id>urn:{n}</id><title>S{n}</title><link href="https://www.nato.int/{n}.htm"/>'
        f"<updated>2024-01-10T12:00:00Z</updated>{inside}</entry>"
    )


DETAILS = "<p>Intro</p><details><summary>More</summary><p>Hidden</p></details>"
BOLD_TITLE = "<item><title>&lt;b&gt;Bold&lt;/b&gt; news</title><link>/2.htm</link></item>"
INLINE = (
    '<item><title>S2</title><description>Text <b>bold</b> and <a href="/x">a</a></description>'
    "</item>"
)
# Plain documents (read in parts) where feedparser once left state from one entry to the next.
ALONE = {
    "<details><summary> written unescaped, then a title that looks like HTML": _plain(
        f"<item><title>S1</title><description>{DETAILS}</description></item>{BOLD_TITLE}"
    ),
    "a pasted <html><body>, then inline markup": _plain(
        "<item><title>S1</title><description><html><body><p>Page</p></body></html>"
        f"</description></item>{INLINE}"
    ),
    "Atom: <summary> inside an xhtml summary, then a text summary": _atom(
        _atom_entry(1, f'<summary type="xhtml"><div>{DETAILS}</div></summary>'),
        _atom_entry(
            2,
            '<summary type="text">if a &lt; b</summary><content type="xhtml">'
            "<div><p>Para <em>one</em></p></div></content>",
        ),
    ),
}


@pytest.mark.parametrize("body", ALONE.values(), ids=ALONE.keys())
def test_each_entry_of_a_plain_document_reads_alone_as_among_the_others(body, monkeypatch):
    whole = parse_feed(body, NATO_URL)
    monkeypatch.setattr(feed_module, "PART_ENTRIES", 1)
    split = parse_feed(body, NATO_URL)
    assert split.entry_digests is not None  # plain: it was read in parts
    assert split.entries == whole.entries


def test_an_rss_element_inside_an_atom_entry_changes_nothing_after_it():
    bold = _atom_entry(2, "<summary>D2</summary>").replace(
        "S2</title>", "&lt;b&gt;B&lt;/b&gt;</title>"
    )
    alone = parse_feed(_atom(bold), NATO_URL)
    after = parse_feed(_atom(_atom_entry(1, "<summary>D1</summary><rss/>"), bold), NATO_URL)
    assert after.entries[1] == alone.entries[0] and after.version == "atom10"


@pytest.mark.parametrize("body", IN_PARTS.values(), ids=IN_PARTS.keys())
def test_a_document_read_in_parts_gives_what_reading_it_whole_gives(body, monkeypatch):
    whole = parse_feed(body, NATO_URL, max_entries=20)
    split = []
    monkeypatch.setattr(feed_module, "PART_ENTRIES", 2)
    monkeypatch.setattr(prepare, "with_entries", lambda *a: split.append(1) or WITH_ENTRIES(*a))
    assert parse_feed(body, NATO_URL, max_entries=20) == whole
    if body is not IN_PARTS["atom"]:
        assert len(split) > 1  # it was split, then read whole when a part was not clean


@pytest.mark.parametrize("body", READ_WHOLE.values(), ids=READ_WHOLE.keys())
def test_a_document_whose_entries_read_otherwise_apart_is_read_whole(body, monkeypatch):
    with monkeypatch.context() as whole_only:
        whole_only.setattr(prepare, "entry_spans", lambda data, cut: None)
        whole = parse_feed(body, NATO_URL)
    monkeypatch.setattr(feed_module, "PART_ENTRIES", 2)
    split = parse_feed(body, NATO_URL, known=whole.entry_digests or ())
    assert (split.entries, split.entry_digests, split.known) == (whole.entries, None, 0)


# --- reading only the entries that changed ----------------------------------------------------


@pytest.mark.parametrize("name", ["nato", "rss"])
def test_entries_whose_digest_is_known_are_left_unread(name):
    body = IN_PARTS[name]
    whole = parse_feed(body, NATO_URL)
    assert len(set(whole.entry_digests)) == len(whole.entries) > 1
    again = parse_feed(body, NATO_URL, known=whole.entry_digests)
    assert (again.entries, again.entry_digests) == ([], ())
    assert (again.known, again.unread) == (len(whole.entries), set(whole.entry_digests))
    assert (again.title, again.link, again.version) == (whole.title, whole.link, whole.version)


def test_a_changed_entry_is_read_as_reading_the_whole_document_reads_it():
    known = parse_feed(rss(ITEMS), NATO_URL).entry_digests
    # The channel's text changes too, as NATO's lastBuildDate does on every poll.
    after = rss(ITEMS.replace("Text 4", "Text four")).replace(b"<title>T<", b"<title>T2<")
    whole = parse_feed(after, NATO_URL)
    changed = parse_feed(after, NATO_URL, known=known)
    assert changed.entries == [whole.entries[4]]
    assert changed.entry_digests == (whole.entry_digests[4],)
    assert (changed.known, changed.title) == (8, "T2")
    assert changed.unread == set(whole.entry_digests) - set(changed.entry_digests)


def test_what_frames_the_entries_changing_reads_them_all_again(monkeypatch):
    body = rss(ITEMS)
    known = parse_feed(body, NATO_URL).entry_digests
    assert parse_feed(body, NATO_URL, known=known).known == 9
    assert parse_feed(body, NATO_URL + "?moved", known=known).known == 0  # links resolve anew
    based = body.replace(b"<channel>", b'<channel xml:base="https://example.net/">')
    assert parse_feed(based, NATO_URL, known=known).known == 0
    monkeypatch.setattr(
        feed_module, "ENTRY_RULES", feed_module.ENTRY_RULES + "+1"
    )  # entries converted otherwise
    assert parse_feed(body, NATO_URL, known=known).known == 0


def test_an_entry_that_could_not_be_read_is_read_again_next_time(monkeypatch):
    real = feed_module._entry

    def odd(raw, base):
        if raw.get("title") == "Item 4":
            raise ValueError("an odd entry")
        return real(raw, base)

    monkeypatch.setattr(feed_module, "_entry", odd)
    first = parse_feed(rss(ITEMS), NATO_URL)
    assert (first.unreadable, len(first.entry_digests)) == (1, 8)
    again = parse_feed(rss(ITEMS), NATO_URL, known=first.entry_digests)
    assert (again.known, again.unreadable, again.entries) == (8, 1, [])


# --- content -----------------------------------------------------------------------------------

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title type="html">NATO &lt;b&gt;feed&lt;/b&gt;</title>
  <link href="https://example.org/"/>
  <id>urn:uuid:feed</id>
  <updated>2024-01-10T10:00:00Z</updated>
  <entry>
    <title type="html">Allies &amp;amp; &lt;em&gt;partners&lt;/em&gt;</title>
    <id>urn:uuid:1</id>
    <link href="/news/1.htm"/>
    <author><name>NATO Press</name></author>
    <category term="partnerships"/><category term="partnerships"/><category term="cyber"/>
    <published>2024-01-10T10:00:00Z</published>
    <updated>2024-01-11T08:00:00+01:00</updated>
    <summary type="text">Plain &lt;text&gt; &amp; more</summary>
    <content type="html">&lt;p onclick="steal()"&gt;Hello &lt;a href="/more.htm"&gt;more&lt;/a&gt;
      &lt;img src="img/map.png" onerror="x()"&gt;&lt;/p&gt;
      &lt;script&gt;alert(1)&lt;/script&gt;&lt;style&gt;p{}&lt;/style&gt;
      &lt;iframe src="https://evil.example/"&gt;&lt;/iframe&gt;
      &lt;form action="/x"&gt;&lt;input name="q"&gt;&lt;/form&gt;
      &lt;a href="javascript:alert(2)"&gt;click&lt;/a&gt;</content>
  </entry>
</feed>"""


def test_html_is_sanitized_once_and_links_made_absolute():
    feed = parse_feed(ATOM, "https://example.org/feeds/main.atom")
    (entry,) = feed.entries
    assert feed.title == "NATO <b>feed</b>"  # the feed title is text, as feedparser gives it
    assert entry.title == "Allies & partners"
    assert entry.guid == "urn:uuid:1"
    assert entry.link == "https://example.org/news/1.htm"
    assert entry.author == "NATO Press"
    assert entry.categories == ("partnerships", "cyber")
    assert entry.updated == datetime(2024, 1, 11, 7, 0, tzinfo=UTC)
    assert entry.summary_html == "<p>Plain &lt;text&gt; &amp; more</p>"
    assert entry.summary_text == "Plain <text> & more"
    content = entry.content_html
    for banned in (
        "script",
        "style",
        "iframe",
        "form",
        "input",
        "onclick",
        "onerror",
        "javascript",
    ):
        assert banned not in content
    assert 'href="https://example.org/more.htm"' in content
    assert 'src="https://example.org/feeds/img/map.png"' in content
    assert "alert" not in entry.content_text and "Hello more" in entry.content_text


def test_a_feed_in_a_legacy_charset_is_decoded():
    (entry,) = parse_feed(fixture("legacy-latin1.rss"), "https://www.nato.int/x").entries
    assert entry.title == "Réunion à Genève avec les partenaires"
    assert "« sécurité »" in entry.summary_text


# --- bad feeds ---------------------------------------------------------------------------------


def test_a_malformed_feed_that_still_yields_entries_is_read_with_the_problem_reported():
    feed = parse_feed(fixture("malformed.rss"), "https://www.nato.int/x")
    assert [e.title for e in feed.entries] == ["Allies & partners train together", "Second story"]
    assert feed.bozo and "SAXParseException" in feed.bozo


def test_an_html_page_instead_of_a_feed_is_an_error():
    with pytest.raises(FeedError, match=r"not a feed.*text/html"):
        parse_feed(fixture("not-a-feed.html"), NATO_URL, {"content-type": "text/html"})


def test_a_broken_document_without_entries_is_an_error():
    with pytest.raises(FeedError, match="malformed feed with no readable entries"):
        parse_feed(b'<?xml version="1.0"?><rss version="2.0"><channel><title>x', NATO_URL)


def test_an_empty_feed_is_no_error():
    feed = parse_feed(rss(""), NATO_URL)
    assert feed.entries == [] and feed.bozo is None


def test_bytes_that_look_like_a_file_name_are_not_opened():
    # feedparser.parse(b"/etc/hostname") would read that file.
    with pytest.raises(FeedError, match="not a feed"):
        parse_feed(str(FIXTURES / "nato-news-2022-11-26.rss").encode(), NATO_URL)


# --- hostile XML -------------------------------------------------------------------------------


def test_billion_laughs_is_refused_at_once_without_eating_memory():
    body = fixture("hostile/billion-laughs.xml")
    tracemalloc.start()
    try:
        with pytest.raises(FeedError, match="declares XML entities"):
            parse_feed(body, NATO_URL)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


def test_quadratic_blowup_is_refused():
    # One 100 kB entity used 20,000 times: feedparser's fallback parser expands it (2 GB).
    big = "x" * 100_000
    head = f'<!DOCTYPE rss [\n<!ENTITY a "{big}">\n]>'
    body = rss("<item><title>" + "&a;" * 20_000 + "</title></item>", head)
    with pytest.raises(FeedError, match="declares XML entities"):
        parse_feed(body, NATO_URL)


def test_entities_hidden_in_utf16_are_refused_too():
    body = (
        fixture("hostile/billion-laughs.xml")
        .decode()
        .replace('"1.0"?>', '"1.0" encoding="utf-16"?>')
    )
    with pytest.raises(FeedError, match="declares XML entities"):
        parse_feed(body.encode("utf-16"), NATO_URL)


def test_an_external_entity_pointing_at_a_local_file_is_never_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    head = f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{secret}">]>'
    body = rss("<item><title>a &xxe; b</title><link>https://x.org/1</link></item>", head)
    with pytest.raises(FeedError, match="declares XML entities"):
        parse_feed(body, NATO_URL)


def test_an_external_dtd_is_neither_fetched_nor_read(tmp_path, feed_server):
    # No entity is declared in the document itself, so it reaches the parser: the DTDs
    # would define &secret; and must not be loaded, from disk or from the network.
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY secret "TOPSECRET">')
    feed_server.route("/evil.dtd", body=dtd.read_bytes(), content_type="application/xml-dtd")
    items = "<item><title>a &secret; b</title><link>https://x.org/1</link></item>"
    for system_id in (f"file://{dtd}", feed_server.url("/evil.dtd")):
        body = rss(items, f'<!DOCTYPE rss SYSTEM "{system_id}">')
        feed = parse_feed(body, NATO_URL)
        assert "TOPSECRET" not in repr(feed)
        assert [e.link for e in feed.entries] == ["https://x.org/1"]
    assert feed_server.requests() == []


def test_a_plain_public_doctype_is_fine():
    head = (
        '<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" '
        '"http://my.netscape.com/publish/formats/rss-0.91.dtd">'
    )
    feed = parse_feed(rss("<item><title>A</title><link>https://x.org/a</link></item>", head), "u")
    assert [e.title for e in feed.entries] == ["A"]


def test_the_fast_path_for_plain_text_gives_what_nh3_and_html_to_text_give():
    import random

    from aggregator.parse.feed import sanitize, text_of
    from aggregator.parse.sanitize import html_to_text, sanitize_html

    alphabet = "ab Z09 .,;:'\"-–“”éçČ€😀\t\n\r\0\x0b\x1b\x7f\x85\xa0\ufeff\ufffe\ud800<>&/=?#%"
    rng = random.Random(3)
    samples = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3000)
    ]
    for sample in [*samples, "  Vučić said “yes”  ", "a\n\n b\t c\n"]:
        assert sanitize(sample) == sanitize_html(sample), repr(sample)
        assert text_of(sanitize(sample)) == html_to_text(sanitize_html(sample)), repr(sample)


def test_an_external_dtd_on_disk_is_never_opened(tmp_path):
    # A FIFO blocks whoever opens it until a writer comes: if the parser opened the DTD,
    # parsing would hang here instead of returning at once.
    import os
    import threading

    fifo = tmp_path / "evil.dtd"
    os.mkfifo(fifo)
    body = rss(
        "<item><title>a</title><link>https://x.org/1</link></item>",
        f'<!DOCTYPE rss SYSTEM "file://{fifo}">',
    )
    results: list = []
    worker = threading.Thread(target=lambda: results.append(parse_feed(body, NATO_URL)))
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # release the parser before failing
        with open(fifo, "w") as writer:
            writer.write("")
        worker.join()
    assert results and [e.title for e in results[0].entries] == ["a"]


def test_feedparser_patched_twice_still_parses():
    """Parses run in threads of their own, and two first calls may both patch feedparser
    (functools.cache does not lock): the second must keep feedparser's own functions."""
    for _ in range(2):
        feed_module._feedparser.cache_clear()
        feed_module._feedparser()
    assert len(parse_feed(rss(ITEMS), NATO_URL).entries) == 9


PLANET_SOURCE = (
    "<source><id>urn:s{n}</id><title>Blog {n}</title>"
    '<category term="python"/><category term="news"/><category term="misc"/></source>'
)
OWN_CATEGORIES = '<category term="python"/><category term="news"/>'


@pytest.mark.parametrize("own_first", [False, True], ids=["source first", "own first"])
def test_an_entry_keeps_its_categories_after_a_planet_source_with_its_own(own_first):
    """feedparser lets go of an Atom <source>'s tags list at </source>; a later entry's
    list may get its id, and the tags seen were once looked up by that id alone."""
    lost = 0
    for count in range(2, 30):
        entries = "".join(
            f'<entry><id>urn:{n}</id><title>P{n}</title><link href="https://ex.org/{n}"/>'
            + (
                OWN_CATEGORIES + PLANET_SOURCE if own_first else PLANET_SOURCE + OWN_CATEGORIES
            ).format(n=n)
            + "</entry>"
            for n in range(count)
        )
        parsed = parse_feed(_atom(entries), NATO_URL)
        lost += sum(entry.categories != ("python", "news") for entry in parsed.entries)
    assert lost == 0
