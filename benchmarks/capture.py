"""`aggregator capture` as a user waits for it, against a plain paced loop over the same pages.

    .venv/bin/python benchmarks/capture.py [--pages 200] [--interval 0.05] [--rounds 3]

A loopback server serves a robots.txt, a feed of `--pages` items and their NATO-shaped article
pages (benchmarks/capture_extract.py's corpus). In each round, on a fresh project folder, one
`aggregator fetch` (a process, not timed) queues the pages; then two processes are timed, each
from its start to its exit, start-up and imports included, in alternating order:

- ours: `aggregator --config X capture`: the real fetcher, SSRF guard, robots.txt, per-host
  pace, WARC writer, our extract, store, classify and publish;
- baseline: `python -c` with what a minimal "fetch politely and extract" script does: an
  `httpx.Client` GETs /robots.txt (read with urllib.robotparser), then each page, and calls
  `trafilatura.extract(html, url, with_metadata=True)` on it.

Both pause `--interval` seconds between the end of one request to the host and the start of
the next, robots.txt first, as aggregator/capture/pace.py's HostPace does (the program's
default is 2 s; a short one keeps this run short). Each wall time is the fastest of `--rounds`.

Target: ours within 1.2x the baseline, i.e. the rate limit sets the pace of a capture, not our
extraction, storage or publishing. Also printed: the extraction time per page of our `extract`
against trafilatura alone on the same pages, in this process.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from capture_extract import baseline, pages, per_page  # noqa: E402

from aggregator.capture.extract import extract  # noqa: E402
from aggregator.capture.pace import DEFAULT_INTERVAL  # noqa: E402
from tests.feedserver import FeedServer  # noqa: E402

TARGET = 1.2  # ours / baseline
CHILD_TIMEOUT = 600.0
ROBOTS = b"User-agent: *\nDisallow: /private/\n"

# The paced loop: argv is the interval, robots.txt's URL and a file of page URLs, one a line.
BASELINE_CODE = """
import json, sys, time, urllib.robotparser
import httpx, trafilatura

interval, robots_url = float(sys.argv[1]), sys.argv[2]
urls = open(sys.argv[3]).read().split()
not_before = 0.0

def paced_get(client, url):
    global not_before
    wait = not_before - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    try:
        return client.get(url)
    finally:
        not_before = time.monotonic() + interval

with httpx.Client() as client:
    robots = urllib.robotparser.RobotFileParser(robots_url)
    robots.parse(paced_get(client, robots_url).text.splitlines())
    fetched = extracted = 0
    for url in urls:
        if not robots.can_fetch("bench", url):
            continue
        page = paced_get(client, url)
        fetched += 1
        if trafilatura.extract(page.content, url=url, with_metadata=True):
            extracted += 1
