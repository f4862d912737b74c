"""/healthz and /metrics through the real server: what a monitor sees when publishing fails,
lags, or works (issue 11, observability)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aggregator import config as config_module
from aggregator.models import PublishState
from aggregator.serve.observe import publish_health
from aggregator.store import Archive
from tests.conftest import ROOT
from tests.test_serve import fill_archive, make_site, serving

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
HOUR = 3600.0


@pytest.fixture
def site(tmp_path) -> Iterator[tuple[config_module.Config, str]]:
    shutil.copytree(ROOT / "archive" / "seed", tmp_path / "archive" / "seed")
    config = make_site(tmp_path)
    fill_archive(config)
    with serving(config) as base:
        yield config, base


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# --- the pure decision ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (PublishState(), "ok"),
        (PublishState(owed=True, owed_since=NOW - timedelta(minutes=5)), "ok"),
        (PublishState(owed=True, owed_since=NOW - timedelta(hours=2)), "overdue"),
        (PublishState(owed=False, owed_since=NOW - timedelta(hours=2)), "ok"),
        (PublishState(owed=True, last_error="disk full", last_failure=NOW), "failing"),
        (PublishState(last_error="feeds/: permission denied"), "failing"),
    ],
)
def test_publish_health_decides_from_the_recorded_state(state, expected):
    assert publish_health(state, NOW, HOUR) == expected


# --- /healthz ---------------------------------------------------------------------------------


def test_healthz_is_ok_with_nosniff_and_the_publish_state(site):
    _, base = site
    response = httpx.get(f"{base}/healthz")
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    health = response.json()
    assert health["status"] == "ok"
    assert health["publish"]["owed"] is False
    assert health["publish"]["last_success"] is not None
    assert health["publish"]["last_error"] is None


def test_healthz_and_metrics_count_the_article_captures_by_state(site):
    config, base = site
    with Archive(config.archive.database) as archive:
        first, second = (item.id for item in archive.list_items()[:2])
        archive.queue_captures([(first, "https://www.nato.int/a.htm")], NOW)
        archive.queue_captures([(second, "https://www.nato.int/b.htm")], NOW)
    captures = httpx.get(f"{base}/healthz").json()["captures"]
    assert captures == {
        "pending": 2, "captured": 0, "not article": 0, "disallowed": 0, "given up": 0
    }  # fmt: skip
    gauges = samples(httpx.get(f"{base}/metrics").text)
    assert gauges[("aggregator_captures_queued", (("state", "pending"),))] == 2
    assert gauges[("aggregator_captures_queued", (("state", "given up"),))] == 0


def test_healthz_is_503_while_publishing_fails_and_200_once_it_works(site):
    config, base = site
    with Archive(config.archive.database) as archive:
        archive.mark_publish_owed(datetime.now(UTC))
        archive.record_publish_failure(datetime.now(UTC), "feeds: permission denied")
    failing = httpx.get(f"{base}/healthz")
    assert failing.status_code == 503
    assert failing.headers["x-content-type-options"] == "nosniff"
    assert failing.json()["status"] == "failing"
    assert failing.json()["publish"]["last_error"] == "feeds: permission denied"
    assert failing.json()["sources"], "a failing publish still reports the sources"

    with Archive(config.archive.database) as archive:
        archive.record_publish_success(datetime.now(UTC))
    assert httpx.get(f"{base}/healthz").status_code == 200


def test_healthz_is_503_when_a_publish_is_owed_longer_than_publish_overdue(site):
    config, base = site
    assert config.server.publish_overdue == HOUR  # the default
    with Archive(config.archive.database) as archive:
        archive.mark_publish_owed(datetime.now(UTC) - timedelta(minutes=5))
    fresh = httpx.get(f"{base}/healthz")
    assert fresh.status_code == 200 and fresh.json()["publish"]["owed"] is True

    with Archive(config.archive.database) as archive:
        archive.record_publish_success(datetime.now(UTC))
        archive.mark_publish_owed(datetime.now(UTC) - timedelta(hours=2))
    overdue = httpx.get(f"{base}/healthz")
    assert overdue.status_code == 503 and overdue.json()["status"] == "overdue"


# --- /metrics ---------------------------------------------------------------------------------


def test_metrics_show_the_archive_state_in_prometheus_text_format(site):
    config, base = site
    with Archive(config.archive.database) as archive:
        archive.mark_publish_owed(datetime.now(UTC))
        archive.record_publish_failure(datetime.now(UTC), "disk full")
    response = httpx.get(f"{base}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert response.headers["x-content-type-options"] == "nosniff"
    values = samples(response.text)
    assert values[("aggregator_archive_up", ())] == 1
    assert values[("aggregator_publish_failing", ())] == 1
    assert values[("aggregator_publish_owed_since_timestamp_seconds", ())] > 0
    assert values[("aggregator_publish_last_success_timestamp_seconds", ())] > 0
    assert values[("aggregator_items", (("origin", "seed"),))] == 10
    assert values[("aggregator_items", (("origin", "feed"),))] == 2
    source = (("source", config.sources[0].id),)
    assert values[("aggregator_source_consecutive_errors", source)] == 0
    assert values[("aggregator_source_last_poll_timestamp_seconds", source)] == (
        datetime(2024, 5, 9, 12, tzinfo=UTC).timestamp()
    )
    # the process's own counters are exposed beside the archive's state
    assert any(name.startswith("aggregator_publish_duration_seconds") for name, _ in values)


def test_metrics_say_when_the_archive_cannot_be_read(tmp_path):
    config = make_site(tmp_path / "site")
    config.archive.database.parent.mkdir(parents=True, exist_ok=True)
    config.archive.database.write_bytes(b"this is not a database" * 100)
    with serving(config) as base:
        response = httpx.get(f"{base}/metrics")
    assert response.status_code == 200
    assert samples(response.text)[("aggregator_archive_up", ())] == 0
