"""Item pages and entry links through HTTP: the project's own config.toml and topics, the
seeds and two real NATO feed captures stored, classified and published, then served by the
real server on 127.0.0.1 at the address the config's base_url names.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import feedparser
import httpx
import pytest
from lxml import etree

from aggregator import config as config_module
from aggregator import pipeline, publish
from aggregator.html import CSP, META_CSP
from aggregator.models import Entry, Item, Origin, Precision
from aggregator.parse.feed import parse_feed
from aggregator.publish.document import SourceInfo
from aggregator.publish.itempage import ItemPage, render
from aggregator.store import Archive
from aggregator.store.sources import SourceSpec
from tests.conftest import FIXTURES, ROOT
from tests.test_serve import free_port, serving

CAPTURES = ("nato-news-2022-11-26.rss", "nato-news-2023-05-24.rss")
NATO_FEED = "https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml"


def _config(root: Path, base: str) -> config_module.Config:
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    old = 'base_url = "http://127.0.0.1:8080"'
    assert old in text
    (root / "config.toml").write_text(text.replace(old, f'base_url = "{base}"'), encoding="utf-8")
    return config_module.load(root / "config.toml")


def _fill(config: config_module.Config) -> None:
    with Archive(config.archive.database) as archive:
        archive.sync_sources([SourceSpec(s.id, s.title, s.url, s.enabled) for s in config.sources])
        source = config.sources[0].id
        for name in CAPTURES:
            parsed = parse_feed((FIXTURES / name).read_bytes(), NATO_FEED)
            pipeline.store_entries(archive, parsed.entries, source, Origin.FEED)
        pipeline.import_seeds(archive, [config.archive.seeds])
        pipeline.classify_items(archive, config, sorted(archive.item_ids()))
        report = publish.publish_all(archive, config)
        assert report.ok, report.failure()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[config_module.Config, str]]:
    root = tmp_path_factory.mktemp("pages")
    shutil.copytree(ROOT / "archive" / "seed", root / "archive" / "seed")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = _config(root, base)
    _fill(config)
    with serving(config, port=port) as served:
        assert served == base
        yield config, base


@pytest.fixture(scope="module")
def client(site) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site[1]) as client:
        yield client


def _documents(config: config_module.Config) -> list[Path]:
    folder = config.server.feeds_dir
    return sorted(p for p in folder.rglob("*") if p.suffix in (".atom", ".rss", ".json"))


def _entry_links(path: Path) -> list[tuple[str, str, list[str]]]:
    """(entry id, the link a reader opens, every link) of each entry of a document."""
    if path.suffix == ".json":
        items = json.loads(path.read_bytes())["items"]
        return [(i["id"], i.get("url", ""), [i.get("url", "")]) for i in items]
    parsed = feedparser.parse(path.read_bytes())
    assert not parsed.bozo, (path, parsed.get("bozo_exception"))
    return [(e.id, e.get("link", ""), [x.href for x in e.get("links", [])]) for e in parsed.entries]


def _page_path(url: str, base: str) -> str:
    assert url.startswith(base + "/feeds/items/"), url
    return url[len(base) :]


def test_every_entry_of_every_document_has_a_link_that_opens(site, client):
    config, base = site
    documents = _documents(config)
    assert len(documents) > 4 * 3
    pages_checked: set[str] = set()
    with Archive(config.archive.database, readonly=True) as archive:
        originals = {i.atom_id: i.link for i in archive.list_items()}
    for path in documents:
        for entry_id, link, links in _entry_links(path):
            assert link.startswith(("http://", "https://")), (path, entry_id)
            original = originals[entry_id]
            if original:  # the original article, and (Atom) the item's page beside it
                assert link == original, (path, entry_id)
                pages = [x for x in links if x.startswith(base + "/feeds/items/")]
                assert len(pages) == (1 if path.suffix == ".atom" else 0), (path, links)
            else:  # a seed: its page
                pages = [link]
            for page in pages:
                pages_checked.add(_page_path(page, base))
    assert len(pages_checked) >= 10
    for page in sorted(pages_checked):
        response = client.get(page)
        assert response.status_code == 200, page
        assert response.headers["content-type"] == "text/html; charset=utf-8"


def test_every_item_has_a_page_named_by_its_number(site, client):
    config, _ = site
    with Archive(config.archive.database, readonly=True) as archive:
        ids = archive.item_ids()
    folder = config.server.feeds_dir / "items"
    assert {int(p.stem) for p in folder.glob("*.html")} == ids
    assert client.get("/feeds/items/0.html").status_code == 404
    assert client.get("/feeds/items/99999.html").status_code == 404
    assert client.get("/feeds/items/..%2Fall.atom").status_code == 404


class _Text(HTMLParser):
    """The text of a page, and the style and script elements in it."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []
        self.meta: list[dict] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "meta":
            self.meta.append(dict(attrs))

    def handle_data(self, data):
        self.text.append(data)


