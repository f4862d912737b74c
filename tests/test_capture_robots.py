"""robots.txt rules (Protego, RFC 9309) and their cache, served by a real loopback server."""

from __future__ import annotations

import asyncio
import urllib.robotparser

import httpx
import pytest

from aggregator.capture.robots import (
    MAX_BYTES,
    RobotsCache,
    allowed,
    robots_url,
    rules_from_answer,
)
from aggregator.fetch import user_agent
from tests.feedserver import Route

AGENT = user_agent("mailto:archivist@example.org")  # nato-partnership-aggregator/x (+...)
ROBOTS = b"""\
User-agent: *
Disallow: /private/

User-agent: nato-partnership-aggregator
Disallow: /
Allow: /cps/en/natohq/news_
Disallow: /cps/en/natohq/news_*.pdf$
"""


def rules(body: bytes):
    return rules_from_answer(200, body)


def test_our_group_applies_to_us_and_the_star_group_to_others():
    parsed = rules(ROBOTS)
    assert allowed(parsed, "https://www.nato.int/cps/en/natohq/news_1.htm", AGENT)
    assert not allowed(parsed, "https://www.nato.int/cps/en/natohq/topics_1.htm", AGENT)
    assert not allowed(parsed, "https://www.nato.int/cps/en/natohq/news_1.pdf", AGENT)
    assert allowed(parsed, "https://www.nato.int/cps/en/natohq/topics_1.htm", "OtherBot/1.0")
    assert not allowed(parsed, "https://www.nato.int/private/x", "OtherBot/1.0")


def test_the_longest_match_wins_where_urllib_robotparser_would_lock_us_out():
    body = b"User-agent: *\nDisallow: /\nAllow: /cps/\n"
    url = "https://www.nato.int/cps/en/natohq/news_1.htm"
    assert allowed(rules(body), url, AGENT)
    stdlib = urllib.robotparser.RobotFileParser()
    stdlib.parse(body.decode().splitlines())
    assert not stdlib.can_fetch(AGENT, url)  # first match: why Protego is used


@pytest.mark.parametrize(
    ("status", "policy", "may"),
    [
        (404, "allow all", True),
        (410, "allow all", True),
        (403, "allow all", True),  # RFC 9309: any 4xx means no rules
        (500, "disallow all", False),
        (503, "disallow all", False),
        (None, "disallow all", False),  # unreachable
        (302, "allow all", True),  # a redirect the fetcher did not follow: unavailable
    ],
)
def test_what_each_answer_means(status, policy, may):
    answer = rules_from_answer(status, b"User-agent: *\nDisallow: /\n")
    assert answer.policy == policy
    assert allowed(answer, "https://www.nato.int/cps/en/natohq/news_1.htm", AGENT) is may


def test_only_the_first_500_kib_are_read_and_never_half_a_line():
    head = b"User-agent: *\nDisallow: /early/\n"
    filler = b"#" + b"x" * (MAX_BYTES - 10 - len(head) - 2) + b"\n"
    body = head + filler + b"Disallow: /cut-in-half/\n" + b"Disallow: /late/\n"
    assert len(head + filler) < MAX_BYTES < len(head + filler) + len(b"Disallow: /cut-in-half/")
    parsed = rules(body)
    assert not allowed(parsed, "https://h.example/early/x", AGENT)
    assert allowed(parsed, "https://h.example/late/x", AGENT)
    assert allowed(parsed, "https://h.example/cut-in-half/x", AGENT)
    assert allowed(parsed, "https://h.example/cut", AGENT)  # not read as "Disallow: /cut"


def test_garbage_is_no_rules_and_does_not_raise():
    parsed = rules(b"\xff\xfe\x00<html><body>Not a robots file</body></html>\x00" * 100)
    assert allowed(parsed, "https://h.example/anything", AGENT)


def test_robots_url_is_per_origin():
    assert (
        robots_url("HTTPS://WWW.Nato.int:8443/cps/x?y=1#z")
        == "https://www.nato.int:8443/robots.txt"
    )
    assert robots_url("http://www.nato.int/a") == "http://www.nato.int/robots.txt"


# --- the cache, against the loopback server -----------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def getter(client: httpx.AsyncClient):
    async def get(url: str) -> tuple[int | None, bytes]:
        try:
            response = await client.get(url)
        except httpx.TransportError:
            return None, b""
        return response.status_code, response.content

    return get


def test_the_cache_fetches_once_per_host_until_the_rules_expire(feed_server):
    feed_server.route("/robots.txt", body=ROBOTS, content_type="text/plain")
    clock = Clock()
    page = feed_server.url("/cps/en/natohq/topics_1.htm")

    async def run() -> list[bool]:
        async with httpx.AsyncClient() as client:
            cache = RobotsCache(getter(client), ttl=100, clock=clock)
            answers = await asyncio.gather(*(cache.allowed(page, AGENT) for _ in range(5)))
            answers.append(await cache.allowed(feed_server.url("/cps/en/natohq/news_9"), AGENT))
            clock.now += 100
            answers.append(await cache.allowed(page, AGENT))
            return answers

    assert asyncio.run(run()) == [False] * 5 + [True, False]
    assert len(feed_server.requests("/robots.txt")) == 2  # five at once and one later: one fetch


def test_a_server_error_disallows_and_is_asked_again_sooner(feed_server):
    feed_server.route(
        "/robots.txt",
        Route(status=503, body=b"busy", content_type="text/plain"),
        Route(status=404, body=b"none", content_type="text/plain"),
    )
    clock = Clock()
    page = feed_server.url("/cps/en/natohq/news_1.htm")

    async def run() -> list[bool]:
        async with httpx.AsyncClient() as client:
            cache = RobotsCache(getter(client), ttl=10_000, error_ttl=60, clock=clock)
            first = await cache.allowed(page, AGENT)
            clock.now += 60
            return [first, await cache.allowed(page, AGENT)]

    assert asyncio.run(run()) == [False, True]
    assert len(feed_server.requests("/robots.txt")) == 2


def test_an_unreachable_host_is_disallowed(feed_server):
    feed_server.stop()  # nothing listens on the port any more

    async def run() -> bool:
        async with httpx.AsyncClient() as client:
            return await RobotsCache(getter(client)).allowed(feed_server.url("/a"), AGENT)

    assert asyncio.run(run()) is False


def test_a_cache_that_met_many_origins_keeps_only_the_live_ones(monkeypatch):
    from aggregator.capture import robots as robots_module

    monkeypatch.setattr(robots_module, "MAX_ORIGINS", 3)
    clock = Clock()

    async def get(url: str) -> tuple[int | None, bytes]:
        return 404, b""

    async def run() -> RobotsCache:
        cache = RobotsCache(get, ttl=10, clock=clock)
        for n in range(5):
            await cache.rules_for(f"https://site{n}.example/page")
        clock.now += 10  # all of them expire
        await cache.rules_for("https://fresh.example/page")
        return cache

    cache = asyncio.run(run())
    assert list(cache._entries) == ["https://fresh.example/robots.txt"]
    assert list(cache._locks) == ["https://fresh.example/robots.txt"]
