"""Publish on a real archive: the seeds plus feed items, rendered into a real folder.

Every Atom document is checked against RFC 4287's grammar (tests/fixtures/atom.rng) and
re-read with feedparser; the RFC 5005 chain is walked like a client would; the JSON Feed
is checked against the 1.1 spec's rules; writes are checked by bytes and mtimes.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import pytest
from lxml import etree

from aggregator import pipeline, publish
from aggregator.config import ArchiveConfig, Config, FeedConfig, ServerConfig
from aggregator.errors import UsageError
from aggregator.models import Entry, Item, Origin, TopicScore
from aggregator.parse.sanitize import html_to_text, sanitize_html
from aggregator.publish.document import EMPTY_FEED_UPDATED, SEED_SOURCE_TITLE
from aggregator.store import Archive
from aggregator.store.sources import SourceSpec
from tests.conftest import FIXTURES, SEEDS

BASE = "https://feeds.example.org/nato"
ATOM = "{http://www.w3.org/2005/Atom}"
FH = "{http://purl.org/syndication/history/1.0}"
NATO_FEED = "https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml"
SCRIPT_TITLE = 'Partners meet <script>alert("title")</script> & talk'
RELAXNG = etree.RelaxNG(etree.parse(str(FIXTURES / "atom.rng")))

# --- the archive -------------------------------------------------------------------------


def _entry(number: int, title: str, day: str, summary: str, **extra) -> Entry:
    published = datetime.fromisoformat(day).replace(hour=9, tzinfo=UTC)
    return Entry(
        title=title,
        link=f"https://www.nato.int/cps/en/natohq/news_{number}.htm",
        summary_html=sanitize_html(summary),
        summary_text=html_to_text(summary),
        published=published,
        updated=published,
        **extra,
    )


FEED_ENTRIES = [
    _entry(
        300001,
        "NATO and Japan deepen cooperation on cyber defence",
        "2024-03-04",
        "<p>Japan and NATO agreed on new projects under the ITPP.</p>",
        author="NATO Public Diplomacy Division",
        content_html="<p>Full text: Japan and NATO agreed on <b>new projects</b>.</p>",
        content_text="Full text: Japan and NATO agreed on new projects.",
    ),
    _entry(
        300002,
        "Secretary General visits defence industry partners",
        "2024-03-18",
        "<p>Industry partners showed new equipment.</p>",
    ),
    _entry(
        300003,
        SCRIPT_TITLE,
        "2024-04-02",
        '<p>Summary with markup</p><script>alert("summary")</script>'
        '<img src="x" onerror="alert(1)">',
    ),
    _entry(
        300004,
        "Mediterranean Dialogue partners meet in Rabat",
        "2024-04-10",
        "<p>Partners from the Mediterranean Dialogue met in Rabat &amp; Tunis.</p>",
    ),
    _entry(
        300005,
        "Qatar hosts an Istanbul Cooperation Initiative course",
        "2024-04-20",
        "<p>Gulf partners trained together.</p>",
    ),
]

# topic -> (score, titles it matched); feeds select on these
SCORES = {
    "partnerships": (
        3.0,
        [
            "NATO and Japan deepen cooperation",
            "Partners meet",
            "Mediterranean Dialogue",
            "Qatar hosts",
            "Partners discuss strengthened cooperation",
            "NATO meets with partners",
            "NATO Partners are invaluable",
            "stresses the importance of partnerships",
        ],
    ),
    "gulf": (2.5, ["Qatar hosts"]),
}
LOW_GULF = "Mediterranean Dialogue"  # matched "gulf" below the gulf feed's min_score


def _feeds() -> tuple[FeedConfig, ...]:
    return (
        FeedConfig(
            "partnerships", "NATO partnerships", "Partners & programmes", ("partnerships",), 0.0, 50
        ),
        FeedConfig("all", "NATO news", "", (), 0.0, 4),
        FeedConfig("gulf", "Gulf partners", "", ("gulf",), 2.0, 50),
        FeedConfig("nothing", "Nothing yet", "", ("no-such-topic",), 0.0, 50),
    )  # fmt: skip


def _config(tmp_path: Path, feeds_dir: Path | None = None) -> Config:
    return Config(
        path=tmp_path / "config.toml",
        archive=ArchiveConfig(tmp_path / "a.db", SEEDS, tmp_path / "snapshots"),
        server=ServerConfig(
            "127.0.0.1", 8080, BASE + "/", feeds_dir or tmp_path / "feeds", 300, 3600.0
        ),
        fetch=None,  # type: ignore[arg-type]  # publish reads no fetch or daemon settings
        daemon=None,  # type: ignore[arg-type]
        sources=(),
        feeds=_feeds(),
    )


def _score(archive: Archive, items: list[Item]) -> None:
    scores = []
    for topic, (score, titles) in SCORES.items():
        for item in items:
            if any(t in item.title for t in titles):
                scores.append(TopicScore(item.id, topic, score, matched=True))
            if topic == "gulf" and LOW_GULF in item.title:
                scores.append(TopicScore(item.id, topic, 1.0, matched=True))
    archive.save_scores(scores)


@pytest.fixture
def archive(tmp_path):
    with Archive(tmp_path / "a.db") as opened:
        opened.sync_sources([SourceSpec("nato-news", "NATO News", NATO_FEED)])
        pipeline.import_seeds(opened, [SEEDS])
        counts = pipeline.store_entries(opened, FEED_ENTRIES, "nato-news", Origin.FEED)
        assert counts.new == len(FEED_ENTRIES)
        _score(opened, opened.list_items())
        yield opened


@pytest.fixture
def config(tmp_path):
    return _config(tmp_path)


@pytest.fixture
def published(archive, config):
    return publish.publish_all(archive, config)


# --- helpers -------------------------------------------------------------------------------


def _files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _atom_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.atom"))


def _local(url: str, config: Config) -> Path:
    """A published URL back to its file (what the web server would serve)."""
    assert url.startswith(BASE + "/feeds/"), url
    return config.server.feeds_dir / url[len(BASE + "/feeds/") :]


def _links(doc: etree._Element) -> dict[str, str]:
    links = {}
    for link in doc.findall(f"{ATOM}link"):
        rel = link.get("rel", "alternate")
        assert rel not in links, f"two {rel} links"
        links[rel] = link.get("href")
    return links


def _entry_ids(doc: etree._Element) -> list[str]:
    return [e.findtext(f"{ATOM}id") for e in doc.findall(f"{ATOM}entry")]


def _matching(archive: Archive, feed: FeedConfig) -> list[Item]:
    return archive.list_items(topics=feed.topics, min_score=feed.min_score)


def _feed(slug: str) -> FeedConfig:
    return next(feed for feed in _feeds() if feed.slug == slug)


def _age_everything(folder: Path) -> int:
    """Set every file's mtime to a day long past; returns that mtime in ns."""
    past = 1_000_000_000
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(past, past))
    return past


