"""serve: the real uvicorn server on a loopback port, checked with httpx and raw sockets."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from pathlib import Path

import feedparser
import httpx
import pytest

from aggregator import config as config_module
from aggregator import pipeline
from aggregator.models import Entry, FetchLogEntry, TopicScore
from aggregator.serve import make_server
from aggregator.serve.files import accepts_gzip, etag_matches
from aggregator.serve.pages import partnership_feed
from aggregator.store import Archive
from aggregator.store.sources import PollOutcome, SourceSpec
from tests.conftest import ROOT

HOSTILE_TITLE = "<script>alert(1)</script>"
MAX_AGE = 123
BASE_URL = "https://feeds.example.org/nato"
EXTRA_FEEDS = """
[[feeds]]
slug = "outside"
title = "A feed whose file is a symlink out of feeds/"

[[feeds]]
slug = "republished"
title = "A feed that is republished during the tests"
"""
EXTENSIONS = {
    "atom": "application/atom+xml; charset=utf-8",
    "rss": "application/rss+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}


# --- documents like the ones publish writes ---------------------------------------------------


def atom_document(slug: str, title: str, version: int = 1, entries: int = 5) -> bytes:
    items = "".join(
        f"""  <entry>
    <id>https://www.nato.int/cps/en/natohq/news_{1000 + n}.htm</id>
    <title>Partnership story {n} (version {version})</title>
    <link href="https://www.nato.int/cps/en/natohq/news_{1000 + n}.htm"/>
    <updated>2024-05-0{1 + n % 9}T12:00:00Z</updated>
    <summary>NATO and its partners discussed cooperation and interoperability.</summary>
  </entry>
"""
        for n in range(entries)
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <id>{BASE_URL}/feeds/{slug}.atom</id>
  <title>{title}</title>
  <updated>2024-05-09T12:00:00Z</updated>
  <author><name>NATO partnership aggregator</name></author>
  <link rel="self" href="{BASE_URL}/feeds/{slug}.atom"/>
{items}</feed>
""".encode()