def _read(html: str) -> _Text:
    reader = _Text()
    reader.feed(html)
    return reader


def test_a_seeds_page_shows_its_whole_text_with_a_strict_policy(site, client):
    config, _ = site
    with Archive(config.archive.database, readonly=True) as archive:
        seed = archive.list_items(origin=Origin.SEED)[0]
    response = client.get(f"/feeds/items/{seed.id}.html")
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == CSP
    page = _read(response.text)
    text = " ".join(" ".join(page.text).split())
    whole = " ".join(seed.content_text.split())
    assert len(whole) > 2000 and whole in text  # every word of the seed, in order
    assert seed.title in text and "NATO (seeded article)" in text
    assert "script" not in page.tags
    assert {"http-equiv": "Content-Security-Policy", "content": META_CSP} in page.meta
    day = seed.published.astimezone(UTC)
    assert seed.precision is Precision.DAY  # a day-only date shows as a day, without a time
    assert f'datetime="{day:%Y-%m-%d}">{day.day} {day:%B %Y}</time>' in response.text


def test_a_feed_items_page_links_the_original_and_says_why_it_is_in_its_topics(site, client):
    config, _ = site
    with Archive(config.archive.database, readonly=True) as archive:
        item = next(i for i in archive.list_items(origin=Origin.FEED) if i.topics)
        rules = archive.matched_rules([item.id])[item.id]
    html = client.get(f"/feeds/items/{item.id}.html").text
    assert f'<a href="{item.link}">' in html
    for topic, score in item.topics.items():
        assert f"<strong>{topic}</strong>: score {score:g}" in html
        for fired in rules[topic]:
            if fired["match"]:
                assert f"“{fired['match']}” in the " in html
    assert "Published id" in html and item.atom_id in html