def _changed_since(folder: Path, mtime: int) -> set[str]:
    return {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and p.stat().st_mtime_ns != mtime
    }


# --- validity ---------------------------------------------------------------------------------


def test_every_atom_document_is_valid_atom_and_reparses_cleanly(published, config):
    documents = _atom_files(config.server.feeds_dir)
    assert len(documents) >= 10
    for path in documents:
        doc = etree.parse(str(path))
        assert RELAXNG.validate(doc), f"{path}: {RELAXNG.error_log}"
        root = doc.getroot()
        for entry in root.findall(f"{ATOM}entry"):  # RFC 4287's two Schematron rules
            alternate = entry.xpath("a:link[@rel='alternate' or not(@rel)]", namespaces=_NS)
            assert alternate or entry.find(f"{ATOM}content") is not None, path
            assert entry.find(f"{ATOM}author") is not None or root.find(f"{ATOM}author") is not None
        parsed = feedparser.parse(path.read_bytes())
        assert parsed.bozo == 0, (path, parsed.get("bozo_exception"))
        assert parsed.version == "atom10"
    for path in sorted(config.server.feeds_dir.glob("*.rss")):
        parsed = feedparser.parse(path.read_bytes())
        assert parsed.bozo == 0, (path, parsed.get("bozo_exception"))
        assert parsed.version == "rss20"


_NS = {"a": "http://www.w3.org/2005/Atom"}


def test_the_grammar_rejects_what_rfc_4287_forbids():
    """The schema is a transcription: make sure it has teeth."""
    good = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><id>urn:x</id><title>t</title>'
        b"<updated>2024-01-01T00:00:00Z</updated><entry><id>urn:e</id><title>e</title>"
        b"<updated>2024-01-01T00:00:00Z</updated><author><name>N</name></author>"
        b'<content type="html">x</content></entry></feed>'
    )
    assert RELAXNG.validate(etree.fromstring(good))
    for broken in (
        good.replace(b"<id>urn:x</id>", b""),  # a feed needs an id
        good.replace(b"2024-01-01T00:00:00Z</updated><author>", b"yesterday</updated><author>"),
        good.replace(b"<title>t</title>", b"<title>t</title><title>u</title>"),
        good.replace(b'type="html"', b'type="markup"'),
        good.replace(b"<name>N</name>", b""),  # a person needs a name
    ):
        assert not RELAXNG.validate(etree.fromstring(broken)), broken


