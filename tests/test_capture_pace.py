"""The per-host pace (a fake clock, and the loopback server's own log) and the retry decision."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from aggregator.capture import pace as pace_module
from aggregator.capture.pace import GiveUp, HostPace, Retry, RetryPolicy, after_failure


class FakeTime:
    """Virtual time, one timeline per task, each starting at `base`: a task's sleeps and
    its requests' durations (`spend`) move its own clock only, so tasks that would run side
    by side do not add up; `advance` moves where new tasks start."""

    def __init__(self) -> None:
        self.base = 500.0
        self.now: dict[asyncio.Task | None, float] = {}

    def clock(self) -> float:
        return self.now.get(asyncio.current_task(), self.base)

    def advance(self, seconds: float) -> None:
        self.base += seconds

    def spend(self, seconds: float) -> None:
        self.now[asyncio.current_task()] = self.clock() + seconds

    async def sleep(self, seconds: float) -> None:
        self.spend(seconds)


def starts(pace: HostPace, fake: FakeTime, urls: list[str], lasting: float = 0.0):
    """When each request may start, in seconds from now, all asked for at once; each
    request takes `lasting` seconds."""

    asked = fake.base

    async def one(url: str) -> tuple[str, float]:
        async with pace.turn(url):
            started = fake.clock() - asked
            fake.spend(lasting)
        return url, started

    async def run() -> list[tuple[str, float]]:
        return await asyncio.gather(*(one(u) for u in urls))

    return dict(asyncio.run(run()))


def test_one_host_gets_one_turn_every_interval_and_other_hosts_do_not_wait():
    fake = FakeTime()
    pace = HostPace(clock=fake.clock, sleep=fake.sleep)  # the default, 2 s
    urls = [
        "https://www.nato.int/a",
        "https://www.nato.int/b",
        "https://act.nato.int/x",
        "https://www.nato.int/c",
    ]
    assert starts(pace, fake, urls) == {
        "https://www.nato.int/a": 0.0,
        "https://www.nato.int/b": 2.0,
        "https://act.nato.int/x": 0.0,
        "https://www.nato.int/c": 4.0,
    }


def test_spellings_of_one_host_share_its_pace():
    fake = FakeTime()
    pace = HostPace(interval=2.0, clock=fake.clock, sleep=fake.sleep)
    urls = ["https://bücher.example/a", "https://XN--BCHER-KVA.example./b"]
    assert starts(pace, fake, urls) == {urls[0]: 0.0, urls[1]: 2.0}


def test_names_that_are_one_server_for_httpx_share_its_pace():
    fake = FakeTime()
    pace = HostPace(interval=2.0, clock=fake.clock, sleep=fake.sleep)
    urls = [
        "https://straße.example/a",
        "https://xn--strae-oqa.example/b",
        "https://strasse.example/",
    ]
    assert starts(pace, fake, urls) == {urls[0]: 0.0, urls[1]: 2.0, urls[2]: 0.0}


def test_the_pause_runs_from_the_end_of_the_request_before():
    fake = FakeTime()
    pace = HostPace(interval=2.0, clock=fake.clock, sleep=fake.sleep)
    urls = ["https://www.nato.int/a", "https://www.nato.int/b", "https://www.nato.int/c"]
    # Each request takes 3 s: the next starts 2 s after it ended, 5 s after it started.
    assert starts(pace, fake, urls, lasting=3.0) == {
        "https://www.nato.int/a": 0.0,
        "https://www.nato.int/b": 5.0,
        "https://www.nato.int/c": 10.0,
    }


def test_a_host_asked_again_after_a_quiet_spell_goes_at_once():
    fake = FakeTime()
    pace = HostPace(interval=2.0, clock=fake.clock, sleep=fake.sleep)
    assert starts(pace, fake, ["https://www.nato.int/a"]) == {"https://www.nato.int/a": 0.0}
    fake.advance(1.5)
    assert starts(pace, fake, ["https://WWW.NATO.INT/b"]) == {"https://WWW.NATO.INT/b": 0.5}
    fake.advance(10)
    assert starts(pace, fake, ["https://www.nato.int/c"]) == {"https://www.nato.int/c": 0.0}


def test_only_hosts_in_use_or_in_their_pause_are_remembered(monkeypatch):
    monkeypatch.setattr(pace_module, "MAX_HOSTS", 3)
    fake = FakeTime()
    pace = HostPace(interval=2.0, clock=fake.clock, sleep=fake.sleep)
    starts(pace, fake, [f"https://site{n}.example/" for n in range(3)])
    fake.advance(5)  # every pause is over
    starts(pace, fake, ["https://new.example/"])
    assert list(pace._hosts) == ["new.example"]


def test_the_server_sees_requests_to_one_host_spaced_by_the_interval(feed_server):
    feed_server.route("/page", body=b"<html></html>", content_type="text/html", delay=0.05)
    interval = 0.2
    pace = HostPace(interval=interval)

    async def fetch(client: httpx.AsyncClient) -> None:
        async with pace.turn(feed_server.url("/page")):
            await client.get(feed_server.url("/page"))

    async def run() -> None:
        async with httpx.AsyncClient() as client:
            await asyncio.gather(*(fetch(client) for _ in range(4)))

    asyncio.run(run())
    arrivals = [r.time for r in feed_server.requests("/page")]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(arrivals) == 4
    # A request arrives before it ends and the next leaves an interval after that end, so
    # no jitter can bring two arrivals closer than the interval (and the slow answers,
    # 50 ms each, push them apart by that much more).
    assert min(gaps) >= interval, gaps


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_the_delay_doubles_with_each_failure_up_to_the_cap():
    policy = RetryPolicy(max_attempts=10, first_delay=600, max_delay=3600)
    delays = [
        after_failure(n, "cannot connect", NOW, rand=1.0 - 1e-12, policy=policy).at - NOW
        for n in (1, 2, 3, 4, 5)
    ]
    assert [round(d.total_seconds()) for d in delays] == [600, 1200, 2400, 3600, 3600]


def test_jitter_spreads_between_half_and_all_of_the_delay():
    policy = RetryPolicy(first_delay=600)
    early = after_failure(1, "timed out", NOW, rand=0.0, policy=policy)
    late = after_failure(1, "timed out", NOW, rand=0.999, policy=policy)
    assert early == Retry(NOW + timedelta(seconds=300))
    assert NOW + timedelta(seconds=599) < late.at < NOW + timedelta(seconds=600)


def test_a_later_retry_after_is_honoured_up_to_the_cap():
    policy = RetryPolicy(first_delay=60, max_delay=7200)
    asked = NOW + timedelta(hours=1)
    assert after_failure(1, "503", NOW, 0.5, status=503, retry_after=asked, policy=policy) == (
        Retry(asked)
    )
    absurd = NOW + timedelta(days=365)
    capped = after_failure(1, "503", NOW, 0.5, status=503, retry_after=absurd, policy=policy)
    assert capped == Retry(NOW + timedelta(hours=2))


def test_it_gives_up_after_the_last_attempt_with_the_reason():
    policy = RetryPolicy(max_attempts=3)
    assert isinstance(after_failure(2, "read timed out", NOW, 0.5, policy=policy), Retry)
    assert after_failure(3, "read timed out", NOW, 0.5, policy=policy) == GiveUp(
        "read timed out (3 attempts)"
    )


@pytest.mark.parametrize("status", [404, 410, 451])
def test_a_page_that_is_not_there_is_given_up_at_once(status):
    assert after_failure(1, f"HTTP {status}", NOW, 0.5, status=status) == GiveUp(
        f"HTTP {status} (retrying will not change a {status})"
    )


@pytest.mark.parametrize("status", [429, 500, 503, None])
def test_transient_failures_are_retried(status):
    assert isinstance(after_failure(1, "failed", NOW, 0.5, status=status), Retry)
