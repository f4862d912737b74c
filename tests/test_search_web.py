"""Search for people (issue 14): the CLI in a subprocess and the web through the real server,
over an archive of the seeds and one poll of a recorded NATO feed."""

from __future__ import annotations

import calendar
import json
import shutil
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import feedparser
import httpx
import lxml.html
import pytest

from aggregator import config as config_module
from aggregator import pipeline
from aggregator.models import Entry
from aggregator.parse.feed import parse_feed
from aggregator.search import parse_query
from aggregator.serve.pages import highlighted
from aggregator.store import Archive
from aggregator.store.sources import SourceSpec
from tests.conftest import FIXTURES, ROOT, SEEDS
from tests.test_serve import serving

NATO_URL = "https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml"
JORDAN = "NATO Secretary General welcomes Prime Minister of Jordan"
JORDAN_LINK = "https://www.nato.int/cps/en/natohq/news_214851.htm"
VILNIUS = "NATO meets with partners to reaffirm commitment ahead of Vilnius Summit"
BUSH = "Secretary General aboard USS George H.W. Bush: NATO’s strength deters conflict"


@pytest.fixture
def filled(project, feed_server):
    """The seeds and the May 2023 NATO feed, fetched from a local server."""
    body = (FIXTURES / "nato-news-2023-05-24.rss").read_bytes()
    project.replace_in_config(NATO_URL, feed_server.route("/nato.rss", body=body))
    project.cli("import-seeds")
    project.cli("fetch")
    return project


def searched(project, *args: str) -> list[dict]:
    lines = project.cli("search", "--json", *args).stdout.splitlines()
    return [json.loads(line) for line in lines]


def test_the_cli_finds_what_people_type_with_a_passage(filled):
    assert [r["title"] for r in searched(filled, "Indo-Pacific")] == [VILNIUS]
    assert [r["title"] for r in searched(filled, '"defence capacity"')] == [JORDAN]
    apostrophe = [r["title"] for r in searched(filled, "NATO's")]
    assert apostrophe[0] == BUSH  # in the title: first
    assert len(apostrophe) > 2
    [jordan] = searched(filled, '"defence capacity"')
    assert "defence capacity building package" in jordan["snippet"]
    text = filled.cli("search", '"defence capacity"').stdout.splitlines()
    assert text[0].endswith(JORDAN) and "defence capacity building" in text[1]
    assert text[-1] == "1 item"


def test_the_cli_bounds_and_explains_bad_queries(filled):
    too_many = filled.cli("search", "--limit", "51", "NATO", check=False)
    assert too_many.returncode == 2 and "1<=x<=50" in too_many.stderr
    assert len(searched(filled, "--limit", "50", "NATO")) <= 50
    long = filled.cli("search", "x" * 10_000, check=False)
    assert long.returncode == 1
    assert long.stderr.strip() == "error: search: a query has at most 200 characters"
    punctuation = filled.cli("search", "<>!", check=False)
    assert punctuation.returncode == 1 and len(punctuation.stderr.splitlines()) == 1
    assert filled.cli("search", "<script>").stdout.strip() == "no items"


def test_explain_takes_the_number_the_published_id_or_the_url(filled):
    [jordan] = searched(filled, '"defence capacity"')
    first = f"{jordan['id']}  2023-05-22  {JORDAN}"
    for reference in (
        str(jordan["id"]),
        jordan["atom_id"],
        JORDAN_LINK,
        JORDAN_LINK.replace("https://", "http://") + "?utm_source=x",  # its canonical link
    ):
        said = filled.cli("explain", reference).stdout
        assert said.splitlines()[0] == first, reference
    missing = filled.cli("explain", "https://www.nato.int/no-such-story.htm", check=False)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: no item https://www.nato.int/no-such-story.htm")
    assert len(missing.stderr.splitlines()) == 1


# --- the web, through the real server ---------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[config_module.Config, str]]:
    """The seeds, the May 2023 NATO feed, classified and published, served on loopback."""
    root = tmp_path_factory.mktemp("search-site")
    shutil.copytree(SEEDS, root / "archive" / "seed")
    shutil.copy(ROOT / "config.toml", root / "config.toml")
    config = config_module.load(root / "config.toml")
    body = (FIXTURES / "nato-news-2023-05-24.rss").read_bytes()
    with Archive(config.archive.database) as archive:
        pipeline.sync_sources(archive, config)
        pipeline.import_seeds(archive, [config.archive.seeds])
        entries = parse_feed(body, NATO_URL).entries
        pipeline.store_entries(archive, entries, config.sources[0].id)
        pipeline.reclassify(archive, config)
        pipeline.publish(archive, config)
    with serving(config) as base:
        yield config, base


@pytest.fixture(scope="module")
def client(site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site[1]) as client:
        yield client


def result_titles(response: httpx.Response) -> list[str]:
    page = lxml.html.fromstring(response.content)
    return [
        li.xpath('string(./*[@class="title"])') for li in page.xpath('//ol[@class="results"]/li')
    ]