def test_feedparser_sees_the_right_entries_ids_dates_categories_and_sources(
    published, archive, config
):
    expected = _matching(archive, _feed("partnerships"))
    atom = feedparser.parse((config.server.feeds_dir / "partnerships.atom").read_bytes())
    assert atom.feed.id == f"{BASE}/feeds/partnerships.atom"
    assert atom.feed.title == "NATO partnerships"
    assert atom.feed.subtitle == "Partners & programmes"
    assert {link.rel: link.href for link in atom.feed.links} == {
        "self": f"{BASE}/feeds/partnerships.atom",
        "alternate": f"{BASE}/",
        "prev-archive": f"{BASE}/feeds/partnerships/archive/2024-04.atom",
    }
    assert atom.feed.generator == "nato-partnership-aggregator"
    assert atom.feed.updated_parsed[:6] == max(i.updated for i in expected).timetuple()[:6]
    assert [e.id for e in atom.entries] == [item.atom_id for item in expected]
    for entry, item in zip(atom.entries, expected, strict=True):
        assert entry.published_parsed[:6] == item.published.timetuple()[:6]
        assert entry.updated_parsed[:6] == item.updated.timetuple()[:6]
        assert [t.term for t in entry.tags] == sorted(item.topics)
        assert {t.scheme for t in entry.tags} == {f"{BASE}/topics"}
        assert entry.author == (item.author or "NATO")
        page = f"{BASE}/feeds/items/{item.id}.html"
        if item.origin is Origin.FEED:
            assert entry.link == item.link
            assert [(x.rel, x.href) for x in entry.links] == [
                ("alternate", item.link),
                ("related", page),
            ]
            assert entry.source.title == "NATO News"
            assert entry.source.links[0].href == NATO_FEED
            assert entry.source.id == NATO_FEED and entry.source.updated == entry.updated
        else:  # seeds: no original, so their page, and their text as content
            assert [(x.rel, x.href) for x in entry.links] == [("alternate", page)]
            assert entry.link == page and entry.content
            assert entry.source.title == SEED_SOURCE_TITLE
            assert entry.source.id.startswith("tag:aggregator.invalid,")

    japan = next(e for e in atom.entries if "Japan" in e.title)
    assert japan.content[0].value == (
        "<p>Full text: Japan and NATO agreed on <b>new projects</b>.</p>"
    )
    assert japan.summary == "<p>Japan and NATO agreed on new projects under the ITPP.</p>"
    assert japan.author == "NATO Public Diplomacy Division"

    rss = feedparser.parse((config.server.feeds_dir / "partnerships.rss").read_bytes())
    assert [e.id for e in rss.entries] == [item.atom_id for item in expected]
    for entry, item in zip(rss.entries, expected, strict=True):
        assert entry.published_parsed[:6] == item.published.timetuple()[:6]
        assert [t.term for t in entry.tags] == sorted(item.topics)
        assert entry.author == (item.author or "NATO")


def test_the_all_feed_and_topic_feeds_select_the_right_items(published, archive, config):
    every = archive.list_items()
    assert len(every) == 10 + len(FEED_ENTRIES)
    walked = {slug: _walk_archives(config, slug) for slug in ("all", "partnerships", "gulf")}
    assert sorted(walked["all"]) == sorted(item.atom_id for item in every)
    partner_titles = {
        e.title
        for e in feedparser.parse((config.server.feeds_dir / "partnerships.atom").read_bytes())[
            "entries"
        ]
    }
    assert "Secretary General visits defence industry partners" not in partner_titles
    assert "NATO Secretary General at COP27 virtual event" not in partner_titles
    assert len(walked["partnerships"]) == len(SCORES["partnerships"][1])
    gulf = feedparser.parse((config.server.feeds_dir / "gulf.atom").read_bytes())
    assert [e.title for e in gulf.entries] == [
        "Qatar hosts an Istanbul Cooperation Initiative course"
    ]
    # `limit` bounds the subscription documents; the archives still hold everything
    for suffix in ("atom", "rss"):
        parsed = feedparser.parse((config.server.feeds_dir / f"all.{suffix}").read_bytes())
        assert [e.id for e in parsed.entries] == [item.atom_id for item in every[:4]]
    assert len(json.loads((config.server.feeds_dir / "all.json").read_bytes())["items"]) == 4
    report = {feed.slug: feed for feed in published.feeds}
    assert (report["all"].entries, report["all"].months) == (4, 7)


