"""Publishing a year of NATO news: our publish against feedgen alone, in the same run.

    .venv/bin/python benchmarks/publish.py [--items 3000] [--rounds 3]

A synthetic archive (a SQLite file in a temporary folder) holds `--items` feed items spread
over twelve months with summaries and full text, about NATO's output in a year, all matched
by one topic. One feed (`all`, no topics) is published three ways:

- baseline: feedgen alone renders the same items (already in memory) as Atom documents, one
  per month plus a 50-entry current document: the least any feedgen publisher must do;
- cold: `publish_all` into an empty folder (reads the archive, renders Atom archives, the
  current Atom, RSS and JSON Feed, writes every file atomically with fsync; and every item's
  page, `items/<id>.html`, renamed into place);
- warm: `publish_feeds` of every month again with nothing changed (renders every document,
  writes nothing, renders no page: a poll renders only the pages of the items it changed);
- full: `publish_all` again with nothing changed: the warm work plus every item's page
  rendered and compared with the file (what start-up and a config reload do).

Prints seconds (medians of rounds) and the ratios cold/baseline and warm/baseline, and what
the pages add per item. Target: warm/baseline <= 2.5 (reading the archive and three formats
cost at most that).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aggregator import pipeline, publish  # noqa: E402
from aggregator.config import ArchiveConfig, Config, FeedConfig, ServerConfig  # noqa: E402
from aggregator.models import Entry, Origin  # noqa: E402
from aggregator.store import Archive  # noqa: E402
from aggregator.store.sources import SourceSpec  # noqa: E402

TARGET_WARM_RATIO = 2.5
PARAGRAPH = (
    "NATO Allies and partners met at NATO Headquarters to review cooperation on "
    "interoperability, defence capacity building and resilience, and agreed on next steps "
    "for the Individually Tailored Partnership Programmes. "
)


def entries(count: int) -> list[Entry]:
    start = datetime(2024, 1, 1, 8, tzinfo=UTC)
    step = timedelta(days=365) / count
    return [
        Entry(
            title=f"Partnership meeting number {n} on interoperability and resilience",
            link=f"https://www.nato.int/cps/en/natohq/news_{300000 + n}.htm",
            summary_html=f"<p>{PARAGRAPH}</p>",
            summary_text=PARAGRAPH,
            content_html="<p>" + PARAGRAPH * 14 + "</p>",
            content_text=PARAGRAPH * 14,
            published=start + n * step,
            updated=start + n * step,
        )
        for n in range(count)
    ]


def config(folder: Path) -> Config:
    return Config(
        path=folder / "config.toml",
        archive=ArchiveConfig(folder / "a.db", folder / "seed", folder / "snapshots"),
        server=ServerConfig(
            "127.0.0.1", 8080, "http://127.0.0.1:8080", folder / "feeds", 300, 3600.0
        ),
        fetch=None,  # type: ignore[arg-type]
        daemon=None,  # type: ignore[arg-type]
        sources=(),
        feeds=(FeedConfig("all", "NATO news", "", (), 0.0, 50),),
    )


def baseline(items: list) -> None:
    """feedgen alone: the same Atom documents from items already in memory."""
    from feedgen.feed import FeedGenerator

    months: dict[str, list] = {}
    for item in items:
        months.setdefault(item.published.strftime("%Y-%m"), []).append(item)
    for group in [items[:50], *months.values()]:
        feed = FeedGenerator()
        feed.id("http://127.0.0.1:8080/feeds/all.atom")
        feed.title("NATO news")
        feed.updated(max(item.updated for item in group))
        for item in group:
            entry = feed.add_entry(order="append")
            entry.id(item.atom_id)
            entry.title(item.title)
            entry.link(href=item.link)
            entry.published(item.published)
            entry.updated(item.updated)
            entry.summary(item.summary_html, type="html")
            entry.content(item.content_html, type="html")
        feed.atom_str(pretty=True)


def timed(action) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="publish-bench-") as tmp:
        folder = Path(tmp)
        settings = config(folder)
        with Archive(settings.archive.database) as archive:
            archive.sync_sources([SourceSpec("nato-news", "NATO News", "https://example.org/")])
            pipeline.store_entries(archive, entries(options.items), "nato-news", Origin.FEED)
            items = archive.list_items()
            results: dict[str, list[float]] = {"baseline": [], "cold": [], "warm": [], "full": []}
            months = archive.feed_months(())
            for _ in range(options.rounds):
                results["baseline"].append(timed(lambda: baseline(items)))
                for path in sorted(settings.server.feeds_dir.rglob("*"), reverse=True):
                    path.rmdir() if path.is_dir() else path.unlink()
                results["cold"].append(timed(lambda: publish.publish_all(archive, settings)))
                began = time.perf_counter()
                report = publish.publish_feeds(archive, settings, ["all"], months)
                results["warm"].append(time.perf_counter() - began)
                assert report.written == (), "a republish with nothing new wrote files"
                began = time.perf_counter()
                report = publish.publish_all(archive, settings)
                results["full"].append(time.perf_counter() - began)
                assert report.written == (), "a republish with nothing new wrote files"
    median = {name: statistics.median(times) for name, times in results.items()}
    print(f"{options.items} items, 12 months, medians of {options.rounds} rounds")
    for name, seconds in median.items():
        print(f"  {name:<8} {seconds:7.3f} s  ({options.items / seconds:8.0f} items/s)")
    cold, warm = median["cold"] / median["baseline"], median["warm"] / median["baseline"]
    verdict = "ok" if warm <= TARGET_WARM_RATIO else "SLOWER THAN TARGET"
    print(f"  cold/baseline {cold:.2f}  warm/baseline {warm:.2f}", end="  ")
    print(f"(target: warm <= {TARGET_WARM_RATIO}: {verdict})")
    per_page = (median["full"] - median["warm"]) / options.items * 1000
    full = median["full"] / median["baseline"]
    print(f"  full/baseline {full:.2f} (every document and item page re-rendered)")
    print(f"  item pages: {per_page:.2f} ms per item to render and compare (full - warm)")


if __name__ == "__main__":
    main()