SEARCHES = [
    ("Indo-Pacific", VILNIUS),
    ('"defence capacity"', JORDAN),
    ("NATO's", BUSH),
]


@pytest.mark.parametrize(("typed", "first"), SEARCHES)
def test_the_search_page_finds_what_people_type(client, typed, first):
    response = client.get("/search", params={"q": typed})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert result_titles(response)[0] == first
    page = lxml.html.fromstring(response.content)
    assert page.xpath('//input[@name="q"]/@value') == [typed]
    assert page.xpath("//ol//mark")  # the passage says what matched
    feeds = page.xpath('//head/link[@rel="alternate"]/@href')
    assert feeds == [f"search.{ext}?{urlencode({'q': typed})}" for ext in ("atom", "rss", "json")]


@pytest.mark.parametrize(("typed", "first"), SEARCHES)
def test_a_search_is_a_feed_a_reader_subscribes_to(site, client, typed, first):
    config, base = site
    query = urlencode({"q": typed})
    for ext in ("atom", "rss"):
        parsed = feedparser.parse(f"{base}/search.{ext}?{query}")
        assert parsed.status == 200 and not parsed.bozo, parsed.get("bozo_exception")
        assert first in [entry.title for entry in parsed.entries]
        assert parsed.feed.title == f"Search: {typed}"
        selves = [link.href for link in parsed.feed.links if link.rel == "self"]
        assert selves == [f"{config.server.base_url}/search.{ext}?{query}"]
        assert parsed.headers["cache-control"] == "public, max-age=60"
        again = feedparser.parse(f"{base}/search.{ext}?{query}", etag=parsed.etag)
        assert again.status == 304
    atom = feedparser.parse(f"{base}/search.atom?{query}")
    for entry in atom.entries:  # each opens: the original, else the item's page, served here
        assert entry.link.startswith(("https://www.nato.int/", config.server.base_url))
        if entry.link.startswith(config.server.base_url):
            path = entry.link.removeprefix(config.server.base_url)
            assert client.get(path).status_code == 200, entry.link
    assert atom.feed.id == f"{config.server.base_url}/search.atom?{query}"
    dates = [entry.published_parsed for entry in atom.entries]
    assert dates == sorted(dates, reverse=True)  # a subscription: the newest matches first
    document = client.get("/search.json", params={"q": typed})
    assert document.headers["content-type"] == "application/feed+json; charset=utf-8"
    assert document.json()["feed_url"] == f"{config.server.base_url}/search.json?{query}"
    assert first in [item["title"] for item in document.json()["items"]]


@pytest.mark.parametrize(
    "typed", ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "'\"", 'a"b']
)
def test_hostile_queries_are_escaped(client, typed):
    response = client.get("/search", params={"q": typed})
    assert response.status_code in (200, 400)
    page = lxml.html.fromstring(response.content)
    assert page.xpath("//script | //img") == []
    assert typed not in response.text
    assert page.xpath('//input[@name="q"]/@value') == [typed]
    policy = response.headers["content-security-policy"]
    assert "form-action 'self'" in policy and "script-src" not in policy


def test_a_search_that_finds_nothing_is_a_feed_dated_when_it_ran(site):
    _, base = site
    before = time.time() - 2
    for ext in ("atom", "rss"):
        parsed = feedparser.parse(f"{base}/search.{ext}?q=zzyzx")
        assert parsed.status == 200 and not parsed.bozo and parsed.entries == []
        assert calendar.timegm(parsed.feed.updated_parsed) >= before  # not 1970


def test_empty_long_and_unreadable_queries_say_so_in_one_line(client):
    blank = client.get("/search", params={"q": "  "})
    assert blank.status_code == 200 and result_titles(blank) == []
    assert lxml.html.fromstring(blank.content).xpath('//form[@action="search"]')
    for typed, said in [
        ("x" * 300, "search: a query has at most 200 characters"),
        ("!!! ...", "only punctuation"),
        ("fts:NEAR(", "cannot read the query"),
    ]:
        page = client.get("/search", params={"q": typed})
        assert page.status_code == 400
        [problem] = lxml.html.fromstring(page.content).xpath('//p[@class="problem"]')
        assert said in problem.text_content()
        feed = client.get("/search.atom", params={"q": typed})
        assert feed.status_code == 400 and feed.headers["content-type"].startswith("text/plain")
        assert said in feed.text and len(feed.text.splitlines()) == 1
    huge = client.get("/search", params={"q": "y" * 10_000})
    assert huge.status_code in (400, 414) and "y" * 300 not in huge.text
    assert client.get("/search.atom").status_code == 400
    assert client.get("/search.xml", params={"q": "NATO"}).status_code == 404


