"""What one poll of one source decides and reports; pure, no I/O.

Whether to poll a source now (`skip_reason`), what the poll changes on its source
(`source_outcome`: validators, errors and back-off, the next poll, a move or a 410), and
the report of a poll as data and as the line `aggregator fetch` prints. The pipeline
runs the poll itself.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from http import HTTPStatus

from aggregator.clock import later, stamp, up_to_the_second
from aggregator.models import FetchResult, PollOutcome, PollReport, SourceState

# --- decisions ----------------------------------------------------------------------------


def skip_reason(source: SourceState, now: datetime, force: bool) -> str | None:
    """Why this source must not be polled now, or None to poll it."""
    if source.gone:
        return "gone (the server answered 410 Gone); give it a new url in config to poll again"
    if not source.enabled and not force:
        return "disabled"
    if not force and source.next_poll_not_before and now < source.next_poll_not_before:
        state = "backing off" if source.consecutive_errors else "not due"
        return f"{state} until {stamp(source.next_poll_not_before)}"
    return None


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def source_outcome(
    source: SourceState,
    result: FetchResult,
    failure: str | None,
    now: datetime,
    interval: float,
    backoff_max: float,
    rand: float,
) -> PollOutcome:
    """What a poll changes on its source.

    Validators, the body hash and a permanent redirect are kept only from a poll whose body
    was stored, so a body that failed to parse is fetched and parsed again next time.
    """
    error = failure or _http_error(result)
    if result.gone:
        return PollOutcome(
            status=410,
            error="410 Gone: the source is disabled",
            consecutive_errors=source.consecutive_errors + 1,
            next_poll_not_before=None,
            gone=True,
        )
    errors = source.consecutive_errors + 1 if error else 0
    # to the second, as the archive keeps it, so the report and `sources` say the same time
    when = next_poll(now, result.status, result.retry_after, errors, interval, backoff_max, rand)
    when = up_to_the_second(when)
    if error:
        return PollOutcome(result.status, error, errors, when)
    return PollOutcome(
        status=result.status,
        error=None,
        consecutive_errors=0,
        next_poll_not_before=when,
        etag=result.headers.get("etag"),
        last_modified=result.headers.get("last-modified"),
        body_hash=None if result.not_modified else body_hash(result.body),
        new_url=result.permanent_url,
    )


def _http_error(result: FetchResult) -> str | None:
    if result.error:
        return result.error
    if result.ok or result.not_modified:
        return None
    return f"HTTP {result.status} {_reason(result.status)}".strip()


def _reason(status: int | None) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


# --- when to poll next ------------------------------------------------------------------

THROTTLED = {429, 503}  # the statuses whose Retry-After we honour


def is_success(status: int | None) -> bool:
    return status is not None and (200 <= status < 300 or status == 304)


def backoff_delay(
    consecutive_errors: int, interval: float, backoff_max: float, rand: float
) -> float:
    """Seconds to wait after `consecutive_errors` failures in a row (1 = the first).

    Doubles with each error from one interval, capped at backoff_max, and jittered to
    between half and all of that so many clients that failed together spread out. Never
    shorter than the normal interval: an error is no reason to poll more often.
    """
    doubled = interval * 2 ** min(max(consecutive_errors, 1), 32)
    ceiling = min(backoff_max, doubled)
    return max(interval, ceiling * (0.5 + rand / 2))


def next_poll(
    now: datetime,
    status: int | None,
    retry_after: datetime | None,
    consecutive_errors: int,
    interval: float,
    backoff_max: float,
    rand: float,
) -> datetime:
    """The earliest time the next poll may happen.

    A success (2xx or 304) polls again one interval later; `consecutive_errors` counts
    this poll when it failed. 429 and 503 wait at least until Retry-After, but never
    longer than backoff_max: a server cannot switch a source off by asking for years.
    """
    if is_success(status):
        return later(now, interval)
    backed_off = later(now, backoff_delay(consecutive_errors, interval, backoff_max, rand))
    if status in THROTTLED and retry_after is not None:
        return max(backed_off, min(retry_after, later(now, backoff_max)))
    return backed_off


# --- reporting ----------------------------------------------------------------------------


def outcome_label(report: PollReport) -> str:
    """The `outcome` label of metrics.POLLS: ok, unchanged, error or skipped."""
    if report.skipped:
        return "skipped"
    if report.error:
        return "error"
    return "unchanged" if report.unchanged else "ok"


def summary_line(report: PollReport) -> str:
    """`nato-news: 200, 12345 bytes, 3 new, 1 updated, 0.8s, next poll 2026-11-23T10:30:00Z`"""
    if report.skipped:
        return f"{report.source_id}: skipped, {report.note}"
    status = str(report.status) if report.status is not None else "no response"
    parts = [status, f"{report.bytes} bytes"]
    if report.unchanged:
        parts.append("unchanged")
    else:
        parts += [f"{report.new} new", f"{report.updated} updated"]
    parts += [f"{report.duration:.1f}s", f"next poll {stamp(report.next_poll, 'never')}"]
    line = f"{report.source_id}: {', '.join(parts)}"
    if report.error:
        line += f" (error: {report.error})"
    elif report.note:
        line += f" ({report.note})"
    return line