def test_the_archive_selects_a_feeds_items_by_the_rule_explain_states(archive):
    """The feed-selection rule is written once in SQL (store.topics.feed_carries) and once
    in Python (publish.topics_carrying, for explain): both choose the same items."""
    everything = archive.list_items()
    for feed in _feeds():
        # None: the feed carries every item; []: no topic of the feed puts the item in it
        by_rule = [
            item.id for item in everything if publish.topics_carrying(feed, item.topics) != []
        ]
        assert [item.id for item in _matching(archive, feed)] == by_rule, feed.slug
        months = sorted({item.published.strftime("%Y-%m") for item in _matching(archive, feed)})
        assert archive.feed_months(feed.topics, feed.min_score) == months, feed.slug


def test_a_feed_no_item_matches_is_still_a_valid_empty_feed(published, config):
    path = config.server.feeds_dir / "nothing.atom"
    doc = etree.parse(str(path))
    assert RELAXNG.validate(doc), RELAXNG.error_log
    assert _entry_ids(doc.getroot()) == []
    updated = doc.getroot().findtext(f"{ATOM}updated")
    assert updated != EMPTY_FEED_UPDATED.isoformat()  # never 1970: when it was first published
    first = datetime.fromisoformat(updated)
    assert abs((datetime.now(UTC) - first).total_seconds()) < 600
    rss = etree.parse(str(config.server.feeds_dir / "nothing.rss")).getroot()
    assert "1970" not in rss.findtext("channel/lastBuildDate")
    assert "prev-archive" not in _links(doc.getroot())
    assert not (config.server.feeds_dir / "nothing").exists()
    assert feedparser.parse(path.read_bytes()).bozo == 0
    assert feedparser.parse((config.server.feeds_dir / "nothing.rss").read_bytes()).bozo == 0
    assert (
        _json_feed_problems(json.loads((config.server.feeds_dir / "nothing.json").read_bytes()))
        == []
    )


# --- JSON Feed 1.1 ------------------------------------------------------------------------------

_TOP_LEVEL = {
    "version", "title", "home_page_url", "feed_url", "description", "user_comment", "next_url",
    "icon", "favicon", "authors", "author", "language", "expired", "hubs", "items",
}  # fmt: skip
_ITEM_KEYS = {
    "id", "url", "external_url", "title", "content_html", "content_text", "summary", "image",
    "banner_image", "date_published", "date_modified", "authors", "author", "tags", "language",
    "attachments",
}  # fmt: skip


def _json_feed_problems(doc: dict) -> list[str]:
    """The rules of https://www.jsonfeed.org/version/1.1/ that a document can break."""
    problems = []
    if doc.get("version") != "https://jsonfeed.org/version/1.1":
        problems.append("version must be the 1.1 URL")
    if not isinstance(doc.get("title"), str):
        problems.append("title (string) is required")
    if not isinstance(doc.get("items"), list):
        problems.append("items (array) is required")
    problems += [f"unknown key {k}" for k in doc if k not in _TOP_LEVEL and not k.startswith("_")]
    for key in ("home_page_url", "feed_url"):
        if key in doc and urlsplit(doc[key]).scheme not in ("http", "https"):
            problems.append(f"{key} must be a URL")
    problems += _authors_problems(doc.get("authors", []), "feed")
    for n, item in enumerate(doc.get("items", [])):
        where = f"items[{n}]"
        if not isinstance(item.get("id"), str) or not item["id"]:
            problems.append(f"{where}.id (non-empty string) is required")
        if not any(isinstance(item.get(k), str) for k in ("content_html", "content_text")):
            problems.append(f"{where} needs content_html or content_text")
        problems += [
            f"{where}: unknown key {k}" for k in item if k not in _ITEM_KEYS and k[0] != "_"
        ]
        for key in ("date_published", "date_modified"):
            if key in item:
                try:
                    datetime.fromisoformat(item[key].replace("Z", "+00:00")).utcoffset()
                except (ValueError, AttributeError):
                    problems.append(f"{where}.{key} is not RFC 3339")
                if not item[key].endswith("Z") and item[key][-6] not in "+-":
                    problems.append(f"{where}.{key} has no time zone")
        if "tags" in item and not all(isinstance(t, str) for t in item["tags"]):
            problems.append(f"{where}.tags must be strings")
        problems += _authors_problems(item.get("authors", []), where)
    return problems


