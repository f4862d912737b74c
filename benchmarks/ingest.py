"""Ingesting a big NATO-shaped feed: our whole poll against `feedparser.parse` alone.

    .venv/bin/python benchmarks/ingest.py [--items 10000] [--rounds 3]

A deterministic RSS document of `--items` NATO-shaped items (titles, news_NNNNNN.htm links,
some with ?selectedLocale=en or http://, plain-text descriptions, NATO's non-RFC-822
pubDate) is served from a loopback HTTP server. In one run, on the same bytes:

- floor: `feedparser.parse` alone, with its defaults (what any feedparser-based ingest pays);
- first: `Pipeline.poll` into a fresh SQLite archive: fetch, parse, sanitize, dedupe, store;
- 304: a re-poll the server answers 304 Not Modified;
- same bytes: a re-poll of a server that ignores validators and sends identical bytes;
- 1% changed: a re-poll after 1% of the items changed their description.

`classify_and_publish` is switched off: those stages have their own benchmarks.
Times are CPU seconds of the process (all its threads, the loopback server's included),
the fastest of `--rounds`: on a shared machine they vary far less than wall time. Prints
seconds, items/s and each ratio to the floor, then the peak memory (max RSS) of a fresh
process doing only the floor parse and of one doing only the first ingest.
Targets: first <= 1.2x the floor, both unchanged re-polls <= 0.05x, 1% changed <= 1.2x,
peak memory of the first ingest under 120 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TIME_BUDGET = 20.0  # seconds of timing rounds; memory is measured after
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_WORD_TEXT = """
NATO Allies partners Secretary General defence ministers cooperation security Ukraine Georgia
Japan resilience summit exercise cyber training Brussels Vilnius Military Committee Partnership
for Peace deterrence capabilities dialogue Mediterranean Gulf Istanbul Cooperation Initiative
support capacity building crisis management meeting
"""
WORDS = tuple(_WORD_TEXT.split())


# --- the document ------------------------------------------------------------------------------


def make_feed(count: int, changed: frozenset[int] = frozenset()) -> bytes:
    rng = random.Random(20221126)
    items = []
    for n in range(count):
        day, month, year = 1 + n % 28, MONTHS[(n // 28) % 12], 2024 - n // 336
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize()
        words = [rng.choice(WORDS) for _ in range(rng.randint(30, 70))]
        description = f"On {day} {month} {year}, " + " ".join(words) + "."
        if n in changed:
            description += " (Updated with the final communiqué.)"
        article = 400_000 + n
        link = f"https://www.nato.int/cps/en/natohq/news_{article}.htm"
        link = link + "?selectedLocale=en" if n % 3 == 0 else link
        link = link.replace("https://", "http://") if n % 7 == 0 else link
        items.append(
            f"    <item>\n      <title>{title} ({article})</title>\n      <link>{link}</link>\n"
            f"      <description>{description}</description>\n"
            f"      <pubDate>{day:02d} {month}. {year} 12:00:00 GMT</pubDate>\n    </item>\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<?xml-stylesheet type="text/xsl" href="/cps/rss/en/natohq/rssFeed.xsl"?>\n'
        '<rss version="2.0">\n  <channel>\n    <title>NATO Latest News</title>\n'
        "    <link>https://www.nato.int/cps/en/natohq/news.htm</link>\n"
        "    <description>Latest news from NATO Headquarters</description>\n"
        "    <language>en</language>\n" + "".join(items) + "  </channel>\n</rss>\n"
    ).encode()


# --- the pieces measured -----------------------------------------------------------------------


def floor(body: bytes) -> float:
    import feedparser

    started = time.process_time()
    result = feedparser.parse(io.BytesIO(body))
    elapsed = time.process_time() - started
    assert result.entries
    return elapsed


def write_config(folder: Path, url: str) -> Path:
    path = folder / "config.toml"
    path.write_text(
        f'[archive]\ndatabase = "{folder / "bench.db"}"\n\n'
        f'[[sources]]\nid = "bench"\ntitle = "Bench"\nurl = "{url}"\ninterval = "30m"\n',
        encoding="utf-8",
    )
    return path


class Harness:
    """A loopback server, a fresh archive and one Fetcher, as the daemon has them."""

    def __init__(self, folder: Path):
        from aggregator import pipeline
        from tests.feedserver import FeedServer

        pipeline.classify_and_publish = lambda *args: True  # their own benchmarks
        self.server = FeedServer().start()
        self.folder = folder

    def open(self) -> None:
        from aggregator import pipeline
        from aggregator.config import load
        from aggregator.store import Archive

        self.config = load(write_config(self.folder, self.server.url("/feed.rss")))
        self.archive = Archive(self.config.archive.database)
        pipeline.sync_sources(self.archive, self.config)
        self.pipeline = pipeline.Pipeline(self.archive)

    async def poll(self, fetcher) -> tuple[float, object]:
        started = time.process_time()
        report = await self.pipeline.poll(self.config, "bench", fetcher, force=True)
        elapsed = time.process_time() - started
        if report.error:
            raise SystemExit(f"poll failed: {report.error}")
        return elapsed, report

    def close(self) -> None:
        self.archive.close()
        self.server.stop()


async def run_polls(harness: Harness, body: bytes, changed_body: bytes) -> dict[str, float]:
    from aggregator.fetch import Fetcher
    from tests.feedserver import Route

    times = {}
    async with Fetcher(harness.config) as fetcher:
        harness.server.route("/feed.rss", body=body, etag='"v1"')
        times["first"], report = await harness.poll(fetcher)
        assert report.new > 0, report
        times["304"], report = await harness.poll(fetcher)
        assert report.status == 304, report
        harness.server.route("/feed.rss", Route(body=body, honour_validators=False))
        times["same bytes"], report = await harness.poll(fetcher)
        assert report.unchanged and report.status == 200, report
        harness.server.route("/feed.rss", body=changed_body, etag='"v2"')
        times["1% changed"], report = await harness.poll(fetcher)
        assert report.updated > 0 and report.new == 0, report
    return times


# --- memory, each in a fresh process -----------------------------------------------------------


def max_rss_mb() -> float:
    """Peak RSS of this process: VmHWM, which (unlike ru_maxrss) starts afresh at exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def memory_child(kind: str, feed_file: str) -> None:
    import feedparser  # noqa: F401  (imports before the baseline reading)

    from aggregator.fetch import Fetcher

    body = Path(feed_file).read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        harness = Harness(Path(tmp))
        harness.open()
        baseline = max_rss_mb()
        if kind == "floor":
            floor(body)
        else:

            async def first():
                async with Fetcher(harness.config) as fetcher:
                    harness.server.route("/feed.rss", body=body)
                    await harness.poll(fetcher)

            asyncio.run(first())
        print(json.dumps({"baseline": baseline, "peak": max_rss_mb()}))
        harness.close()