def rss_document(slug: str, title: str, entries: int = 5) -> bytes:
    items = "".join(
        f"""    <item>
      <title>Partnership story {n}</title>
      <link>https://www.nato.int/cps/en/natohq/news_{1000 + n}.htm</link>
      <guid>https://www.nato.int/cps/en/natohq/news_{1000 + n}.htm</guid>
      <pubDate>Thu, 0{1 + n % 9} May 2024 12:00:00 GMT</pubDate>
      <description>NATO and its partners discussed cooperation and interoperability.</description>
    </item>
"""
        for n in range(entries)
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0">
  <channel>
    <title>{title}</title>
    <link>{BASE_URL}/</link>
    <description>{title}</description>
{items}  </channel>
</rss>
""".encode()


def json_document(slug: str, title: str, entries: int = 5) -> bytes:
    return json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": title,
            "feed_url": f"{BASE_URL}/feeds/{slug}.json",
            "items": [
                {
                    "id": f"https://www.nato.int/cps/en/natohq/news_{1000 + n}.htm",
                    "title": f"Partnership story {n}",
                    "content_text": "NATO and its partners discussed cooperation.",
                    "date_published": f"2024-05-0{1 + n % 9}T12:00:00Z",
                }
                for n in range(entries)
            ],
        },
        indent=2,
    ).encode()


def write_atomically(path: Path, data: bytes) -> None:
    """As publish does: a temporary file renamed over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


PUBLISHED = datetime(2024, 5, 9, 12, tzinfo=UTC).timestamp()  # the files' mtime


def write_feeds(config: config_module.Config) -> None:
    folder = config.server.feeds_dir
    for feed in config.feeds:
        write_atomically(folder / f"{feed.slug}.atom", atom_document(feed.slug, feed.title))
        write_atomically(folder / f"{feed.slug}.rss", rss_document(feed.slug, feed.title))
        write_atomically(folder / f"{feed.slug}.json", json_document(feed.slug, feed.title))
    first = config.feeds[0].slug
    write_atomically(
        folder / first / "archive" / "2024-05.atom", atom_document(first, "May 2024", entries=3)
    )
    (folder / "outside.atom").unlink()
    (folder / "outside.atom").symlink_to(config.path)  # config.toml, outside feeds/
    write_atomically(folder / "unlisted.atom", atom_document("unlisted", "Not in config"))
    for path in folder.rglob("*.*"):
        os.utime(path, (PUBLISHED, PUBLISHED), follow_symlinks=False)


# --- a project with an archive, and the real server in a thread -------------------------------


def make_site(root: Path) -> config_module.Config:
    root.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    for old, new in (
        ('base_url = "http://127.0.0.1:8080"', f'base_url = "{BASE_URL}"'),
        ("cache_max_age = 300", f"cache_max_age = {MAX_AGE}"),
    ):
        assert old in text
        text = text.replace(old, new)
    (root / "config.toml").write_text(text + EXTRA_FEEDS, encoding="utf-8")
    config = config_module.load(root / "config.toml")
    write_feeds(config)
    return config


def fill_archive(config: config_module.Config) -> None:
    """Seeded items, a hostile one in the partnership feed, and one poll of the NATO source."""
    with Archive(config.archive.database) as archive:
        archive.sync_sources([SourceSpec(s.id, s.title, s.url, s.enabled) for s in config.sources])
        source = config.sources[0]
        seen = datetime(2024, 5, 9, 12, tzinfo=UTC)
        entries = [
            Entry(
                title=HOSTILE_TITLE,
                link="https://www.nato.int/cps/en/natohq/news_1.htm",
                guid="https://www.nato.int/cps/en/natohq/news_1.htm",
                summary_text="x",
                published=seen,
            ),
            Entry(
                title="A partner story whose link is a script",
                link="javascript:alert(2)",
                guid="urn:hostile:2",
                summary_text="y",
                published=seen - timedelta(days=1),
            ),
        ]
        counts = pipeline.store_entries(archive, entries, source.id, seen=seen)
        topic = partnership_feed(config).topics[0]
        archive.save_scores(TopicScore(i, topic, 9.0, True) for i in counts.item_ids)
        pipeline.import_seeds(archive, [config.archive.seeds])
        archive.record_poll(
            source.id,
            PollOutcome(200, None, 0, seen + timedelta(minutes=30)),
            FetchLogEntry(seen, source.id, source.url, 200, 1000, 12.0, new_items=2),
        )
        archive.record_publish_success(datetime.now(UTC))  # write_feeds stands for the publish


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(
    config: config_module.Config, app=None, port: int | None = None, **options
) -> Iterator[str]:
    """The real server for `config` in a thread, on `port` or a free one; `options` go to
    make_server (e.g. limits)."""
    port = port or free_port()
    server = make_server(config, app, host="127.0.0.1", port=port, **options)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[config_module.Config, str]]:
    root = tmp_path_factory.mktemp("site")
    shutil.copytree(ROOT / "archive" / "seed", root / "archive" / "seed")
    config = make_site(root)
    fill_archive(config)
    with serving(config) as base:
        yield config, base


@pytest.fixture(scope="module")
def client(site) -> Iterator[httpx.Client]:
    _, base = site
    with httpx.Client(base_url=base, headers={"accept-encoding": "identity"}) as client:
        yield client