def _authors_problems(authors: list, where: str) -> list[str]:
    if not isinstance(authors, list):
        return [f"{where}.authors must be an array"]
    return [
        f"{where}.authors[{n}] needs a name, url or avatar"
        for n, author in enumerate(authors)
        if not (set(author) & {"name", "url", "avatar"})
    ]


def test_json_feed_follows_version_1_1(published, archive, config):
    for path in sorted(config.server.feeds_dir.glob("*.json")):
        doc = json.loads(path.read_bytes())
        assert _json_feed_problems(doc) == [], path
    doc = json.loads((config.server.feeds_dir / "partnerships.json").read_bytes())
    expected = _matching(archive, _feed("partnerships"))
    assert [i["id"] for i in doc["items"]] == [item.atom_id for item in expected]
    assert doc["feed_url"] == f"{BASE}/feeds/partnerships.json"
    japan = next(i for i in doc["items"] if "Japan" in i["title"])
    assert japan["content_html"].startswith("<p>Full text")
    assert japan["summary"] == "Japan and NATO agreed on new projects under the ITPP."
    assert japan["tags"] == ["partnerships"]
    assert japan["_aggregator"]["source"] == {"title": "NATO News", "url": NATO_FEED}
    assert _json_feed_problems({"version": "1", "items": [{"id": ""}]}) != []  # it has teeth


# --- escaping -----------------------------------------------------------------------------------


def test_markup_in_a_title_is_text_and_a_script_in_a_summary_is_gone(published, config):
    folder = config.server.feeds_dir
    for path in [*folder.glob("partnerships.*"), folder / "partnerships/archive/2024-04.atom"]:
        assert b"<script" not in path.read_bytes().lower(), path
        assert b"onerror" not in path.read_bytes(), path
    atom = etree.parse(str(folder / "partnerships.atom")).getroot()
    title = next(e for e in atom.iter(f"{ATOM}title") if "Partners meet" in (e.text or ""))
    assert title.text == SCRIPT_TITLE and len(title) == 0 and title.get("type") is None
    rss = etree.parse(str(folder / "partnerships.rss")).getroot()
    assert SCRIPT_TITLE in [t.text for t in rss.iter("title")]
    doc = json.loads((folder / "partnerships.json").read_bytes())
    item = next(i for i in doc["items"] if i["title"] == SCRIPT_TITLE)
    assert "script" not in item["content_html"] and "Summary with markup" in item["content_html"]
    parsed = feedparser.parse((folder / "partnerships.atom").read_bytes())
    assert any(e.title == SCRIPT_TITLE for e in parsed.entries)


def test_markup_in_a_source_title_is_text(published, archive, config):
    hostile = "NATO <script>alert(1)</script> News"
    archive.sync_sources([SourceSpec("nato-news", hostile, NATO_FEED)])
    publish.publish_feeds(archive, config, ["gulf"])
    folder = config.server.feeds_dir
    for path in folder.glob("gulf.*"):
        assert b"<script" not in path.read_bytes(), path
    atom = etree.parse(str(folder / "gulf.atom")).getroot()
    assert atom.findtext(f"{ATOM}entry/{ATOM}source/{ATOM}title") == hostile
    rss = etree.parse(str(folder / "gulf.rss")).getroot()
    assert [s.text for s in rss.iter("source")] == [hostile]
    doc = json.loads((folder / "gulf.json").read_bytes())
    assert doc["items"][0]["_aggregator"]["source"]["title"] == hostile


# --- stability and writes -------------------------------------------------------------------


def test_a_second_publish_writes_nothing(published, archive, config):
    folder = config.server.feeds_dir
    before = _files(folder)
    past = _age_everything(folder)
    again = publish.publish_all(archive, config)
    assert again.written == () and again.removed == ()
    assert again.unchanged == len(before)
    assert _files(folder) == before
    assert _changed_since(folder, past) == set()
    assert not [p for p in folder.rglob("*") if p.name.startswith(".")]  # no temp files left