def test_the_index_lists_each_feed_with_its_size_and_marks_empty_ones(site, client):
    config, _ = site
    page = lxml.html.fromstring(client.get("/").content)
    rows = page.xpath('//ul[@class="feeds"]/li')
    assert len(rows) == len(config.feeds)
    empty = []
    for feed, row in zip(config.feeds, rows, strict=True):
        months = sorted((config.server.feeds_dir / feed.slug / "archive").glob("*.atom"))
        published = sum(len(feedparser.parse(month.read_bytes()).entries) for month in months)
        text = row.text_content()
        if published:
            assert f"{published} item" in text and "updated" in text, feed.slug
            assert not row.xpath('.//*[@class="empty"]')
        else:
            assert row.xpath('.//*[@class="empty"]'), feed.slug
            empty.append(feed.slug)
    assert empty and len(empty) < len(config.feeds)  # this archive has both kinds
    [form] = page.xpath('//form[@role="search"]')
    assert form.get("action") == "search" and form.get("method") == "get"
    assert form.xpath('.//input[@name="q"]')


def test_the_latest_items_link_to_their_pages_else_to_the_original(site, client):
    config, _ = site
    page = lxml.html.fromstring(client.get("/").content)
    items = page.xpath("//ol/li")
    assert items
    with Archive(config.archive.database, readonly=True) as archive:
        by_title = {item.title: item for item in archive.list_items()}
    for li in items:
        [title] = li.xpath('./*[@class="title"]')
        item = by_title[title.text_content()]
        on_disk = config.server.feeds_dir / "items" / f"{item.id}.html"
        if on_disk.exists():
            assert title.get("href") == f"feeds/items/{item.id}.html"
        else:
            assert title.get("href") == item.link  # None: the title is not a link


def test_what_a_source_wrote_is_text_in_a_result_and_only_matches_are_marked(tmp_path):
    hostile = "<script>alert(1)</script> & <mark>partners</mark>"
    with Archive(tmp_path / "archive.db") as archive:
        archive.sync_sources([SourceSpec("s", "S", "https://example.org/feed", True)])
        entry = Entry(title=hostile, link="https://example.org/1", summary_text=hostile)
        pipeline.store_entries(archive, [entry], "s")
        [found] = archive.search_snippets(parse_query("script partners").fts)
    for runs in (found.title, found.passage):
        assert "".join(text for text, _ in runs) == hostile
        assert [text for text, matched in runs if matched] == ["script", "script", "partners"]
        shown = highlighted(runs)
        assert shown == (
            "&lt;<mark>script</mark>&gt;alert(1)&lt;/<mark>script</mark>&gt; &amp; "
            "&lt;mark&gt;<mark>partners</mark>&lt;/mark&gt;"
        )


def test_an_item_page_opens_by_number_published_id_or_url(site, client):
    config, _ = site
    with Archive(config.archive.database, readonly=True) as archive:
        [jordan] = [item for item in archive.list_items() if item.title == JORDAN]
    assert (config.server.feeds_dir / "items" / f"{jordan.id}.html").is_file()  # publish wrote it
    for reference in (str(jordan.id), jordan.atom_id, JORDAN_LINK, JORDAN_LINK + "?utm_medium=x"):
        response = client.get("/item", params={"id": reference})
        assert response.status_code == 303, reference
        assert response.headers["location"] == f"feeds/items/{jordan.id}.html"
    for unknown in ("999999", "https://www.nato.int/nothing.htm", "", "<script>"):
        response = client.get("/item", params={"id": unknown})
        assert response.status_code == 404 and "<script>" not in response.text


@pytest.mark.parametrize("kind", ["atom", "rss", "json"])
def test_an_item_a_renderer_cannot_write_leaves_the_search_feed_not_breaks_it(tmp_path, kind):
    """An archive written before the parser cleaned text may hold an ESC: the search feed
    leaves that item out (as publish does) and serves the rest."""
    shutil.copytree(ROOT / "archive" / "seed", tmp_path / "archive" / "seed")
    config = config_module.load(shutil.copy(ROOT / "config.toml", tmp_path / "config.toml"))
    day = parse_feed((FIXTURES / "nato-news-2022-11-26.rss").read_bytes(), "https://x.org/")
    published = day.entries[0].published
    good = Entry(title="Kyrgyzstan and NATO meet", link="https://x.org/1", published=published)
    bad = Entry(title="Kyrgyzstan \x1b and NATO", link="https://x.org/2", published=published)
    with Archive(config.archive.database) as archive:
        archive.sync_sources([SourceSpec(s.id, s.title, s.url) for s in config.sources])
        pipeline.store_entries(archive, [good, bad], config.sources[0].id)
    with serving(config) as base:
        response = httpx.get(f"{base}/search.{kind}", params={"q": "Kyrgyzstan"})
    assert response.status_code == 200
    if kind == "json":
        titles = [item["title"] for item in response.json()["items"]]
        assert "Kyrgyzstan and NATO meet" in titles
    else:
        parsed = feedparser.parse(response.content)
        assert not parsed.bozo
        assert [entry.title for entry in parsed.entries] == ["Kyrgyzstan and NATO meet"]