def raw_get(base: str, target: bytes) -> tuple[int, bytes]:
    """Send the request line exactly as given (httpx would normalize '..')."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


# --- feed documents ---------------------------------------------------------------------------


@pytest.mark.parametrize("ext", sorted(EXTENSIONS))
def test_each_format_is_served_with_its_type_and_cache_headers(site, client, ext):
    config, _ = site
    slug = config.feeds[0].slug
    path = config.server.feeds_dir / f"{slug}.{ext}"
    response = client.get(f"/feeds/{slug}.{ext}")
    assert response.status_code == 200
    assert response.content == path.read_bytes()
    headers = response.headers
    assert headers["content-type"] == EXTENSIONS[ext]
    assert headers["content-length"] == str(path.stat().st_size)
    assert "content-encoding" not in headers
    assert headers["cache-control"] == f"public, max-age={MAX_AGE}"
    assert headers["last-modified"] == formatdate(int(path.stat().st_mtime), usegmt=True)
    assert headers["vary"].lower() == "accept-encoding"
    assert headers["x-content-type-options"] == "nosniff"
    etag = headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10  # strong, not W/


def test_gzip_is_a_representation_with_its_own_etag(site, client):
    config, _ = site
    slug = config.feeds[0].slug
    url = f"/feeds/{slug}.atom"
    identity = client.get(url)
    with client.stream("GET", url, headers={"accept-encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["content-length"] == str(len(raw)) and len(raw) < len(identity.content)
    assert gzip.decompress(raw) == identity.content
    assert response.headers["vary"].lower() == "accept-encoding"
    assert response.headers["etag"] not in (identity.headers["etag"], "")
    assert response.headers["last-modified"] == identity.headers["last-modified"]
    assert response.headers["content-type"] == EXTENSIONS["atom"]
    for accept, gzipped in [
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.5", True),
        ("*", True),
        ("x-gzip", True),
        ("gzip;q=0", False),
        ("gzip;q=0, *", False),
        ("*;q=0", False),
        ("identity", False),
        ("br", False),
        ("", False),
    ]:
        answer = client.get(url, headers={"accept-encoding": accept})
        assert ("content-encoding" in answer.headers) is gzipped, accept
        assert answer.content == identity.content  # httpx decodes gzip


@pytest.mark.parametrize("accept", ["identity", "gzip"])
def test_if_none_match_answers_304_for_each_representation(site, client, accept):
    config, _ = site
    url = f"/feeds/{config.feeds[0].slug}.atom"
    first = client.get(url, headers={"accept-encoding": accept})
    etag = first.headers["etag"]
    for validator in [etag, f'"nope", {etag}', f"W/{etag}", "*", f'"a",W/"b" , {etag}']:
        response = client.get(url, headers={"accept-encoding": accept, "if-none-match": validator})
        assert response.status_code == 304, validator
        assert response.content == b""
        for name in ("etag", "cache-control", "last-modified", "vary"):
            assert response.headers[name] == first.headers[name], name
        assert "content-encoding" not in response.headers
    other = "identity" if accept == "gzip" else "gzip"
    # the other representation's validator does not match this one
    assert (
        client.get(url, headers={"accept-encoding": other, "if-none-match": etag}).status_code
        == 200
    )
    # If-None-Match takes precedence over If-Modified-Since
    stale = client.get(
        url,
        headers={
            "accept-encoding": accept,
            "if-none-match": '"something-else"',
            "if-modified-since": first.headers["last-modified"],
        },
    )
    assert stale.status_code == 200 and stale.headers["etag"] == etag


@pytest.mark.parametrize("accept", ["identity", "gzip"])
def test_if_modified_since_answers_304_for_each_representation(site, client, accept):
    config, _ = site
    url = f"/feeds/{config.feeds[0].slug}.atom"
    first = client.get(url, headers={"accept-encoding": accept})
    modified = first.headers["last-modified"]

    def status(since: str) -> int:
        headers = {"accept-encoding": accept, "if-modified-since": since}
        response = client.get(url, headers=headers)
        if response.status_code == 304:
            assert response.headers["etag"] == first.headers["etag"]
            assert response.headers["cache-control"] == f"public, max-age={MAX_AGE}"
        return response.status_code

    assert modified == formatdate(PUBLISHED, usegmt=True)
    assert status(modified) == 304
    assert status(formatdate(PUBLISHED + 86400, usegmt=True)) == 304
    assert status(formatdate(PUBLISHED - 1, usegmt=True)) == 200
    assert status(formatdate(time.time() + 86400, usegmt=True)) == 200  # future: ignored
    assert status("yesterday, around noon") == 200


def test_head_has_the_get_headers_and_no_body(site, client):
    config, _ = site
    url = f"/feeds/{config.feeds[0].slug}.rss"
    for accept in ("identity", "gzip"):
        get = client.get(url, headers={"accept-encoding": accept})
        head = client.head(url, headers={"accept-encoding": accept})
        assert head.status_code == 200 and head.content == b""
        assert {k: v for k, v in head.headers.items() if k != "date"} == {
            k: v for k, v in get.headers.items() if k != "date"
        }
        conditional = client.head(
            url, headers={"accept-encoding": accept, "if-none-match": get.headers["etag"]}
        )
        assert conditional.status_code == 304


def test_archive_pages_are_served(site, client):
    config, _ = site
    slug = config.feeds[0].slug
    page = client.get(f"/feeds/{slug}/archive/2024-05.atom")
    assert page.status_code == 200
    assert page.headers["content-type"] == EXTENSIONS["atom"]
    assert (
        page.content == (config.server.feeds_dir / slug / "archive" / "2024-05.atom").read_bytes()
    )
    assert client.get(f"/feeds/{slug}/archive/2024-04.atom").status_code == 404
    assert client.get(f"/feeds/{slug}/archive/2024-13.atom").status_code == 404
    assert client.get(f"/feeds/{slug}/archive/2024-05.rss").status_code == 404


def test_feedparser_reads_every_feed_over_http(site):
    config, base = site
    for feed in config.feeds:
        if feed.slug == "outside":
            continue
        for ext in ("atom", "rss"):
            url = f"{base}/feeds/{feed.slug}.{ext}"
            parsed = feedparser.parse(url)
            assert parsed.status == 200 and not parsed.bozo, (url, parsed.get("bozo_exception"))
            assert parsed.feed.title == feed.title and len(parsed.entries) == 5
            again = feedparser.parse(url, etag=parsed.etag, modified=parsed.modified)
            assert again.status == 304 and again.entries == []
        # feedparser 6 has no JSON Feed parser: check the JSON documents as JSON Feed 1.1
        document = httpx.get(f"{base}/feeds/{feed.slug}.json").json()
        assert document["version"] == "https://jsonfeed.org/version/1.1"
        assert document["title"] == feed.title and len(document["items"]) == 5


def test_a_republish_is_picked_up_without_a_restart(site, client):
    config, _ = site
    path = config.server.feeds_dir / "republished.atom"
    first = client.get("/feeds/republished.atom")
    first_gz = client.get("/feeds/republished.atom", headers={"accept-encoding": "gzip"})
    write_atomically(path, atom_document("republished", "Republished", version=2))
    second = client.get("/feeds/republished.atom")
    assert second.status_code == 200
    assert second.content == path.read_bytes() and b"(version 2)" in second.content
    assert second.headers["etag"] != first.headers["etag"]
    old = client.get("/feeds/republished.atom", headers={"if-none-match": first.headers["etag"]})
    assert old.status_code == 200 and old.content == second.content
    new_gz = client.get(
        "/feeds/republished.atom",
        headers={"accept-encoding": "gzip", "if-none-match": first_gz.headers["etag"]},
    )
    assert new_gz.status_code == 200 and new_gz.headers["etag"] != first_gz.headers["etag"]
    path.unlink()
    assert client.get("/feeds/republished.atom").status_code == 404


def test_readers_get_whole_versions_while_feeds_are_republished(tmp_path):
    config = make_site(tmp_path / "site")
    slug = config.feeds[0].slug
    path = config.server.feeds_dir / f"{slug}.atom"
    initial = path.read_bytes()
    versions = [atom_document(slug, "Republished", version=n) for n in range(2, 40)]
    answers: list[tuple[str, bytes]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def read(base: str, accept: str) -> None:
        try:
            with httpx.Client(headers={"accept-encoding": accept}) as client:
                while not stop.is_set():
                    response = client.get(f"{base}/feeds/{slug}.atom")
                    assert response.status_code == 200
                    answers.append((response.headers["etag"], response.content))
        except BaseException as exc:
            failures.append(exc)

    with serving(config) as base:
        readers = [
            threading.Thread(target=read, args=(base, accept))
            for accept in ("gzip", "identity", "gzip", "identity")
        ]
        for reader in readers:
            reader.start()
        for version in versions:
            write_atomically(path, version)
            time.sleep(0.005)
        stop.set()
        for reader in readers:
            reader.join(timeout=10)
        last = httpx.get(f"{base}/feeds/{slug}.atom")
    assert failures == []
    assert last.content == versions[-1]
    known = {initial, *versions}
    by_etag: dict[str, bytes] = {}
    for etag, body in answers:
        assert body in known  # never a torn or mixed document
        assert by_etag.setdefault(etag, body) == body  # one ETag, one document
    assert len({body for _, body in answers}) > 1


# --- safety -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        b"/feeds/../config.toml",
        b"/feeds/%2e%2e/config.toml",
        b"/feeds/%2E%2E%2Fconfig.toml",
        b"/feeds/..%2fconfig.toml",
        b"/feeds/..%5cconfig.toml",
        b"/feeds/..\\config.toml",
        b"/feeds//etc/passwd",
        b"/feeds/%2fetc%2fpasswd",
        b"/feeds/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        b"/feeds/partnerships/../../config.toml",
        b"/feeds/partnerships/archive/..%2f..%2f..%2fconfig.toml",
        b"/feeds/partnerships.atom%00",
        b"/feeds/partnerships.atom%00.txt",
        b"/feeds/PARTNERSHIPS.atom",
        b"/feeds/partnerships.toml",
        b"/feeds/partnerships.atom/",
        b"/feeds/",
        b"/feeds",
        b"/feeds/partnerships",
        b"/feeds/partnerships/archive/",
        b"/feeds/partnerships/archive",
        b"/feeds/unlisted.atom",
        b"/feeds/outside.atom",
        b"/../config.toml",
        b"/config.toml",
        b"//etc/passwd",
        b"/feeds/%00",
    ],
)
def test_nothing_outside_the_feeds_can_be_reached(site, target):
    _, base = site
    status, data = raw_get(base, target)
    assert status == 404, target
    assert b"[server]" not in data and b"root:" not in data
    assert b"text/html" in data.split(b"\r\n\r\n")[0]


def test_a_raw_nul_byte_is_refused(site):
    _, base = site
    status, _ = raw_get(base, b"/feeds/partnerships.atom\x00")
    assert status in (400, 404)


def test_unknown_slugs_get_a_short_html_404(client):
    response = client.get("/feeds/no-such-feed.atom")
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert len(response.content) < 1000 and b'href="/"' in response.content
    other = client.get("/no/such/page")
    assert other.status_code == 404 and other.content == response.content


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/feeds/partnerships.atom", "/", "/opml", "/healthz"])
def test_only_get_and_head_are_allowed(client, method, path):
    response = client.request(method, path, content=b"x")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


# --- pages ------------------------------------------------------------------------------------


def test_the_index_lists_feeds_with_autodiscovery_and_escapes_items(site, client):
    import lxml.html

    config, _ = site
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    text = response.text
    assert HOSTILE_TITLE not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "javascript:" not in text
    page = lxml.html.fromstring(response.content)
    assert page.xpath("//script") == []
    alternates = page.xpath('//head/link[@rel="alternate"][@type="application/atom+xml"]')
    assert [link.get("href") for link in alternates] == [
        f"feeds/{feed.slug}.atom" for feed in config.feeds
    ]
    assert [link.get("title") for link in alternates] == [feed.title for feed in config.feeds]
    links = set(page.xpath("//body//a/@href"))
    for feed in config.feeds:
        assert {f"feeds/{feed.slug}.{ext}" for ext in EXTENSIONS} <= links
    items = page.xpath("//ol/li")
    assert items[0].text_content().startswith(HOSTILE_TITLE)  # newest first, shown as text
    assert "9 May 2024" in items[0].text_content()
    assert config.sources[0].title in items[0].text_content()
    assert "https://www.nato.int/cps/en/natohq/news_1.htm" in links
    style = page.xpath("//style")[0].text
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy  # the inline style is allowed, nothing else
    assert client.head("/").status_code == 200


def test_opml_lists_each_feed(site, client):
    config, _ = site
    response = client.get("/opml")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/x-opml; charset=utf-8"
    root = ET.fromstring(response.content)
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title")
    outlines = root.findall("body/outline")
    assert [(o.get("text"), o.get("xmlUrl")) for o in outlines] == [
        (feed.title, f"{BASE_URL}/feeds/{feed.slug}.atom") for feed in config.feeds
    ]
    again = client.get("/opml", headers={"if-none-match": response.headers["etag"]})
    assert again.status_code == 304


def test_healthz_reports_sources_and_counts(site, client):
    config, _ = site
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    health = response.json()
    assert health["status"] == "ok"
    assert health["items"] == {"total": 12, "seed": 10, "feed": 2}
    by_id = {source["id"]: source for source in health["sources"]}
    nato = by_id[config.sources[0].id]
    assert nato["last_poll"] == "2024-05-09T12:00:00Z"
    assert nato["last_status"] == 200
    assert nato["consecutive_errors"] == 0
    assert nato["next_poll"] == "2024-05-09T12:30:00Z"
    assert nato["state"] == "ok" and nato["items"] == 2
    assert by_id["seed"]["items"] == 10 and by_id["seed"]["state"] == "seeded"
    assert health["feeds"][config.feeds[0].slug] is not None


def test_healthz_is_503_when_the_archive_is_missing_or_corrupt(tmp_path):
    config = make_site(tmp_path / "site")
    with serving(config) as base:
        missing = httpx.get(f"{base}/healthz")
        assert missing.status_code == 503 and missing.json()["status"] == "unavailable"
        assert str(tmp_path) not in missing.text
        index = httpx.get(f"{base}/")
        assert index.status_code == 200 and 'href="feeds/' in index.text
        assert httpx.get(f"{base}/feeds/{config.feeds[0].slug}.atom").status_code == 200
        config.archive.database.parent.mkdir(parents=True, exist_ok=True)
        config.archive.database.write_bytes(b"this is not a database" * 100)
        corrupt = httpx.get(f"{base}/healthz")
        assert corrupt.status_code == 503 and "error" in corrupt.json()
        assert httpx.get(f"{base}/").status_code == 200
        config.archive.database.unlink()
        config.archive.database.mkdir()  # a path SQLite cannot even open
        unopenable = httpx.get(f"{base}/healthz")
        assert unopenable.status_code == 503 and "error" in unopenable.json()
        assert httpx.get(f"{base}/metrics").status_code == 200
        config.archive.database.rmdir()
        Archive(config.archive.database).close()  # an empty, valid archive
        assert httpx.get(f"{base}/healthz").status_code == 200


# --- the pure deciders ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"gzip", True),
        (b"GZIP;Q=0.001", True),
        (b"deflate, gzip;q=1.0, *;q=0.5", True),
        (b"gzip;q=0", False),
        (b"gzip;q=0.000", False),
        (b"gzip;q=oops", False),
        (b"*;q=0, gzip", True),
        (b"identity;q=1, *;q=0", False),
        (b"compress, br", False),
        (b"", False),
    ],
)
def test_accept_encoding(header, expected):
    assert accepts_gzip(header) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b'"abc"', True),
        (b'W/"abc"', True),
        (b'"x", "abc"', True),
        (b'"x,y", W/"abc"', True),
        (b"*", True),
        (b'"abcd"', False),
        (b"abc", False),
        (b'"ab"c"', False),
        (b"", False),
    ],
)
def test_if_none_match_weak_comparison(header, expected):
    assert etag_matches(header, b'"abc"') is expected


# --- the command line -------------------------------------------------------------------------


def test_serve_command_runs_until_interrupted(project):
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "aggregator", "--config", str(project.config), "serve"),
            *("--host", "0.0.0.0", "--port", str(port)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=project.root,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.communicate()
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/opml", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        assert response.status_code == 200
        taken = project.cli("serve", "--port", str(port), check=False, timeout=30)
        assert taken.returncode == 1
        assert (
            taken.stderr.strip()
            == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
        )
    finally:
        process.terminate()
        out, err = process.communicate(timeout=10)
    assert f"http://0.0.0.0:{port}/" in out
    assert "warning" in err and "0.0.0.0" in err
    assert "Traceback" not in err


# --- end to end: what `aggregator publish` wrote, served ----------------------------------------


def test_published_feeds_are_served_and_read_back(project):
    project.cli("import-seeds")
    project.cli("publish")
    config = config_module.load(project.config)
    months = sorted(config.server.feeds_dir.glob("*/archive/*.atom"))
    assert months, "publish wrote no archive documents"
    with serving(config) as base, httpx.Client(base_url=base) as client:
        etags = {}
        for feed in config.feeds:
            for ext in ("atom", "rss"):
                parsed = feedparser.parse(f"{base}/feeds/{feed.slug}.{ext}")
                assert parsed.status == 200 and not parsed.bozo, (feed.slug, ext)
                assert parsed.feed.title == feed.title
            document = client.get(f"/feeds/{feed.slug}.json")
            assert document.headers["content-type"] == EXTENSIONS["json"]
            assert document.json()["title"] == feed.title
            etags[feed.slug] = client.get(f"/feeds/{feed.slug}.atom").headers["etag"]
        for month in months:
            url = f"{base}/feeds/{month.relative_to(config.server.feeds_dir).as_posix()}"
            parsed = feedparser.parse(url)
            assert parsed.status == 200 and not parsed.bozo and parsed.entries, url
        everything = next(feed for feed in config.feeds if not feed.topics)
        assert len(feedparser.parse(f"{base}/feeds/{everything.slug}.atom").entries) == 10
        project.cli("publish")  # nothing changed: same bytes, same validators
        for slug, etag in etags.items():
            again = client.get(f"/feeds/{slug}.atom", headers={"if-none-match": etag})
            assert again.status_code == 304, slug
        assert 'type="application/atom+xml"' in client.get("/").text
