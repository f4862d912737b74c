"""Hostile documents through the whole `aggregator fetch`: CPU seconds and peak memory.

    .venv/bin/python benchmarks/hostile.py [--limit 300]

Every case is one `aggregator fetch` (seed import, fetch, parse, store, classify, publish)
of a fresh project copy (config.toml, the seeds, feeds/) whose NATO source points at a
loopback server, in its own process. A fresh wrapper process runs each fetch, so that the
wrapper's children's rusage (CPU, ru_maxrss) is that fetch's alone. In one run:

- baseline: a 10,000-item NATO-shaped feed (benchmarks/fetch.py's `make_feed`), with
  fetch.max_entries raised to 10,000 so that all of it is read;
- nested divs: 100,000 nested <div> (1.1 MB) in one item's description, as CDATA;
- nested xhtml: the same as Atom xhtml content, which feedparser parses element by element;
- 140k items: 140,000 tiny items (9.7 MB), with the default fetch.max_entries.

Prints each case's CPU (user + system) and peak RSS, their ratios to the baseline, and
whether the targets for any body up to fetch.max_bytes are met: under 30 s of CPU and
under 300 MB. Each fetch is stopped after --limit seconds, so a run is bounded.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.fetch import make_feed  # noqa: E402

NATO_URL = "https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml"
CPU_TARGET = 30.0  # seconds
MEMORY_TARGET = 300.0  # MB
LEVELS = 100_000
ITEMS = 140_000


# --- the documents -----------------------------------------------------------------------------


def nested_divs() -> bytes:
    inner = "<div>" * LEVELS + "deep text" + "</div>" * LEVELS
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Deep</title>'
        "<link>https://example.org/</link><item><title>Nested</title>"
        "<link>https://example.org/deep</link><pubDate>10 Jan. 2024 12:00:00 GMT</pubDate>"
        f"<description><![CDATA[{inner}]]></description></item></channel></rss>"
    ).encode()


def nested_xhtml() -> bytes:
    inner = "<div>" * LEVELS + "deep text" + "</div>" * LEVELS
    return (
        '<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>Deep</title><id>urn:deep</id><updated>2024-01-10T12:00:00Z</updated>"
        "<entry><title>Nested</title><id>urn:deep:1</id><link href='https://example.org/deep'/>"
        "<updated>2024-01-10T12:00:00Z</updated><content type='xhtml'>"
        f"<div xmlns='http://www.w3.org/1999/xhtml'>{inner}</div></content></entry></feed>"
    ).encode()


def many_items() -> bytes:
    items = "".join(
        f"<item><title>Item {n}</title><link>http://x.org/{n}</link></item>" for n in range(ITEMS)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Many</title>'
        f"<link>https://x.org/</link>\n{items}</channel></rss>\n"
    ).encode()


CASES = {
    "baseline": (lambda: make_feed(10_000), 10_000),
    "nested divs": (nested_divs, None),
    "nested xhtml": (nested_xhtml, None),
    "140k items": (many_items, None),
}


# --- one fetch, in a fresh wrapper process -----------------------------------------------------


def run_case(url: str, max_entries: int | None, limit: float) -> dict:
    """In the wrapper: a fresh project copy, one `aggregator fetch`, its rusage."""
    from tests.conftest import SEEDS, Project

    with tempfile.TemporaryDirectory() as tmp:
        project = Project(Path(tmp) / "project")
        (project.root / "archive").mkdir(parents=True)
        shutil.copytree(SEEDS, project.root / "archive" / "seed")
        shutil.copy(ROOT / "config.toml", project.config)
        project.feeds.mkdir()
        project.replace_in_config(NATO_URL, url)
        if max_entries:
            project.replace_in_config("max_entries = 5000", f"max_entries = {max_entries}")
        try:
            done = project.cli("fetch", check=False, timeout=limit)
            outcome = f"exit {done.returncode}: " + (done.stdout.strip().splitlines() or [""])[0]
            if done.returncode and done.stderr.strip():
                outcome += " / " + done.stderr.strip().splitlines()[-1]
        except subprocess.TimeoutExpired:
            outcome = f"stopped after {limit:.0f} s"
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_mb": usage.ru_maxrss / 1024,  # KiB on Linux
        "outcome": outcome,
    }


def measure(name: str, url: str, limit: float) -> dict:
    max_entries = CASES[name][1]
    command = [sys.executable, __file__, "--wrapper", url, "--limit", str(limit)]
    if max_entries:
        command += ["--max-entries", str(max_entries)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=limit + 120)
    if done.returncode:
        raise SystemExit(f"{name}: the wrapper failed\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=300.0, help="seconds per fetch at most")
    parser.add_argument("--wrapper", help=argparse.SUPPRESS)
    parser.add_argument("--max-entries", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.wrapper:
        print(json.dumps(run_case(args.wrapper, args.max_entries, args.limit)))
        return

    from tests.feedserver import FeedServer

    server = FeedServer().start()
    try:
        results = {}
        for name, (make, _) in CASES.items():
            body = make()
            path = "/" + name.replace(" ", "-") + ".xml"
            server.route(path, body=body, content_type="application/xml")
            print(f"{name}: {len(body) / 1e6:.1f} MB ...", flush=True)
            results[name] = measure(name, server.url(path), args.limit)
            results[name]["mb"] = len(body) / 1e6
            server.route(path, status=404)  # let the body go
    finally:
        server.stop()
    report(results)


def report(results: dict[str, dict]) -> None:
    base = results["baseline"]
    print()
    print(
        f"{'case':<13} {'MB':>5} {'CPU s':>7} {'x base':>7} {'peak MB':>8} {'x base':>7}  targets"
    )
    for name, r in results.items():
        met = r["cpu"] < CPU_TARGET and r["peak_mb"] < MEMORY_TARGET
        verdict = "met" if met else "MISSED"
        print(
            f"{name:<13} {r['mb']:>5.1f} {r['cpu']:>7.1f} {r['cpu'] / base['cpu']:>6.2f}x "
            f"{r['peak_mb']:>8.0f} {r['peak_mb'] / base['peak_mb']:>6.2f}x  {verdict}"
        )
    print(f"\ntargets: under {CPU_TARGET:.0f} s of CPU and under {MEMORY_TARGET:.0f} MB per fetch")
    for name, r in results.items():
        print(f"  {name}: {r['outcome']}")


if __name__ == "__main__":
    main()
