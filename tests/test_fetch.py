"""The fetch stage against a real HTTP server on 127.0.0.1, and its pure back-off rules."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib
from datetime import UTC, datetime, timedelta

import brotli
import pytest

from aggregator import __version__
from aggregator.config import FetchConfig
from aggregator.fetch import Decoder, Fetcher, FetchError, parse_retry_after
from aggregator.models import FetchResult
from aggregator.poll import backoff_delay, next_poll

CAP = 200_000
CONFIG = FetchConfig(
    user_agent_contact="https://example.org/contact",
    connect_timeout=2.0,
    read_timeout=0.5,
    max_bytes=CAP,
    max_entries=5000,
    backoff_max=6 * 3600.0,
    allow_fast_polling=False,
    allow_private_addresses=False,
)
FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title></channel></rss>'


def get(url, config=CONFIG, **kwargs):
    async def run():
        async with Fetcher(config) as fetcher:
            return await fetcher.get(url, **kwargs)

    return asyncio.run(run())


# --- requests ----------------------------------------------------------------------------------


def test_a_plain_get_sends_an_honest_user_agent_and_returns_the_body(feed_server):
    url = feed_server.route("/feed", body=FEED)
    result = get(url)
    assert (result.status, result.body, result.error, result.final_url) == (200, FEED, None, url)
    assert result.ok and result.elapsed > 0
    assert result.headers["content-type"].startswith("application/rss+xml")
    (request,) = feed_server.requests("/feed")
    ua = request.headers["user-agent"]
    assert ua == f"nato-partnership-aggregator/{__version__} (+https://example.org/contact)"
    assert "application/rss+xml" in request.headers["accept"]
    assert {"gzip", "br"} <= set(request.headers["accept-encoding"].replace(" ", "").split(","))
    assert "if-none-match" not in request.headers


def test_validators_are_sent_exactly_as_stored_and_304_is_not_modified(feed_server):
    etag, stamp = 'W/"5e1-abc"', "Wed, 23 Nov 2022 10:00:00 GMT"
    url = feed_server.route("/feed", body=FEED, etag=etag, last_modified=stamp)
    result = get(url, etag=etag, last_modified=stamp)
    assert (result.status, result.not_modified, result.body, result.ok) == (304, True, b"", False)
    sent = feed_server.requests("/feed")[0].headers
    assert (sent["if-none-match"], sent["if-modified-since"]) == (etag, stamp)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b, wbits=-15)),  # raw deflate, as some servers send
        ("br", brotli.compress),
    ],
)
def test_compressed_bodies_are_decoded(feed_server, encoding, compress):
    url = feed_server.route("/feed", body=compress(FEED * 50), raw_encoding=encoding)
    assert get(url).body == FEED * 50


def test_http_errors_are_data_not_exceptions(feed_server):
    for status in (404, 500, 503):
        url = feed_server.route(f"/s{status}", status=status, body=b"oops")
        result = get(url)
        assert (result.status, result.error, result.ok) == (status, None, False)


def test_410_is_gone(feed_server):
    result = get(feed_server.route("/gone", status=410))
    assert result.gone and result.status == 410


def test_network_failures_become_error_strings():
    result = get("http://127.0.0.1:9/feed")  # the discard port: nothing listens
    assert result.status is None and result.error.startswith("cannot connect")


def test_only_http_and_https_are_fetched():
    for url in ("file:///etc/passwd", "ftp://example.org/feed"):
        assert get(url).error.startswith("refusing to fetch")


# --- caps and timeouts ---------------------------------------------------------------------------


def test_a_declared_oversized_body_is_refused_before_reading(feed_server):
    url = feed_server.route("/big", body=b"x" * (CAP + 1))
    assert "over the 200000 byte cap" in get(url).error


def test_an_endless_body_is_cut_off_at_the_cap(feed_server):
    url = feed_server.route("/endless", endless=True)
    result = get(url)
    assert result.error == "response larger than the 200000 byte cap (cut off)"
    assert result.body == b""


def test_a_gzip_bomb_is_cut_off_without_inflating_in_memory(feed_server):
    bomb = gzip.compress(b"\0" * 50_000_000, compresslevel=9)  # 50 kB on the wire
    assert len(bomb) < CAP
    config = FetchConfig(**{**CONFIG.__dict__, "max_bytes": 1_000_000})
    url = feed_server.route("/bomb", body=bomb, raw_encoding="gzip")
    tracemalloc.start()
    try:
        result = get(url, config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "after decompression" in result.error
    assert peak < 8_000_000  # the cap plus buffers: nowhere near the 50 MB inside


def test_a_brotli_bomb_stops_at_the_limit_without_inflating():
    bomb = brotli.compress(b"\0" * 50_000_000, quality=1)  # 9 kB
    decoder = Decoder("br", 100_000)
    with pytest.raises(FetchError, match="after decompression"):
        decoder.feed(bomb)
    assert decoder.produced < 1_000_000  # brotli's output buffer overshoots a little, no more


def test_a_stalled_read_times_out(feed_server):
    url = feed_server.route("/stall", body=b"x" * 1000, stall_after=10)
    assert get(url).error.startswith("read timed out")


def test_a_trickle_that_never_stalls_is_cut_off_by_the_deadline(feed_server):
    # One byte every 0.05 s never trips the 0.3 s read timeout; the whole-response deadline
    # (connect 0.3 s + 4 x read 0.3 s) ends it.
    config = FetchConfig(**{**CONFIG.__dict__, "connect_timeout": 0.3, "read_timeout": 0.3})
    url = feed_server.route("/trickle", body=b"x", endless=True, trickle=0.05)
    assert "took longer than 1.5s" in get(url, config).error


def test_a_slow_header_is_a_read_timeout_naming_the_limit(feed_server):
    url = feed_server.route("/slow", body=FEED, delay=2)
    assert get(url).error.startswith(f"read timed out (no data for {CONFIG.read_timeout:g} s)")


# --- redirects ------------------------------------------------------------------------------------


def test_a_permanent_redirect_reports_the_new_url(feed_server):
    for status in (301, 308):
        feed_server.route(f"/old{status}", status=status, location=f"/new{status}")
        feed_server.route(f"/new{status}", body=FEED)
        result = get(feed_server.url(f"/old{status}"))
        assert result.status == 200 and result.body == FEED
        assert result.permanent_url == feed_server.url(f"/new{status}")


def test_a_temporary_redirect_is_followed_but_not_recorded(feed_server):
    for status in (302, 307):
        feed_server.route(f"/tmp{status}", status=status, location=feed_server.url("/feed"))
    feed_server.route("/feed", body=FEED)
    for status in (302, 307):
        result = get(feed_server.url(f"/tmp{status}"))
        assert (result.status, result.permanent_url) == (200, None)
        assert result.final_url == feed_server.url("/feed")


def test_a_permanent_hop_before_a_temporary_one_records_only_the_permanent_part(feed_server):
    feed_server.route("/a", status=301, location="/b")
    feed_server.route("/b", status=302, location="/c")
    feed_server.route("/c", body=FEED)
    assert get(feed_server.url("/a")).permanent_url == feed_server.url("/b")


def test_a_permanent_redirect_to_a_target_that_fails_is_not_recorded(feed_server):
    feed_server.route("/moved", status=301, location="/missing")
    result = get(feed_server.url("/moved"))
    assert (result.status, result.permanent_url) == (404, None)


def test_a_redirect_loop_is_an_error(feed_server):
    feed_server.route("/x", status=301, location="/y")
    feed_server.route("/y", status=302, location="/x")
    assert get(feed_server.url("/x")).error.startswith("redirect loop:")


def test_more_than_five_hops_is_an_error(feed_server):
    for hop in range(7):
        feed_server.route(f"/h{hop}", status=302, location=f"/h{hop + 1}")
    feed_server.route("/h7", body=FEED)
    assert get(feed_server.url("/h0")).error.startswith("more than 5 redirects")
    feed_server.route("/h2", body=FEED)  # five hops or fewer are fine
    assert get(feed_server.url("/h0")).status == 200


def test_a_redirect_to_another_scheme_is_refused(feed_server):
    feed_server.route("/to-file", status=301, location="file:///etc/passwd")
    assert get(feed_server.url("/to-file")).error.startswith("refusing to fetch a file URL")


# --- politeness -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        "javascript:alert(1)",
        "data:application/rss+xml,<rss/>",
        "http://127.0.0.1:99999/feed.rss",
        "http://[::1/feed.rss",
    ],
)
def test_a_redirect_to_an_invalid_url_is_an_error_not_an_exception(feed_server, location):
    result = get(feed_server.route("/odd", status=302, location=location))
    assert result.status is None and not result.ok
    assert "invalid url" in result.error.lower() or result.error.startswith("refusing")


def test_one_request_in_flight_per_host(feed_server):
    feed_server.route("/slow", body=FEED, delay=0.2)

    async def run():
        async with Fetcher(CONFIG) as fetcher:
            return await asyncio.gather(*(fetcher.get(feed_server.url("/slow")) for _ in range(4)))

    results = asyncio.run(run())
    assert [r.status for r in results] == [200] * 4
    assert feed_server.max_in_flight == 1


def test_a_host_is_forgotten_once_no_request_holds_or_awaits_it(feed_server):
    feed_server.route("/slow", body=FEED, delay=0.2)
    hosts = ("127.0.0.1", "localhost")

    async def run():
        async with Fetcher(CONFIG) as fetcher:
            urls = [feed_server.url("/slow").replace("127.0.0.1", host) for host in hosts]
            polls = [asyncio.ensure_future(fetcher.get(url)) for url in urls * 2]
            await asyncio.sleep(0.1)
            held = len(fetcher._host_locks)
            results = await asyncio.gather(*polls)
            return held, [r.status for r in results], len(fetcher._host_locks)

    held, statuses, left = asyncio.run(run())
    assert (held, statuses, left) == (2, [200] * 4, 0)


def test_retry_after_is_read_from_429_and_503(feed_server):
    before = datetime.now(UTC)
    result = get(feed_server.route("/busy", status=429, retry_after="120"))
    assert before + timedelta(seconds=119) <= result.retry_after
    assert result.retry_after <= datetime.now(UTC) + timedelta(seconds=121)
    stamp = "Wed, 21 Oct 2037 07:28:00 GMT"
    result = get(feed_server.route("/down", status=503, retry_after=stamp))
    assert result.retry_after == datetime(2037, 10, 21, 7, 28, tzinfo=UTC)


# --- back-off (pure) ------------------------------------------------------------------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)
HOUR, BACKOFF_MAX = 3600.0, 6 * 3600.0


def test_parse_retry_after_reads_seconds_and_http_dates():
    assert parse_retry_after("30", NOW) == NOW + timedelta(seconds=30)
    assert parse_retry_after("Thu, 01 Jan 2026 01:00:00 GMT", NOW) == NOW + timedelta(hours=1)
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_absurd_retry_after_values_are_read_without_overflowing():
    latest = datetime.max.replace(tzinfo=UTC)
    assert parse_retry_after("999999999999", NOW) == latest
    assert parse_retry_after("9" * 40, NOW) == latest
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", NOW) == datetime(
        9999, 12, 31, 23, 59, 59, tzinfo=UTC
    )
    assert parse_retry_after("Mon, 01 Jan 99999999999 00:00:00 GMT", NOW) is None


def test_retry_after_is_honoured_only_up_to_backoff_max():
    for far in (NOW + timedelta(days=400), datetime.max.replace(tzinfo=UTC)):
        for status in (429, 503):
            assert next_poll(NOW, status, far, 1, 600, BACKOFF_MAX, 0.0) == NOW + timedelta(
                seconds=BACKOFF_MAX
            )


def test_a_success_polls_again_one_interval_later():
    for status in (200, 304):
        assert next_poll(NOW, status, None, 0, HOUR, BACKOFF_MAX, 0.7) == NOW + timedelta(hours=1)


def test_errors_back_off_exponentially_with_jitter_up_to_the_ceiling():
    delays = [backoff_delay(n, 600, BACKOFF_MAX, 1.0) for n in range(1, 10)]
    assert delays[:5] == [1200, 2400, 4800, 9600, 19200]
    assert delays[5:] == [BACKOFF_MAX] * 4
    assert backoff_delay(3, 600, BACKOFF_MAX, 0.0) == 2400  # jitter: half to all
    assert backoff_delay(1, 600, BACKOFF_MAX, 0.0) == 600  # never sooner than the interval
    assert backoff_delay(1, 8 * HOUR, BACKOFF_MAX, 0.5) == 8 * HOUR


def test_429_and_503_wait_for_retry_after_even_beyond_the_back_off():
    far = NOW + timedelta(hours=3)
    for status in (429, 503):
        assert next_poll(NOW, status, far, 1, 600, BACKOFF_MAX, 0.0) == far
    near = NOW + timedelta(seconds=5)  # a Retry-After sooner than the back-off: back-off wins
    assert next_poll(NOW, 429, near, 1, 600, BACKOFF_MAX, 0.0) == NOW + timedelta(seconds=600)
    # Retry-After on other statuses is not ours to honour; the back-off decides.
    assert next_poll(NOW, 500, far, 1, 600, BACKOFF_MAX, 1.0) == NOW + timedelta(seconds=1200)


@pytest.mark.parametrize(
    ("content_type", "body", "page"),
    [
        ("text/html; charset=utf-8", b"<p>Hi</p>", True),
        ("application/xhtml+xml", b"<?xml version='1.0'?><html/>", True),
        ("", b"%PDF-1.7", True),  # nothing declared: whoever reads it judges
        ("text/plain", b"\n  <!DOCTYPE html><html><body>x</body></html>", True),
        ("application/rss+xml", b'<?xml version="1.0"?><rss version="2.0"/>', False),
        ("application/pdf", b"%PDF-1.7", False),
    ],
)
def test_what_looks_like_a_web_page(content_type, body, page):
    headers = {"content-type": content_type} if content_type else {}
    assert FetchResult("https://x.org/", 200, headers=headers, body=body).looks_like_html() is page


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("javascript:alert(1)", "refusing to fetch a javascript URL"),
        ("//example.org/x", "refusing to fetch a scheme-less URL"),
        ("http://example.org:99999/", "invalid URL"),
        ("http://[::1/", "invalid URL"),
    ],
)
def test_a_url_we_never_fetch_is_refused_without_a_request(url, reason):
    result = get(url)
    assert result.refused is not None and reason in result.refused
    assert result.error == result.refused and result.status is None
