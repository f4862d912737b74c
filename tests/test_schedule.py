"""The daemon's decisions, without a daemon: when to poll first, what a reload changes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aggregator.config import load
from aggregator.models import SourceState
from aggregator.schedule import first_run, jitter_for, plan_reload

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CONFIG = Path(__file__).parent.parent / "config.toml"


def state(**changes) -> SourceState:
    base = SourceState(
        id="nato-news", kind="feed", title="NATO", url="https://x/", config_url="https://x/",
        enabled=True, gone=False, etag=None, last_modified=None, body_hash=None,
        last_poll=None, last_status=None, last_error=None, consecutive_errors=0,
        next_poll_not_before=None,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def test_a_never_polled_source_is_polled_at_once_plus_jitter():
    assert first_run(None, 1800, NOW, 60, 0.0) == NOW
    assert first_run(state(), 1800, NOW, 60, 0.5) == NOW + timedelta(seconds=30)


def test_a_restart_waits_for_the_interval_since_the_last_poll():
    polled = NOW - timedelta(minutes=10)
    assert first_run(state(last_poll=polled), 1800, NOW, 0, 0) == polled + timedelta(minutes=30)
    long_ago = NOW - timedelta(days=1)
    assert first_run(state(last_poll=long_ago), 1800, NOW, 0, 0) == NOW


def test_back_off_from_the_fetcher_is_respected_across_restarts():
    later = NOW + timedelta(hours=2)
    assert first_run(state(next_poll_not_before=later), 60, NOW, 0, 0) == later


def test_jitter_is_capped_by_a_share_of_the_interval():
    assert jitter_for(1800, 60) == 60
    assert jitter_for(10, 60) == 1


def test_reload_plan_names_what_changed():
    old = load(CONFIG)
    extra = dataclasses.replace(old.sources[0], id="second", url="https://example.org/f.xml")
    slower = dataclasses.replace(old.sources[0], interval=3600)
    new = dataclasses.replace(
        old,
        sources=(slower, extra),
        server=dataclasses.replace(old.server, port=9090),
    )
    plan = plan_reload(old, new, "rules-a", "rules-a")
    assert [s.id for s in plan.add] == ["second"]
    assert [s.id for s in plan.reschedule] == ["nato-news"]
    assert plan.remove == ()
    assert plan.restart_needed == ("server.port",)
    assert not plan.reclassify and plan.republish
    gone = plan_reload(new, dataclasses.replace(new, sources=(extra,)), "a", "b")
    assert gone.remove == ("nato-news",) and gone.reclassify and gone.republish
    same = plan_reload(old, old, "a", "a")
    assert (same.add, same.remove, same.reschedule, same.republish) == ((), (), (), False)