def test_same_archive_gives_the_same_bytes_after_a_restart(published, tmp_path, config):
    """Nothing in a document comes from the clock: a new process, another day, same bytes."""
    other = _config(tmp_path, tmp_path / "elsewhere")
    with Archive(tmp_path / "a.db") as reopened:
        publish.publish_all(reopened, other, now=datetime(2031, 1, 1, tzinfo=UTC))
    mine, theirs = _files(config.server.feeds_dir), _files(other.server.feeds_dir)
    assert [p.relative_to(config.server.feeds_dir) for p in mine] == [
        p.relative_to(other.server.feeds_dir) for p in theirs
    ]
    assert list(mine.values()) == list(theirs.values())


def test_one_new_item_rewrites_only_the_current_documents_and_its_month(published, archive, config):
    folder = config.server.feeds_dir
    past = _age_everything(folder)
    entry = _entry(300010, "Partners and Allies meet on resilience", "2024-04-25", "<p>New.</p>")
    counts = pipeline.store_entries(archive, [entry], "nato-news", Origin.FEED)
    archive.save_scores([TopicScore(counts.item_ids[0], "partnerships", 3.0, matched=True)])
    touched = publish.feeds_touched(config, {"partnerships"})
    assert touched == {"partnerships", "all"}
    report = publish.publish_feeds(archive, config, sorted(touched))
    expected = {
        f"{slug}{suffix}"
        for slug in ("partnerships", "all")
        for suffix in (".atom", ".rss", ".json", "/archive/2024-04.atom")
    } | {f"items/{counts.item_ids[0]}.html"}  # the new item's page
    assert _changed_since(folder, past) == expected
    assert {str(p.relative_to(folder)) for p in report.written} == expected


def test_entry_ids_survive_republishing_a_revision_and_a_seed_merge(published, archive, config):
    folder = config.server.feeds_dir
    before = _walk_archives(config, "all")
    japan = FEED_ENTRIES[0]
    revised = replace(japan, title=japan.title + " (updated)")
    seed_title = "NATO meets with partners to reaffirm commitment ahead of Vilnius Summit"
    live = _entry(208000, seed_title, "2023-05-24", "<p>The feed's version.</p>")
    seen = datetime(2024, 3, 5, tzinfo=UTC)  # a revision is dated when it is seen
    counts = pipeline.store_entries(archive, [revised, live], "nato-news", Origin.FEED, seen)
    assert (counts.new, counts.updated) == (0, 2)
    publish.publish_all(archive, config)
    after = _walk_archives(config, "all")
    assert sorted(after) == sorted(before)
    parsed = feedparser.parse((folder / "all/archive/2024-03.atom").read_bytes())
    entry = next(
        e for e in parsed.entries if e.id == "https://www.nato.int/cps/en/natohq/news_300001.htm"
    )
    assert entry.title.endswith("(updated)")
    assert entry.updated_parsed[:3] == (2024, 3, 5)
    merged = feedparser.parse((folder / "all/archive/2023-05.atom").read_bytes()).entries[0]
    assert merged.id.startswith("tag:aggregator.invalid,2023-05-23:seed/")  # the seed's id stays
    assert merged.link == "https://www.nato.int/cps/en/natohq/news_208000.htm"


def test_a_month_without_items_any_more_is_removed_and_relinked(published, archive, config):
    folder = config.server.feeds_dir / "partnerships" / "archive"
    assert (folder / "2021-07.atom").exists() and (folder / "2022-02.atom").exists()
    old = archive.list_items(topics=["partnerships"])[-2]  # the February 2022 speech
    assert old.published.strftime("%Y-%m") == "2022-02"
    archive.save_scores([TopicScore(old.id, "partnerships", 0.2, matched=False)])
    report = publish.publish_feeds(archive, config, ["partnerships"])
    assert report.removed == (folder / "2022-02.atom",)
    assert not (folder / "2022-02.atom").exists()
    oldest = _links(etree.parse(str(folder / "2021-07.atom")).getroot())
    assert oldest["next-archive"].endswith("/2022-11.atom")
    assert len(_walk_archives(config, "partnerships")) == len(SCORES["partnerships"][1]) - 1


def _same_as_a_full_publish(config: Config, archive: Archive, tmp_path: Path) -> None:
    full = _config(tmp_path, tmp_path / "full")
    publish.publish_all(archive, full)
    mine, theirs = _files(config.server.feeds_dir), _files(full.server.feeds_dir)
    assert [p.relative_to(config.server.feeds_dir) for p in mine] == [
        p.relative_to(full.server.feeds_dir) for p in theirs
    ]
    assert list(mine.values()) == list(theirs.values())


