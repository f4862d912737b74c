"""Article extraction: our `extract` against trafilatura alone on the same pages, in one run.

    .venv/bin/python benchmarks/capture_extract.py [--pages 200] [--rounds 3]

The pages are the synthetic NATO-shaped fixtures (tests/fixtures/articles: four articles,
a chrome-only gallery, a near-empty page), cycled to `--pages` pages, each with its own
article number in its text so no page is byte-identical to another.

- baseline: `trafilatura.extract(html, url, with_metadata=True)`, the text and metadata
  of every page: the least any trafilatura-based capture must do;
- ours: `aggregator.capture.extract.extract`, which also renders the body as HTML, runs it
  through the project's sanitizer, reads the text back from it and gives a verdict.

Prints milliseconds per page (median of rounds), the ratio ours/baseline, and ours as a
share of the 2 s each capture waits for its host's turn (issue 15: capture time must be
dominated by the rate limit, not by extraction).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trafilatura  # noqa: E402

from aggregator.capture.extract import extract  # noqa: E402
from aggregator.capture.pace import DEFAULT_INTERVAL  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "articles"


def pages(count: int) -> list[tuple[bytes, str]]:
    fixtures = sorted(FIXTURES.glob("*.htm"))
    made = []
    for n in range(count):
        path = fixtures[n % len(fixtures)]
        body = path.read_bytes().replace(b"NATO", f"NATO ({n})".encode(), 1)
        made.append((body, f"https://www.nato.int/cps/en/natohq/{n}_{path.name}"))
    return made


def per_page(run: Callable[[bytes, str], object], corpus: list[tuple[bytes, str]]) -> float:
    started = time.perf_counter()
    for body, url in corpus:
        run(body, url)
    return (time.perf_counter() - started) / len(corpus)


def baseline(body: bytes, url: str) -> object:
    return trafilatura.extract(body, url=url, with_metadata=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    corpus = pages(args.pages)
    per_page(baseline, corpus[:10])  # warm up imports and lxml on both sides
    per_page(extract, corpus[:10])
    base_times, our_times = [], []
    for _ in range(args.rounds):  # interleaved, so both see the same machine
        base_times.append(per_page(baseline, corpus))
        our_times.append(per_page(extract, corpus))
    base, ours = statistics.median(base_times), statistics.median(our_times)
    verdicts = {}
    for body, url in corpus:
        verdict = extract(body, url).verdict
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
    print(f"pages: {len(corpus)} ({', '.join(f'{n} {v}' for v, n in sorted(verdicts.items()))})")
    print(f"trafilatura.extract alone: {base * 1000:7.2f} ms/page")
    print(f"our extract:               {ours * 1000:7.2f} ms/page")
    print(f"ratio ours/trafilatura:    {ours / base:7.2f}x")
    print(
        f"share of the {DEFAULT_INTERVAL:g} s per-host pace: {ours / DEFAULT_INTERVAL:.2%} "
        f"({len(corpus)} pages: {ours * len(corpus):.1f} s extracting, "
        f"{DEFAULT_INTERVAL * len(corpus):.0f} s waiting for turns on one host)"
    )


if __name__ == "__main__":
    main()
