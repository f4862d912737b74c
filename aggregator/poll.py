"""One poll of one source: fetch -> parse -> ingest.store_entries -> record_poll -> after_ingest.

The network part runs on the event loop; parsing runs in a thread of its own that a
stopping daemon leaves behind, and every archive call in a worker thread
(`asyncio.to_thread`), so a big feed never blocks the loop; the archive work of all polls
sharing a `Fetcher` is serialized by its `db_lock` (one SQLite connection, one writer).
What a poll changes on its source is decided by the pure `decide`.

Every poll ends as an outcome recorded on its source: the fetcher turns what the network
does into data, the parse step turns any exception of the parser into the poll's failure,
and one guard around the whole poll records whatever else goes wrong, with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from aggregator import ingest, metrics
from aggregator.config import Config
from aggregator.fetch import Fetcher, FetchResult, next_poll
from aggregator.logs import event
from aggregator.models import FetchLogEntry, IngestCounts, Origin, PollOutcome, SourceState
from aggregator.parse.feed import FeedError, ParsedFeed, parse_feed
from aggregator.store import Archive, ArchiveError
from aggregator.store.codec import now as utc_now

DEFAULT_INTERVAL = 1800.0  # for a source the archive knows but config no longer lists
MAX_ERROR = 500  # characters of an error kept in a report, the fetch log and last_error
log = logging.getLogger("aggregator.poll")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PollReport:
    source_id: str
    url: str
    status: int | None = None
    bytes: int = 0
    new: int = 0
    updated: int = 0
    duration: float = 0.0  # seconds, fetch to stored
    next_poll: datetime | None = None
    error: str | None = None  # the poll failed: why
    item_ids: tuple[int, ...] = ()  # new or changed items
    skipped: bool = False  # not polled (backing off, gone, disabled): `note` says why
    note: str | None = None  # why it was skipped, or a problem in a feed still ingested
    unchanged: bool = False  # 304, or the same bytes as last time: nothing was parsed


@dataclass(frozen=True, slots=True)
class _Ingested:
    """What the parse and store steps of a poll came to."""

    counts: IngestCounts = field(default_factory=IngestCounts)
    failure: str | None = None
    warning: str | None = None
    unchanged: bool = False


# --- decisions (pure) ----------------------------------------------------------------------


def skip_reason(source: SourceState, now: datetime, force: bool) -> str | None:
    """Why this source must not be polled now, or None to poll it."""
    if source.gone:
        return "gone (the server answered 410 Gone); give it a new url in config to poll again"
    if not source.enabled and not force:
        return "disabled"
    if not force and source.next_poll_not_before and now < source.next_poll_not_before:
        state = "backing off" if source.consecutive_errors else "not due"
        return f"{state} until {_stamp(source.next_poll_not_before)}"
    return None


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def decide(
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
    when = next_poll(now, result.status, result.retry_after, errors, interval, backoff_max, rand)
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
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


# --- one poll ------------------------------------------------------------------------------


class PollAbandoned(Exception):
    """The daemon is stopping: the poll gave up before storing anything."""


async def poll_source(
    archive: Archive,
    config: Config,
    source_id: str,
    fetcher: Fetcher,
    *,
    force: bool = False,
    now: datetime | None = None,
    db_lock: asyncio.Lock | None = None,
    stopping: asyncio.Event | None = None,
) -> PollReport:
    """Poll one source once, unless it is backing off (force polls anyway).

    Whatever goes wrong becomes this source's recorded failure, with back-off: nothing a
    source sends makes this raise. When `stopping` is set before the poll reaches its
    store step, the fetch or parse in flight is abandoned and nothing is recorded.
    """
    started = time.monotonic()
    now = now or utc_now()
    lock = db_lock or fetcher.db_lock
    async with lock:
        source = await asyncio.to_thread(archive.get_source, source_id)
    if source is None:
        raise ValueError(f'no source "{source_id}" in the archive')
    reason = skip_reason(source, now, force)
    if reason:
        report = PollReport(
            source_id, source.url, next_poll=source.next_poll_not_before, skipped=True, note=reason
        )
    else:
        try:
            report = await _poll(archive, config, source, fetcher, now, lock, stopping)
        except PollAbandoned:
            report = PollReport(source_id, source.url, skipped=True, note="abandoned: stopping")
        except Exception as exc:  # a fault no stage foresaw is still only this source's
            _log_fault("poll of %s failed", source_id, exc)
            report = await _record_fault(archive, config, source, now, lock, exc)
    report = replace(report, duration=time.monotonic() - started)
    metrics.POLLS.labels(source=source_id, outcome=outcome_label(report)).inc()
    return report


async def _poll(
    archive: Archive,
    config: Config,
    source: SourceState,
    fetcher: Fetcher,
    now: datetime,
    lock: asyncio.Lock,
    stopping: asyncio.Event | None,
) -> PollReport:
    work = _fetch_and_parse(fetcher, source, config.fetch.max_entries)
    result, parsed, ingested = await _unless(stopping, work)
    async with lock:
        ingested, outcome = await asyncio.to_thread(
            _store,
            archive,
            source,
            result,
            parsed,
            ingested,
            now,
            _interval(config, source.id),
            config,
            random.random(),
        )
        if ingested.counts.changed:
            await asyncio.to_thread(_after_ingest, archive, config, ingested.counts, source.id)
    _count_stored(source.id, ingested.counts)
    return PollReport(
        source_id=source.id,
        url=source.url,
        status=result.status,
        bytes=len(result.body),
        new=ingested.counts.new,
        updated=ingested.counts.updated,
        next_poll=outcome.next_poll_not_before,
        error=outcome.error,
        item_ids=ingested.counts.item_ids,
        note=ingested.warning
        or (f"moved permanently to {outcome.new_url}" if outcome.new_url else None),
        unchanged=ingested.unchanged or result.not_modified,
    )


async def _fetch_and_parse(
    fetcher: Fetcher, source: SourceState, max_entries: int
) -> tuple[FetchResult, ParsedFeed | None, _Ingested]:
    """The part of a poll before any transaction: it may be abandoned at any point."""
    result = await fetcher.get(source.url, source.etag, source.last_modified)
    metrics.FETCH_BYTES.labels(source=source.id).inc(len(result.body))
    if not result.ok:
        return result, None, _Ingested()
    if body_hash(result.body) == source.body_hash:
        return result, None, _Ingested(unchanged=True)
    parsed, ingested = await _parse(result, source.id, max_entries)
    return result, parsed, ingested


async def _parse(
    result: FetchResult, source_id: str, max_entries: int
) -> tuple[ParsedFeed | None, _Ingested]:
    event(log, "parse started", logging.DEBUG, source=source_id, bytes=len(result.body))
    try:
        parsed = await in_own_thread(
            parse_feed, result.body, result.final_url, result.headers, max_entries=max_entries
        )
    except FeedError as exc:
        return None, _Ingested(failure=str(exc))
    except Exception as exc:  # a parser library tripping over input it did not foresee
        log.debug("parsing the answer for %s failed", source_id, exc_info=True)
        return None, _Ingested(failure=f"cannot parse: {describe(exc)}")
    _count_dropped(source_id, parsed)
    warning = "; ".join(part for part in (parsed.bozo, parsed.note) if part) or None
    return parsed, _Ingested(warning=warning)


async def _record_fault(
    archive: Archive,
    config: Config,
    source: SourceState,
    now: datetime,
    lock: asyncio.Lock,
    exc: Exception,
) -> PollReport:
    """Record an unforeseen fault as the poll's failure, with back-off like any other."""
    error = describe(exc) if isinstance(exc, ArchiveError) else f"internal error: {describe(exc)}"
    nothing = FetchResult(url=source.url, final_url=source.url)
    try:
        async with lock:
            outcome = await asyncio.to_thread(
                _record,
                archive,
                source,
                nothing,
                _Ingested(failure=error),
                now,
                _interval(config, source.id),
                config,
                random.random(),
            )
    except Exception as again:
        _log_fault("the failed poll of %s could not be recorded", source.id, again)
        return PollReport(source.id, source.url, error=f"{error}; not recorded: {describe(again)}")
    return PollReport(source.id, source.url, next_poll=outcome.next_poll_not_before, error=error)