def test_months_limit_the_archive_documents_rendered_again(published, archive, config, tmp_path):
    folder = config.server.feeds_dir
    past = _age_everything(folder)
    japan = FEED_ENTRIES[0]  # March 2024, in every feed that carries partnerships
    revised = replace(japan, title=japan.title + " (updated)")
    counts = pipeline.store_entries(archive, [revised], "nato-news", Origin.FEED, japan.published)
    report = publish.publish_feeds(archive, config, ["all"], months=[])
    assert _changed_since(folder, past) == set()  # "all" shows its newest 4: not this one
    assert report.unchanged == len(_files(folder / "all")) + 3  # the current documents too
    months, changed = ["2024-03"], counts.item_ids
    publish.publish_feeds(archive, config, ["all", "partnerships"], months, changed)
    assert _changed_since(folder, past) == {
        "all/archive/2024-03.atom",
        *(f"partnerships{suffix}" for suffix in (".atom", ".rss", ".json")),
        "partnerships/archive/2024-03.atom",
        f"items/{changed[0]}.html",
    }
    _same_as_a_full_publish(config, archive, tmp_path)


def test_a_month_that_appears_or_goes_relinks_its_neighbours(published, archive, config, tmp_path):
    """Given only the months of the changed items, publish still rewrites the months whose
    prev/next-archive links change: the result is what a full publish writes."""
    entry = _entry(300011, "Partners meet in June", "2024-06-20", "<p>New.</p>")
    counts = pipeline.store_entries(archive, [entry], "nato-news", Origin.FEED)
    archive.save_scores([TopicScore(counts.item_ids[0], "partnerships", 3.0, matched=True)])
    publish.publish_feeds(archive, config, ["partnerships", "all"], months=["2024-06"])
    _same_as_a_full_publish(config, archive, tmp_path)
    old = archive.list_items(topics=["partnerships"])[-2]  # February 2022: its month goes
    archive.save_scores([TopicScore(old.id, "partnerships", 0.2, matched=False)])
    report = publish.publish_feeds(archive, config, ["partnerships", "all"], ["2022-02"], [old.id])
    assert report.removed == (config.server.feeds_dir / "partnerships/archive/2022-02.atom",)
    shutil.rmtree(tmp_path / "full")
    _same_as_a_full_publish(config, archive, tmp_path)


def test_months_to_render():
    months = ["2024-01", "2024-02", "2024-04", "2024-05"]
    on_disk = set(months)
    assert publish.months_to_render(months, None, on_disk) == on_disk
    assert publish.months_to_render(months, frozenset(), on_disk) == set()
    assert publish.months_to_render(months, frozenset({"2024-02", "1999-01"}), on_disk) == {
        "2024-02"
    }
    gone = on_disk | {"2024-03"}  # its neighbours link to it
    assert publish.months_to_render(months, frozenset(), gone) == {"2024-02", "2024-04"}
    new = on_disk - {"2024-05"}  # no document yet; the month before links to it now
    assert publish.months_to_render(months, frozenset(), new) == {"2024-04", "2024-05"}
    assert publish.months_to_render(months, frozenset(), set()) == on_disk


def test_files_are_written_atomically_and_readable(tmp_path):
    from aggregator.publish.files import write_if_changed

    path = tmp_path / "out" / "x.atom"
    assert write_if_changed(path, b"one")
    assert not write_if_changed(path, b"one")
    assert write_if_changed(path, b"two") and path.read_bytes() == b"two"
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["x.atom"]


def test_unknown_feed_slug_is_one_clear_error(archive, config):
    with pytest.raises(UsageError, match='no feed "nope"'):
        publish.publish_feeds(archive, config, ["partnerships", "nope"])
    assert not config.server.feeds_dir.exists()


def test_feeds_touched_by_changed_items():
    config = _config(Path("/nowhere"))
    assert publish.feeds_touched(config, set()) == {"all"}
    assert publish.feeds_touched(config, {"gulf"}) == {"all", "gulf"}
    assert publish.feeds_touched(config, ["partnerships", "gulf", "other"]) == {
        "all",
        "gulf",
        "partnerships",
    }


# --- RFC 5005 ---------------------------------------------------------------------------------