def test_item_pages_answer_conditional_requests(site, client):
    first = client.get("/feeds/items/1.html")
    again = client.get("/feeds/items/1.html", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304


def test_empty_feeds_are_dated_when_first_published_never_1970(site):
    config, _ = site
    empty = [f for f in config.feeds if not (config.server.feeds_dir / f.slug).exists()]
    for feed in empty:
        atom = etree.parse(str(config.server.feeds_dir / f"{feed.slug}.atom")).getroot()
        updated = atom.findtext("{http://www.w3.org/2005/Atom}updated")
        assert not updated.startswith("1970"), feed.slug
        rss = feedparser.parse((config.server.feeds_dir / f"{feed.slug}.rss").read_bytes())
        assert rss.feed.updated_parsed.tm_year > 2000


def test_an_empty_feed_keeps_its_date_and_bytes_across_publishes(tmp_path):
    """Published again later, an empty feed says the same first-published date."""
    config = _config(tmp_path, "https://feeds.example.org")
    (tmp_path / "archive").mkdir()
    with Archive(config.archive.database) as archive:
        publish.publish_all(archive, config, now=datetime(2030, 1, 1, tzinfo=UTC))
        before = {
            f.slug: (config.server.feeds_dir / f"{f.slug}.atom").read_bytes() for f in config.feeds
        }
        shutil.rmtree(config.server.feeds_dir)
        publish.publish_all(archive, config, now=datetime(2031, 1, 1, tzinfo=UTC))
    for feed in config.feeds:
        data = (config.server.feeds_dir / f"{feed.slug}.atom").read_bytes()
        assert data == before[feed.slug]
        assert b"<updated>2030-01-01T00:00:00+00:00</updated>" in data


def test_only_changed_items_pages_are_rewritten_and_gone_items_pages_removed(site, tmp_path):
    config, _ = site
    folder = tmp_path / "feeds"
    shutil.copytree(config.server.feeds_dir, folder)
    local = replace(config, server=replace(config.server, feeds_dir=folder))
    shutil.copy(config.archive.database, tmp_path / "a.db")
    past = 1_000_000_000
    for path in folder.rglob("*.html"):
        os.utime(path, ns=(past, past))
    with Archive(tmp_path / "a.db") as archive:
        item = archive.list_items(origin=Origin.FEED)[0]
        report = publish.publish_feeds(archive, local, [], months=[], items=[item.id])
    assert report.pages.written == ()  # unchanged: same bytes, not rewritten
    assert report.pages.unchanged == 1
    (folder / "items" / "99999.html").write_text("stale")
    (folder / "items" / "7.html").unlink()
    with Archive(tmp_path / "a.db") as archive:
        report = publish.publish_feeds(archive, local, [], months=[])
    assert report.pages.written == (folder / "items" / "7.html",)  # a missing page comes back
    assert report.pages.removed == (folder / "items" / "99999.html",)
    changed = {p.name for p in folder.rglob("*.html") if p.stat().st_mtime_ns != past}
    assert changed == {"7.html"}


def test_page_rendering_escapes_what_the_archive_holds():
    day = datetime(2024, 3, 4, tzinfo=UTC)
    item = Item(
        id=5, origin=Origin.FEED, source_id="x", atom_id='urn:"<x>"', title="<script>t</script>",
        link="javascript:alert(1)", guid=None, canonical_url=None, summary_html="<p>s</p>",
        summary_text="s", content_html=None, content_text=None, author="<b>a</b>",
        categories=(), published=day, updated=day, precision=Precision.DAY,
        date_inferred=False, first_seen=day, revision=1, content_hash="h",
        topics={"<t>": 1.5},
    )  # fmt: skip
    source = SourceInfo("urn:s", "<i>src</i>", "javascript:alert(2)")
    fired = {"rule": "<r>", "field": "title", "weight": 1.5, "match": "<m>"}
    html = render(ItemPage(item, source, {"<t>": [fired]})).decode()
    body = html.split("</head>", 1)[1]
    assert "<script" not in body and "javascript:" not in body
    assert "&lt;script&gt;t&lt;/script&gt;" in body and "&lt;m&gt;" in body
    assert '<time datetime="2024-03-04">4 March 2024</time>' in body  # a day, no time
    assert re.search(r"<dt>Original</dt>", body) is None  # no http(s) link: none shown


def test_a_stored_link_no_reader_should_open_is_replaced_by_the_item_page(tmp_path):
    """The parser keeps only http(s) links; an older archive may hold another: no published
    document carries it, the entry links the item's page instead."""
    shutil.copytree(ROOT / "archive" / "seed", tmp_path / "archive" / "seed")
    config = _config(tmp_path, "https://feeds.example.org")
    with Archive(config.archive.database) as archive:
        archive.sync_sources([SourceSpec(s.id, s.title, s.url, s.enabled) for s in config.sources])
        hostile = Entry(
            title="A partner story whose link is a script",
            link="javascript:alert(2)",
            guid="urn:hostile:2",
            summary_text="Partners",
            summary_html="<p>Partners</p>",
            published=datetime(2024, 5, 9, 12, tzinfo=UTC),
        )
        (item_id,) = pipeline.store_entries(archive, [hostile], config.sources[0].id).item_ids
        assert report_ok(publish.publish_all(archive, config))
    folder = config.server.feeds_dir
    documents = [*folder.glob("all.*"), *folder.glob("all/archive/*.atom"), *folder.glob("items/*")]
    assert documents and all(b"javascript:" not in path.read_bytes() for path in documents)
    page = f"https://feeds.example.org/feeds/items/{item_id}.html"
    entry = next(
        e for e in feedparser.parse(folder / "all.atom").entries if e.id == "urn:hostile:2"
    )
    assert entry.link == page
    item = next(
        i
        for i in json.loads((folder / "all.json").read_bytes())["items"]
        if i["id"] == "urn:hostile:2"
    )
    assert item["url"] == page


def report_ok(report) -> bool:
    assert report.ok, report.failure()
    return True
