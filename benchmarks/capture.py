"""Capturing pages end to end from a loopback server: the rate limit, not extraction, sets the pace.

    .venv/bin/python benchmarks/capture.py [--pages 200] [--interval 0.05]

A loopback server serves a feed of `--pages` items and their NATO-shaped article pages
(benchmarks/capture_extract.py's corpus). One `aggregator fetch` queues them; then
`pipeline.capture_queue` captures them all through the real fetcher, guard, robots.txt,
pace, WARC writer, trafilatura, store, classify and publish, one host, one request per
`--interval` seconds (the program's default is 2 s; a short one keeps this run short).

Prints the wall time against the floor the rate limit sets ((pages + 1) x interval, with
robots.txt), and the extraction time per page of our `extract` against trafilatura alone
on the same pages, measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from capture_extract import baseline, pages, per_page  # noqa: E402

from aggregator import pipeline  # noqa: E402
from aggregator.capture.extract import extract  # noqa: E402
from aggregator.config import load  # noqa: E402
from aggregator.store import Archive  # noqa: E402
from tests.feedserver import FeedServer  # noqa: E402


def serve(server: FeedServer, corpus: list[tuple[bytes, str]]) -> None:
    items = []
    for n, (body, _) in enumerate(corpus):
        path = f"/news/{n}.htm"
        server.route(path, body=body, content_type="text/html; charset=utf-8")
        items.append(
            f"<item><title>Story {n}</title><link>{server.url(path)}</link>"
            f"<guid>{n}</guid><description>Summary {n}.</description></item>"
        )
    feed = f'<rss version="2.0"><channel><title>x</title>{"".join(items)}</channel></rss>'
    server.route("/feed.rss", body=feed.encode())


def config_file(folder: Path, server: FeedServer, interval: float) -> Path:
    path = folder / "config.toml"
    path.write_text(
        f'[fetch]\nallow_private_addresses = true\n[capture]\nper_host_interval = "{interval}s"\n'
        f'[[sources]]\nid = "loop"\ntitle = "Loop"\nurl = "{server.url("/feed.rss")}"\n'
        f'[[feeds]]\nslug = "all"\ntitle = "All"\n',
        encoding="utf-8",
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds per host turn")
    args = parser.parse_args()
    corpus = pages(args.pages)
    server = FeedServer().start()
    try:
        serve(server, corpus)
        with tempfile.TemporaryDirectory() as folder:
            config = load(config_file(Path(folder), server, args.interval))
            with Archive(config.archive.database) as archive:
                pipeline.sync_sources(archive, config)
                pipeline.fetch_all(archive, config)
                started = time.perf_counter()
                reports = pipeline.capture_queue(archive, config)
                wall = time.perf_counter() - started
    finally:
        server.stop()
    floor = (len(corpus) + 1) * args.interval
    base = statistics.median(per_page(baseline, corpus) for _ in range(3))
    ours = statistics.median(per_page(extract, corpus) for _ in range(3))
    states: dict[str, int] = {}
    for report in reports:
        states[report.state.value] = states.get(report.state.value, 0) + 1
    print(f"captured {len(reports)} pages ({', '.join(f'{n} {s}' for s, n in states.items())})")
    print(f"wall time:                  {wall:7.2f} s")
    print(f"rate-limit floor:           {floor:7.2f} s ({args.interval:g} s x {len(corpus) + 1})")
    print(f"wall / floor:               {wall / floor:7.2f}x")
    print(f"trafilatura.extract alone:  {base * 1000:7.2f} ms/page")
    print(f"our extract:                {ours * 1000:7.2f} ms/page ({ours / base:.2f}x)")
    print(f"extraction share at 2 s:    {ours / 2.0:7.2%} of each host turn")


if __name__ == "__main__":
    main()
