"""Counters of what this process did, in Prometheus' text format (prometheus-client).

Stages count what happens to them here (polls, stored items, items left out of a publish,
publish time, bytes fetched); `serve` exposes the registry at /metrics together with the
state that outlives a process (last successful publish, back-off of each source), which
it reads from the archive at scrape time. Counters are per process: the daemon's /metrics
shows what the daemon did since it started, as Prometheus expects.

The counters are made, and prometheus-client imported, on their first use: a command that
counts nothing (`aggregator sources`, `items`, `search`) does not pay for them.
"""

from __future__ import annotations

import threading
from typing import Any

_NAMES = (
    "REGISTRY", "POLLS", "ITEMS_STORED", "ENTRIES_DROPPED", "FETCH_BYTES", "PUBLISH_LEFT_OUT",
    "PUBLISHES", "PUBLISH_SECONDS", "CAPTURES",
)  # fmt: skip


_MAKING = threading.Lock()  # polls in worker threads may count first at the same moment


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _MAKING:
        if name not in globals():
            _make()
    return globals()[name]


def _make() -> None:
    """Every counter, once, as module attributes (later lookups do not come here)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    REGISTRY = CollectorRegistry(auto_describe=True)

    POLLS = Counter(
        "aggregator_polls",
        "Polls of a source by outcome (ok, unchanged, error, skipped)",
        ["source", "outcome"],
        registry=REGISTRY,
    )
    ITEMS_STORED = Counter(
        "aggregator_items_stored",
        "Items written to the archive, by source and change (new, updated)",
        ["source", "change"],
        registry=REGISTRY,
    )
    ENTRIES_DROPPED = Counter(
        "aggregator_entries_dropped",
        "Entries of a fetched document that were not stored, by source and reason",
        ["source", "reason"],
        registry=REGISTRY,
    )
    FETCH_BYTES = Counter(
        "aggregator_fetch_bytes",
        "Bytes of response bodies received, after decompression, by source",
        ["source"],
        registry=REGISTRY,
    )
    PUBLISH_LEFT_OUT = Counter(
        "aggregator_publish_items_left_out",
        "Items that could not be rendered and were left out of a published document",
        ["feed", "reason"],
        registry=REGISTRY,
    )
    PUBLISHES = Counter(
        "aggregator_publishes",
        "Publish runs by outcome (ok, failed)",
        ["outcome"],
        registry=REGISTRY,
    )
    PUBLISH_SECONDS = Histogram(
        "aggregator_publish_duration_seconds",
        "Time one publish run took",
        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        registry=REGISTRY,
    )
    CAPTURES = Counter(
        "aggregator_captures",
        "Capture attempts of article pages by the state they left (captured, pending, ...)",
        ["state"],
        registry=REGISTRY,
    )
    globals().update({name: value for name, value in locals().items() if name in _NAMES})