def _walk_archives(config: Config, slug: str) -> list[str]:
    """Walk a feed's history like an RFC 5005 client: from the subscription document back
    through prev-archive, then forward again through next-archive. Returns the ids the
    archive documents hold (every one must appear in exactly one month)."""
    current_url = f"{BASE}/feeds/{slug}.atom"
    current = etree.parse(str(_local(current_url, config))).getroot()
    assert current.find(f"{FH}archive") is None
    url, backwards, ids = _links(current).get("prev-archive"), [], []
    while url:
        doc = etree.parse(str(_local(url, config))).getroot()
        links = _links(doc)
        assert doc.find(f"{FH}archive") is not None, url
        assert links["self"] == url and links["current"] == current_url
        assert doc.findtext(f"{ATOM}id") == current.findtext(f"{ATOM}id")
        month = url.rsplit("/", 1)[1].removesuffix(".atom")
        published = [e.findtext(f"{ATOM}published") for e in doc.findall(f"{ATOM}entry")]
        assert published and all(p.startswith(month) for p in published), url
        assert doc.findtext(f"{ATOM}updated") == max(
            e.findtext(f"{ATOM}updated") for e in doc.findall(f"{ATOM}entry")
        )
        ids += _entry_ids(doc)
        backwards.append((url, links.get("next-archive")))
        url = links.get("prev-archive")
    # forwards: each month's next-archive is the month we came from
    for (newer, _), (_, older_next) in itertools.pairwise(backwards):
        assert older_next == newer
    if backwards:
        assert backwards[0][1] is None  # the newest month has no next
    assert len(ids) == len(set(ids)), "an item appears in two months"
    assert set(_entry_ids(current)) <= set(ids)
    return ids


def test_archive_documents_form_a_chain_with_every_item_exactly_once(published, archive, config):
    for slug in ("all", "partnerships", "gulf", "nothing"):
        ids = _walk_archives(config, slug)
        assert sorted(ids) == sorted(i.atom_id for i in _matching(archive, _feed(slug))), slug
    months = sorted(p.stem for p in (config.server.feeds_dir / "all" / "archive").iterdir())
    assert months == ["2021-07", "2022-02", "2022-10", "2022-11", "2023-05", "2024-03", "2024-04"]


# --- the command line and a real feed reader ------------------------------------------------------


@pytest.mark.slow
def test_publish_command_prints_one_line_per_feed_and_rewrites_nothing_twice(project):
    project.cli("import-seeds")
    shutil.rmtree(project.feeds)  # whatever the import published
    first = project.cli("publish").stdout.splitlines()
    assert len(first) == 4  # the feeds in config.toml
    assert "all: 10 entries, 5 archive months, 8 written, 0 unchanged" in first
    assert (project.feeds / "all.atom").exists() and (project.feeds / "all.json").exists()
    second = project.cli("publish", "all").stdout.splitlines()
    assert second == ["all: 10 entries, 5 archive months, 0 written, 8 unchanged"]
    bad = project.cli("publish", "nope", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith('error: no feed "nope"')


@pytest.mark.skipif(shutil.which("newsboat") is None, reason="newsboat is not installed")
def test_newsboat_reads_the_current_and_archive_documents(published, archive, config, tmp_path):
    folder = config.server.feeds_dir
    documents = [folder / "all.atom", *sorted((folder / "all" / "archive").glob("*.atom"))]
    urls = tmp_path / "urls"
    urls.write_text("".join(f"file://{p}\n" for p in [*documents, folder / "gulf.rss"]))
    (tmp_path / "conf").write_text("")
    home = tmp_path / "home"
    home.mkdir()
    cache = tmp_path / "cache.db"
    subprocess.run(
        ["newsboat", "-u", urls, "-C", tmp_path / "conf", "-c", cache, "-x", "reload"],
        check=True,
        timeout=60,
        capture_output=True,
        env={**os.environ, "HOME": str(home)},
    )
    with sqlite3.connect(cache) as db:
        feeds = dict(db.execute("SELECT rssurl, title FROM rss_feed"))
        rows = db.execute("SELECT guid, title, pubDate FROM rss_item").fetchall()
    assert feeds[f"file://{folder / 'all.atom'}"] == "NATO news"
    assert feeds[f"file://{folder / 'gulf.rss'}"] == "Gulf partners"
    # newsboat keeps one row per guid: every archived item exactly once
    every = {item.atom_id: item for item in archive.list_items()}
    assert sorted(guid for guid, _, _ in rows) == sorted(every)
    for guid, title, pub_date in rows:
        assert title == every[guid].title
        assert pub_date == int(every[guid].published.timestamp())
