"""Run one scenario of polls in two fresh projects with two feed sources (real SQLite files,
the loopback feed server): once as the program polls, entries left unread when known, and
once with every entry read (known forced empty); return both final archive states."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

from aggregator import pipeline
from aggregator.config import load
from aggregator.store import Archive
from tests.conftest import ROOT, SEEDS, Project
from tests.feedserver import Route

NATO = "nato-news"
OTHER = "other"

N1 = "https://www.nato.int/cps/en/natohq/news_1.htm"
N2 = "https://www.nato.int/cps/en/natohq/news_2.htm"
N3 = "https://www.nato.int/cps/en/natohq/news_3.htm"
N4 = "https://www.nato.int/cps/en/natohq/news_4.htm"


def doc(items: list[dict], built: str, channel_extra: str = "") -> bytes:
    body = "".join(
        f"<item><title>{i['title']}</title>"
        + (f"<link>{i['link']}</link>" if i.get("link") else "")
        + (f'<guid isPermaLink="false">{i["guid"]}</guid>' if i.get("guid") else "")
        + f"<description>{i['text']}</description>"
        + (
            f"<pubDate>{i.get('date', '10 Jan. 2024 12:00:00 GMT')}</pubDate>"
            if i.get("date", "x")
            else ""
        )
        + i.get("extra", "")
        + "</item>"
        for i in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
        f"<link>https://www.nato.int/</link><lastBuildDate>{built}</lastBuildDate>"
        f"{channel_extra}{body}</channel></rss>"
    ).encode()


def base_feed(attribute: str, b_text: str) -> bytes:
    """Two items, A carrying `attribute` (a base of some spelling) and relative links, then B
    with none, whose description is `b_text`: feedparser hands A's base on to B."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
        "<link>https://www.nato.int/</link><lastBuildDate>x</lastBuildDate>"
        f"<item {attribute}><title>A</title><link>a.htm</link>"
        "<guid>a</guid><description>A.</description>"
        "<pubDate>10 Jan. 2024 12:00:00 GMT</pubDate></item>"
        "<item><title>B</title><link>b.htm</link><guid>b</guid>"
        f"<description>{b_text}</description>"
        "<pubDate>10 Jan. 2024 12:00:00 GMT</pubDate></item></channel></rss>"
    ).encode()


class World:
    """A project with two feed sources on the loopback server: nato-news and other."""

    def __init__(self, root: Path, feed_server, mode: str):
        (root / "archive").mkdir(parents=True)
        shutil.copytree(SEEDS, root / "archive" / "seed")
        shutil.copy(ROOT / "config.toml", root / "config.toml")
        (root / "feeds").mkdir()
        self.project = Project(root)
        self.server, self.mode = feed_server, mode
        self.prefix = f"/{mode}"
        self.project.replace_in_config(
            "https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml",
            feed_server.url(f"{self.prefix}/nato.rss"),
        )
        text = self.project.config.read_text(encoding="utf-8")
        text += (
            f'\n[[sources]]\nid = "{OTHER}"\ntitle = "Other"\n'
            f'url = "{feed_server.url(self.prefix + "/other.rss")}"\ninterval = "30m"\n'
        )
        self.project.config.write_text(text, encoding="utf-8")
        self.config = load(self.project.config)
        self.archive = Archive(self.config.archive.database)
        pipeline.sync_sources(self.archive, self.config)

    def poll(self, source: str, *docs: bytes, check: bool = True) -> list:
        """Serve each doc in turn at the source's path and poll it once per doc."""
        path = f"{self.prefix}/{'nato' if source == NATO else 'other'}.rss"
        self.server.route(path, *[Route(body=d) for d in docs])
        reports = []
        for _ in docs:
            (report,) = pipeline.poll_all(self.config, self.archive, source, force=True)
            if check:
                assert report.error is None, report.error
            reports.append(report)
        return reports

    def seed(self, tmp: Path, text: str):
        path = tmp / f"seed-{self.mode}-{len(list(tmp.glob('seed-*')))}.txt"
        path.write_text(text, encoding="utf-8")
        return pipeline.import_seeds(self.archive, [path])

    def state(self) -> list[tuple]:
        rows = self.archive.conn.execute(
            """SELECT id, origin, source_id, title, link, canonical_url, guid_key,
                      summary_text, content_text, revision, content_hash
               FROM items ORDER BY id"""
        ).fetchall()
        tag = self.server.url(self.prefix)  # the two modes serve under two paths
        return [
            tuple(v.replace(tag, "SERVER") if isinstance(v, str) else v for v in r) for r in rows
        ]

    def known(self) -> list[tuple]:
        return [
            tuple(r)
            for r in self.archive.conn.execute(
                "SELECT source_id, item_id, canonical_url FROM entry_digests ORDER BY 1, 2"
            )
        ]


@contextmanager
def whole_mode(monkeypatch):
    with monkeypatch.context() as m:
        real = pipeline.parse_document

        def every_entry(*args, **kwargs):
            return real(*args, **{**kwargs, "known": frozenset()})

        m.setattr(pipeline, "parse_document", every_entry)
        yield


def both(tmp_path, feed_server, monkeypatch, scenario) -> tuple[list, list]:
    """(state when polled as the program does, state when every entry is read)."""
    states = {}
    for mode in ("unread", "whole"):
        world = World(tmp_path / mode, feed_server, mode)
        try:
            if mode == "whole":
                with whole_mode(monkeypatch):
                    scenario(world, tmp_path)
            else:
                scenario(world, tmp_path)
            states[mode] = world.state()
        finally:
            world.archive.close()
    return states["unread"], states["whole"]


def differs(unread, whole) -> str:
    return f"unread and whole end differently:\n  unread={unread!r}\n  whole ={whole!r}"
