"""/healthz and /metrics: what an operator's monitor reads.

Both read the archive at request time, so they tell the same story whichever process
(daemon, one-off `fetch`, cron) wrote it. /healthz is one answer for an uptime check: 200
when the archive is readable and the published feeds keep up with it, 503 when the archive
cannot be read, the last publish failed, or a publish has been owed longer than
`server.publish_overdue`. /metrics is Prometheus' text format: this process's counters
(aggregator.metrics) and gauges of the archive's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from aggregator.config import Config
from aggregator.metrics import REGISTRY
from aggregator.models import Origin, PublishState, SourceState
from aggregator.serve import pages
from aggregator.store import Archive, ArchiveError

__all__ = ["ArchiveView", "health", "metrics_text", "publish_health", "read_archive"]


@dataclass(frozen=True, slots=True)
class ArchiveView:
    """What the archive says about itself at one moment."""

    sources: list[SourceState]
    counts: dict[str, int]
    publish: PublishState
    captures: dict[str, int] = field(default_factory=dict)  # per state


def read_archive(config: Config) -> ArchiveView:
    """Raises ArchiveError when the archive cannot be read."""
    with Archive(config.archive.database, readonly=True) as archive:
        counts = {"total": archive.count_items()}
        counts.update((origin.value, archive.count_items(origin)) for origin in Origin)
        return ArchiveView(
            sources=archive.list_sources(include_seed=True),
            counts=counts,
            publish=archive.publish_state(),
            captures=archive.capture_counts(),
        )


def publish_health(state: PublishState, now: datetime, overdue_after: float) -> str:
    """'failing' (the newest publish failed), 'overdue' (items stored more than
    `overdue_after` seconds ago are not published yet) or 'ok'."""
    if state.failing:
        return "failing"
    lagging = state.owed and state.owed_since is not None
    if lagging and (now - state.owed_since).total_seconds() > overdue_after:
        return "overdue"
    return "ok"


def health(config: Config, now: datetime) -> tuple[int, dict]:
    path = config.archive.database
    try:
        view = read_archive(config)
    except ArchiveError as exc:
        reason = str(exc).replace(f"{path}: ", "")  # no file system paths on a public page
        return 503, {"status": "unavailable", "error": f"archive: {reason}"}
    status = publish_health(view.publish, now, config.server.publish_overdue)
    payload = pages.health(view.sources, view.counts, view.captures, view.publish, status)
    return (200 if status == "ok" else 503), payload


def metrics_text(config: Config) -> bytes:
    """This process's counters, then the archive's gauges, in Prometheus' text format."""
    state = CollectorRegistry(auto_describe=False)
    state.register(_ArchiveCollector(config))
    return generate_latest(REGISTRY) + generate_latest(state)


class _ArchiveCollector:
    def __init__(self, config: Config):
        self.config = config

    def collect(self):
        try:
            view = read_archive(self.config)
        except ArchiveError:
            yield _gauge("aggregator_archive_up", "1 when the archive can be read", 0)
            return
        yield _gauge("aggregator_archive_up", "1 when the archive can be read", 1)
        yield from _publish_gauges(view.publish)
        yield from _source_gauges(view.sources)
        items = GaugeMetricFamily("aggregator_items", "Items in the archive", labels=["origin"])
        for origin, count in view.counts.items():
            if origin != "total":
                items.add_metric([origin], count)
        yield items
        captures = GaugeMetricFamily(
            "aggregator_captures_queued",
            "Article captures by state: pending, captured, not article, disallowed, given up",
            labels=["state"],
        )
        for state, count in view.captures.items():
            captures.add_metric([state], count)
        yield captures


def _publish_gauges(state: PublishState):
    yield _gauge(
        "aggregator_publish_last_success_timestamp_seconds",
        "When a publish last succeeded (Unix time; 0: never)",
        _timestamp(state.last_success),
    )
    yield _gauge(
        "aggregator_publish_owed_since_timestamp_seconds",
        "Since when the published feeds lag the archive (Unix time; 0: they do not)",
        _timestamp(state.owed_since) if state.owed else 0,
    )
    yield _gauge("aggregator_publish_failing", "1 when the newest publish failed", state.failing)


def _source_gauges(sources: list[SourceState]):
    errors = GaugeMetricFamily(
        "aggregator_source_consecutive_errors",
        "Failed polls in a row (0: the last poll succeeded); above 0 the source backs off",
        labels=["source"],
    )
    next_poll = GaugeMetricFamily(
        "aggregator_source_next_poll_timestamp_seconds",
        "The earliest time the source is polled again (Unix time; 0: not set)",
        labels=["source"],
    )
    last_poll = GaugeMetricFamily(
        "aggregator_source_last_poll_timestamp_seconds",
        "When the source was last polled (Unix time; 0: never)",
        labels=["source"],
    )
    for source in sources:
        if source.kind == "seed":
            continue
        errors.add_metric([source.id], source.consecutive_errors)
        next_poll.add_metric([source.id], _timestamp(source.next_poll_not_before))
        last_poll.add_metric([source.id], _timestamp(source.last_poll))
    yield from (errors, next_poll, last_poll)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


def _timestamp(when: datetime | None) -> float:
    if when is None:
        return 0.0
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