def measure_memory(kind: str, body: bytes) -> dict[str, float]:
    with tempfile.NamedTemporaryFile(suffix=".rss") as feed_file:
        feed_file.write(body)
        feed_file.flush()
        return _run_memory_child(kind, feed_file.name)


def _run_memory_child(kind: str, feed_file: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--memory", kind, "--feed-file", feed_file],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="repeat and keep the fastest")
    parser.add_argument("--memory", choices=["floor", "first"], help=argparse.SUPPRESS)
    parser.add_argument("--feed-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory:
        memory_child(args.memory, args.feed_file)
        return
    count = args.items
    body = make_feed(count)
    changed = frozenset(range(0, count, 100))  # 1%
    changed_body = make_feed(count, changed)
    print(f"{count} NATO-shaped items, {len(body) / 1e6:.1f} MB of RSS")
    best: dict[str, float] = {}
    started = time.monotonic()
    for _ in range(args.rounds):
        if best and time.monotonic() - started > TIME_BUDGET:
            break  # a busy machine: keep the run bounded
        times = {"floor": floor(body)}
        with tempfile.TemporaryDirectory() as tmp:
            harness = Harness(Path(tmp))
            harness.open()
            times.update(asyncio.run(run_polls(harness, body, changed_body)))
            harness.close()
        best = {k: min(v, best.get(k, v)) for k, v in times.items()}
    base = best["floor"]
    targets = {"first": 1.2, "304": 0.05, "same bytes": 0.05, "1% changed": 1.2}
    print(f"{'step':<12} {'seconds':>8} {'items/s':>9} {'ratio':>7}  target")
    for step, seconds in best.items():
        target = f"<= {targets[step]}x" if step in targets else "(floor)"
        verdict = (
            "" if step not in targets else (" ok" if seconds / base <= targets[step] else " MISSED")
        )
        print(
            f"{step:<12} {seconds:>8.3f} {count / seconds:>9.0f} {seconds / base:>6.3f}x  "
            f"{target}{verdict}"
        )
    for kind in ("floor", "first"):
        mem = measure_memory(kind, body)
        label = "feedparser.parse alone" if kind == "floor" else "first ingest (our poll)"
        print(
            f"peak memory, {label}: {mem['peak']:.0f} MB max RSS "
            f"({mem['peak'] - mem['baseline']:.0f} MB above the {mem['baseline']:.0f} MB "
            "of the process before it)"
        )


if __name__ == "__main__":
    main()