def _log_fault(message: str, source_id: str, exc: Exception) -> None:
    """One line; the traceback too when debugging (the CLI's errors are one line)."""
    debugging = log.isEnabledFor(logging.DEBUG)
    log.error(f"{message}: %s", source_id, describe(exc), exc_info=debugging)


def describe(exc: BaseException) -> str:
    """An exception as one line for a log, a report or `last_error`."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ArchiveError):  # its message is written for people: "disk full: ..."
        line = text
    else:
        line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= MAX_ERROR else line[: MAX_ERROR - 1] + "…"


def _interval(config: Config, source_id: str) -> float:
    settings = config.source(source_id)
    return settings.interval if settings else DEFAULT_INTERVAL


# --- running a parse that may be abandoned ------------------------------------------------


async def _unless(stopping: asyncio.Event | None, work: Coroutine[Any, Any, T]) -> T:
    """Await `work`, unless `stopping` is set first: then cancel it, raise PollAbandoned."""
    if stopping is None:
        return await work
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled():
        raise PollAbandoned
    return task.result()


async def in_own_thread(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `func` in a daemon thread of its own and await its result.

    Not `asyncio.to_thread`: the default executor's threads are joined when the event loop
    and then the interpreter end, so a stopping daemon waited out a 40 s parse. Nobody
    waits for this thread; what it computes touches nothing shared, so it can be left
    behind when its caller is cancelled (the process then ends without it).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():  # the caller was cancelled and no longer waits
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def run() -> None:
        try:
            value, error = func(*args, **kwargs), None
        except BaseException as exc:
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: the process is ending
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=run, name=getattr(func, "__name__", "work"), daemon=True).start()
    return await future


# --- counting -------------------------------------------------------------------------------


def outcome_label(report: PollReport) -> str:
    """The `outcome` label of metrics.POLLS: ok, unchanged, error or skipped."""
    if report.skipped:
        return "skipped"
    if report.error:
        return "error"
    return "unchanged" if report.unchanged else "ok"


def _count_dropped(source_id: str, parsed: ParsedFeed) -> None:
    """Entries a document had that the parse left out: over fetch.max_entries or the tag
    budget (`over_limit`; the poll's note says which), or not convertible (`unreadable`)."""
    for reason, number in (("over_limit", parsed.dropped), ("unreadable", parsed.unreadable)):
        if number:
            metrics.ENTRIES_DROPPED.labels(source=source_id, reason=reason).inc(number)


def _count_stored(source_id: str, counts: IngestCounts) -> None:
    for change, number in (("new", counts.new), ("updated", counts.updated)):
        if number:
            metrics.ITEMS_STORED.labels(source=source_id, change=change).inc(number)


def _store(
    archive: Archive,
    source: SourceState,
    result: FetchResult,
    parsed: ParsedFeed | None,
    ingested: _Ingested,
    now: datetime,
    interval: float,
    config: Config,
    rand: float,
) -> tuple[_Ingested, PollOutcome]:
    """Store the entries and the poll's outcome together: both land, or neither does."""
    try:
        with archive.transaction():
            if parsed is not None:
                counts = ingest.store_entries(archive, parsed.entries, source.id, Origin.FEED, now)
                ingested = _Ingested(counts=counts, warning=ingested.warning)
            outcome = _record(archive, source, result, ingested, now, interval, config, rand)
    except Exception as exc:  # the transaction rolled back: the archive is as it was
        _log_fault("ingest of %s failed", source.id, exc)
        ingested = _Ingested(failure=f"ingest failed, nothing stored: {describe(exc)}")
        outcome = _record(archive, source, result, ingested, now, interval, config, rand)
    return ingested, outcome


def _record(
    archive: Archive,
    source: SourceState,
    result: FetchResult,
    ingested: _Ingested,
    now: datetime,
    interval: float,
    config: Config,
    rand: float,
) -> PollOutcome:
    outcome = decide(
        source, result, ingested.failure, now, interval, config.fetch.backoff_max, rand
    )
    note = f"warning: {ingested.warning}" if ingested.warning and not outcome.error else None
    archive.record_poll(
        source.id,
        outcome,
        FetchLogEntry(
            time=now,
            source_id=source.id,
            url=result.final_url or source.url,
            status=result.status,
            bytes=len(result.body),
            duration_ms=round(result.elapsed * 1000, 1),
            new_items=ingested.counts.new,
            updated_items=ingested.counts.updated,
            error=outcome.error or note,
        ),
    )
    return outcome


def _after_ingest(archive: Archive, config: Config, counts: IngestCounts, source_id: str) -> None:
    try:
        ingest.after_ingest(archive, config, counts)
    except Exception as exc:  # the items are stored and the publish owed: a later run settles
        _log_fault("after-ingest work for %s failed", source_id, exc)


# --- the publish a run owes ----------------------------------------------------------------


def settle_owed_publish(archive: Archive, config: Config, began: datetime) -> bool | None:
    """At the end of a run (a `fetch`, a daemon tick): publish what the archive owes from
    before, as `ingest.settle_publish` does, unless a publish already failed since `began`
    (trying again at once would fail the same way). None: nothing owed or not tried now."""
    failure = archive.publish_state().last_failure
    if failure is not None and failure >= began:
        return None
    return ingest.settle_publish(archive, config)


# --- every source, for the CLI -------------------------------------------------------------


def poll_all(
    config: Config, archive: Archive, source_id: str | None = None, force: bool = False
) -> list[PollReport]:
    """Poll every enabled source of config (or the one named) once, concurrently."""
    if source_id is not None and config.source(source_id) is None:
        known = ", ".join(s.id for s in config.sources) or "none"
        raise ValueError(f'no source "{source_id}" in {config.path} (sources: {known})')
    ids = [source_id] if source_id else [s.id for s in config.sources if s.enabled]
    return asyncio.run(_poll_many(config, archive, ids, force))


async def _poll_many(
    config: Config, archive: Archive, ids: list[str], force: bool
) -> list[PollReport]:
    async with Fetcher(config) as fetcher:
        polls = [poll_source(archive, config, i, fetcher, force=force) for i in ids]
        done = await asyncio.gather(*polls, return_exceptions=True)
    return [
        _unrecorded(i, r) if isinstance(r, BaseException) else r
        for i, r in zip(ids, done, strict=True)
    ]


def _unrecorded(source_id: str, exc: BaseException) -> PollReport:
    """A poll that failed before it knew its source (the archive could not be read)."""
    if not isinstance(exc, Exception):
        raise exc
    return PollReport(source_id, "", error=f"poll failed, not recorded: {describe(exc)}")


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
    parts += [f"{report.duration:.1f}s", f"next poll {_stamp(report.next_poll)}"]
    line = f"{report.source_id}: {', '.join(parts)}"
    if report.error:
        line += f" (error: {report.error})"
    elif report.note:
        line += f" ({report.note})"
    return line


def _stamp(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "never"