print(json.dumps({"fetched": fetched, "extracted": extracted}))
"""


@dataclass(frozen=True)
class Run:
    wall: float
    stdout: str
    requests: int  # that reached the server while it ran
    shortest_gap: float  # seconds between two of those requests' arrivals, start to start


def serve(server: FeedServer, corpus: list[tuple[bytes, str]]) -> list[str]:
    server.route("/robots.txt", body=ROBOTS, content_type="text/plain")
    urls, items = [], []
    for n, (body, _) in enumerate(corpus):
        path = f"/news/{n}.htm"
        server.route(path, body=body, content_type="text/html; charset=utf-8")
        urls.append(server.url(path))
        items.append(
            f"<item><title>Story {n}</title><link>{urls[-1]}</link>"
            f"<guid>{n}</guid><description>Summary {n}.</description></item>"
        )
    feed = f'<rss version="2.0"><channel><title>x</title>{"".join(items)}</channel></rss>'
    server.route("/feed.rss", body=feed.encode())
    return urls


def config_file(folder: Path, server: FeedServer, interval: float) -> Path:
    path = folder / "config.toml"
    path.write_text(
        f'[fetch]\nallow_private_addresses = true\n[capture]\nper_host_interval = "{interval}s"\n'
        f'[[sources]]\nid = "loop"\ntitle = "Loop"\nurl = "{server.url("/feed.rss")}"\n'
        f'[[feeds]]\nslug = "all"\ntitle = "All"\n',
        encoding="utf-8",
    )
    return path


def run_process(server: FeedServer, argv: list[str], cwd: Path | None = None) -> Run:
    """Run a child to its end: its wall time and the requests the server saw meanwhile."""
    # The children import the aggregator beside this script, not whichever one is installed.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    env.pop("AGGREGATOR_CONFIG", None)
    # A user's Python keeps bytecode caches; without them every run would compile again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    seen = len(server.requests())
    started = time.monotonic()
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}\n{done.stdout}{done.stderr}")
    arrivals = [r.time for r in server.requests()[seen:]]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return Run(wall, done.stdout, len(arrivals), min(gaps, default=float("nan")))


def aggregator(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "aggregator", "--config", str(config), *args]


def ours(server: FeedServer, interval: float) -> Run:
    """A fresh project: `aggregator fetch` queues the pages, `aggregator capture` is timed."""
    with tempfile.TemporaryDirectory() as folder:
        config = config_file(Path(folder), server, interval)
        run_process(server, aggregator(config, "fetch"), cwd=Path(folder))
        return run_process(server, aggregator(config, "capture"), cwd=Path(folder))


def plain_loop(server: FeedServer, interval: float, url_file: Path) -> Run:
    code = [sys.executable, "-c", BASELINE_CODE, str(interval), server.url("/robots.txt")]
    return run_process(server, [*code, str(url_file)])


def complete(run: Run, pages: int) -> Run:
    """A run that asked for robots.txt and every page; any other is no measurement."""
    if run.requests != pages + 1:
        raise SystemExit(f"{run.requests} requests, not {pages + 1}:\n{run.stdout[-2000:]}")
    return run


def extraction(corpus: list[tuple[bytes, str]], rounds: int) -> tuple[float, float]:
    """Seconds per page: trafilatura alone and our extract, interleaved, median of rounds."""
    per_page(baseline, corpus[:10])  # warm up imports and lxml on both sides
    per_page(extract, corpus[:10])
    base_times, our_times = [], []
    for _ in range(rounds):
        base_times.append(per_page(baseline, corpus))
        our_times.append(per_page(extract, corpus))
    return statistics.median(base_times), statistics.median(our_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds per host turn")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    corpus = pages(args.pages)
    server = FeedServer().start()
    ours_runs, base_runs = [], []
    try:
        urls = serve(server, corpus)
        with tempfile.TemporaryDirectory() as folder:
            url_file = Path(folder) / "urls.txt"
            url_file.write_text("\n".join(urls), encoding="utf-8")
            for n in range(args.rounds):  # alternating, so neither always runs first
                if n % 2:
                    ours_runs.append(complete(ours(server, args.interval), len(urls)))
                base_runs.append(complete(plain_loop(server, args.interval, url_file), len(urls)))
                if not n % 2:
                    ours_runs.append(complete(ours(server, args.interval), len(urls)))
    finally:
        server.stop()
    base_extract, our_extract = extraction(corpus, args.rounds)
    report(args, ours_runs, base_runs, base_extract, our_extract)


def report(args, ours_runs: list[Run], base_runs: list[Run], base_x: float, ours_x: float):
    mine, theirs = fastest(ours_runs), fastest(base_runs)
    turns = args.pages + 1
    ratio = mine.wall / theirs.wall
    said = json.loads(theirs.stdout)
    print(f"pages: {args.pages}, one request per {args.interval:g} s, fastest of {args.rounds}")
    print(f"ours:     {mine.stdout.strip().splitlines()[-1]}")
    print(f"baseline: {said['fetched']} fetched, {said['extracted']} with text")
    print(f"the pace alone:              {turns * args.interval:7.2f} s ({turns} turns)")
    for name, runs, best in (
        ("aggregator capture", ours_runs, mine),
        ("plain loop", base_runs, theirs),
    ):
        each = ", ".join(f"{r.wall:.2f}" for r in runs)
        print(
            f"{name + ':':<28} {best.wall:7.2f} s (rounds: {each}; {best.requests} requests, "
            f"shortest gap between two {best.shortest_gap:.3f} s)"
        )
    verdict = "met" if ratio <= TARGET else "missed"
    print(f"ours / baseline:             {ratio:7.2f}x (target <= {TARGET:g}x: {verdict})")
    print(f"trafilatura.extract alone:   {base_x * 1000:7.2f} ms/page")
    print(f"our extract:                 {ours_x * 1000:7.2f} ms/page ({ours_x / base_x:.2f}x)")
    share = ours_x / DEFAULT_INTERVAL
    print(f"extraction share at {DEFAULT_INTERVAL:g} s:     {share:7.2%} of each host turn")


def fastest(runs: list[Run]) -> Run:
    return min(runs, key=lambda run: run.wall)


if __name__ == "__main__":
    main()
