"""The pipeline: the one module that runs the stages in order, and the archive's writer.

    poll:    fetch -> parse -> decide -> store.apply -> classify -> publish
    import:  read seed files -^
    restore, reload, start-up:            classify (all) -> publish (every feed)

`decide` is dedupe's pure decision (complete intents, published ids included) made from
the candidates the store looks up; `store.apply` writes the intents and the poll's
outcome in one transaction, which also marks a publish owed; then only the changed items
are classified and only the feeds (and months) they touch republished. A publish owed
from before (one failed, or a process died after its store) republishes every feed.

The CLI, the daemon and snapshot restore call these functions; no stage calls another.

A `Pipeline` owns the archive's write lock in a process: a poll's network part runs on
the event loop, its parse in a thread of its own that a stopping daemon leaves behind,
and every archive call in a worker thread under the lock (one SQLite connection, one
writer), so a big feed never blocks the loop. Every poll ends as an outcome recorded on
its source: whatever a source sends, or a fault no stage foresaw, is that poll's failure,
with back-off; nothing of it stops another source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from aggregator import classify, dedupe, metrics
from aggregator.clock import now as utc_now
from aggregator.clock import now_to_the_second
from aggregator.config import SOURCE, Config, FeedConfig, Selectors, SourceConfig
from aggregator.errors import SourceError, UsageError
from aggregator.logs import event
from aggregator.models import (
    Action,
    Candidate,
    CaptureJob,
    CaptureOutcome,
    CaptureReport,
    CaptureState,
    Entry,
    Explanation,
    FeedCandidate,
    FeedVerdict,
    FetchLogEntry,
    FetchResult,
    Found,
    Identity,
    IngestCounts,
    Intent,
    ItemReference,
    KnownEntry,
    Origin,
    ParsedFeed,
    PollOutcome,
    PollReport,
    PublishDebt,
    PublishReport,
    SourceSpec,
    SourceState,
)
from aggregator.parse import parse_document
from aggregator.poll import body_hash, outcome_label, skip_reason, source_outcome
from aggregator.store import Archive, ArchiveError
from aggregator.store.sources import SEED_SOURCE_ID

if TYPE_CHECKING:  # httpx loads with the fetcher, when a command fetches
    from aggregator.fetch import Fetcher

# for a source the archive knows but config no longer lists
DEFAULT_INTERVAL: float = SOURCE["interval"].default
RULES_HASH_KEY = "classify.rules_hash"  # meta key: the rules the stored scores came from
CLASSIFY_CHUNK = 500
MAX_ERROR = 500  # characters of an error kept in a report, the fetch log and last_error
log = logging.getLogger("aggregator.pipeline")
T = TypeVar("T")


# --- decide and store ----------------------------------------------------------------------


def store_entries(
    archive: Archive,
    entries: Sequence[Entry],
    source_id: str,
    origin: Origin = Origin.FEED,
    seen: datetime | None = None,
    remember: Callable[[list[Intent]], None] | None = None,
) -> IngestCounts:
    """Decide what each entry is and apply it in one transaction, which also records
    that a publish is owed when any item changed (so a crash before the publish leaves
    the debt for the next run to settle), and what `remember` keeps of the intents."""
    seen = seen or utc_now()
    identified = dedupe.unique_identified(entries, source_id)
    with archive.transaction():
        intents = decide(archive, identified, origin)
        counts = archive.apply(intents, source_id, origin, seen)
        if origin is Origin.FEED:
            archive.queue_captures(links_to_capture(intents), seen)
        if counts.item_ids:
            archive.mark_publish_owed(seen)
        if remember is not None:
            remember(intents)
        return counts


def _remember_entries(
    archive: Archive, source_id: str, parsed: ParsedFeed, intents: Sequence[Intent]
) -> None:
    """Keep each entry read, by its digest, with what it became, for the next poll to leave
    unread while nothing changed; a document read whole leaves nothing to keep."""
    if parsed.entry_digests is None:
        archive.keep_entries(source_id, (), ())
        return
    digest_of = {
        id(entry): d for entry, d in zip(parsed.entries, parsed.entry_digests, strict=True)
    }
    read = [
        (digest_of[id(i.entry)], KnownEntry(i.item_id, i.content_hash, i.identity))
        for i in intents
        if i.item_id is not None and id(i.entry) in digest_of
    ]
    archive.keep_entries(source_id, parsed.unread, read)


def known_entries(archive: Archive, source_id: str) -> dict[bytes, KnownEntry]:
    """The entries of the source's last stored poll that a re-poll may leave unread."""
    return {
        digest: known
        for digest, known, item in archive.known_entries(source_id)
        if dedupe.still_known(known, item)
    }


def _needs_every_entry(
    archive: Archive, parsed: ParsedFeed, known: dict[bytes, KnownEntry], source_id: str
) -> bool:
    """Whether the entries left unread could change what the changed ones are: dedupe's
    decision (read-only lookups, under the write lock, before the poll's transaction).
    What was known when the parse began is checked again first: another source's poll
    may have stored since (its item's content, or its link, is another's now)."""
    now_known = known_entries(archive, source_id)
    if any(now_known.get(digest) != known[digest] for digest in parsed.unread):
        return True
    if not parsed.entries:
        return False
    identified = [(entry, dedupe.identify(entry, source_id)) for entry in parsed.entries]
    unread = [known[digest] for digest in parsed.unread]
    return dedupe.needs_every_entry(identified, unread, find_candidates(archive, identified))


def links_to_capture(intents: Sequence[Intent]) -> list[tuple[int, str]]:
    """(item id, link) of the new items whose article can be fetched: an http(s) link."""
    return [
        (intent.item_id, intent.entry.link)
        for intent in intents
        if intent.action is Action.NEW
        and intent.entry.link
        and intent.entry.link.lower().startswith(("http://", "https://"))
    ]


def decide(
    archive: Archive, identified: Sequence[tuple[Entry, Identity]], origin: Origin
) -> list[Intent]:
    """Dedupe's complete intents for these entries, from what the archive holds; call it in
    the transaction that applies them (new items get the next free ids).

    A published id another item already has is rare (a feed whose guid is another item's
    link): the store says which of the new ids it holds and dedupe decides again."""
    candidates = find_candidates(archive, identified)
    first_id = archive.next_item_id()
    intents = dedupe.decide(identified, candidates, origin, first_id)
    held = archive.held_atom_ids(dedupe.new_atom_ids(intents))
    if held:
        intents = dedupe.decide(identified, candidates, origin, first_id, held)
    return intents


def find_candidates(
    archive: Archive, identified: Sequence[tuple[Entry, Identity]]
) -> list[Candidate]:
    """The stored items that may be these stories: by guid and link, then by title and
    day for the identities those leave open, then unmerged seeds of nearby days. Each
    item once, in the order found."""
    identities = [ident for _, ident in identified]
    found: dict[int, Candidate] = {}

    def add(candidates: list[Candidate]) -> None:
        for candidate in candidates:
            found.setdefault(candidate.id, candidate)

    add(archive.candidates_where("guid_key", [i.guid_key for i in identities if i.guid_key]))
    urls = [i.canonical_url for i in identities if i.canonical_url]
    add(archive.candidates_where("canonical_url", urls))
    rest = dedupe.needs_title_lookup(identities, found.values())
    add(archive.candidates_where("fingerprint", [i.fingerprint for i in rest]))
    add(archive.candidates_where("title_key", [i.title_key for i in rest]))
    window = dedupe.seed_window(entry for entry, _ in identified)
    if window:
        add(archive.unmerged_seeds_between(*window))
    return list(found.values())


# --- seeds ----------------------------------------------------------------------------------


def import_seeds(
    archive: Archive, paths: Sequence[Path], reference: str | None = None
) -> IngestCounts:
    """Import seed files (or folders of them); all of them land, or none does.

    Parsing every file before storing any means a bad file changes nothing.
    """
    from aggregator.parse.seed import read_seed_file, seed_files

    files = [f for p in paths for f in (seed_files(p) if p.is_dir() else [p])]
    entries = [entry for f in files for entry in read_seed_file(f, reference)]
    archive.ensure_seed_source()
    return store_entries(archive, entries, SEED_SOURCE_ID, Origin.SEED)


def ensure_seeds(archive: Archive, folder: Path) -> IngestCounts | None:
    """Import the seeds when the archive has none yet (a fresh archive)."""
    if archive.count_items(Origin.SEED) or not folder.is_dir():
        return None
    return import_seeds(archive, [folder])


def import_seeds_and_publish(
    archive: Archive, config: Config, paths: Sequence[Path], reference: str | None = None
) -> tuple[IngestCounts, bool]:
    """`import-seeds`: import, classify what changed, publish what it touched. False when
    the publish failed (recorded and owed)."""
    counts = import_seeds(archive, paths, reference)
    return counts, classify_and_publish(archive, config, counts)


# --- classify and publish what changed ----------------------------------------------------


def classify_and_publish(archive: Archive, config: Config, counts: IngestCounts) -> bool:
    """What follows every store that changed items: classify them, then republish the
    feeds they touch, or every feed when the archive owed a publish from before. False
    when the publish failed (recorded and owed, never raised); True otherwise."""
    if not counts.item_ids:
        return True
    debt = archive.publish_debt()  # read first: a change stored meanwhile stays owed
    topics = classify_items(archive, config, counts.item_ids)
    return publish_touched(archive, config, counts, topics, debt)


def publish_touched(
    archive: Archive,
    config: Config,
    counts: IngestCounts,
    topics: set[str],
    debt: PublishDebt,
    own_marks: int = 1,
) -> bool:
    """Republish the feeds of `topics` (the months of `counts`), or every feed and month
    when `debt` holds more than the `own_marks` the changes themselves made. False when
    the publish failed (recorded and owed)."""
    from aggregator.publish import PublishError, feeds_touched

    # A feed no publish has written yet is written now, even empty: its URL must answer.
    touched = feeds_touched(config, topics) | archive.never_published(
        [feed.slug for feed in config.feeds]
    )
    owed_before = debt.unsettled > own_marks
    feeds = [feed for feed in config.feeds if owed_before or feed.slug in touched]
    months = None if owed_before else counts.months  # a debt from before: every month
    try:
        _publish_recorded(
            archive, config, feeds, settles=True, covers=debt.marks, months=months,
            items=counts.item_ids,
        )  # fmt: skip
    except PublishError:
        return False
    return True


def classify_items(archive: Archive, config: Config, item_ids: Sequence[int]) -> set[str]:
    """Score items against every topic; returns the topics they match or matched."""
    topics = classify.load_topics(config)
    matched: set[str] = set()  # before and after: an item leaving a feed changes it too
    with archive.transaction():  # saved a chunk at a time: 10,000 items' scores held 16 MB
        for start in range(0, len(item_ids), CLASSIFY_CHUNK):
            chunk = item_ids[start : start + CLASSIFY_CHUNK]
            scores = []
            for item in archive.get_items(chunk):
                matched.update(item.topics)
                for score in classify.score_item(topics, item):
                    scores.append(score)
                    if score.matched:
                        matched.add(score.topic)
            archive.save_scores(scores, replace_items=chunk)
    return matched


def explain(archive: Archive, config: Config, reference: ItemReference) -> Explanation | None:
    """Why the item is or is not in each topic and feed, scored afresh by the rules in
    `config`; None when no item matches the reference."""
    from aggregator.publish import topics_carrying

    item = archive.find_item(reference)
    if item is None:
        return None
    topics = classify.load_topics(config)
    results = classify.classify(topics, item.title, item.summary_text, item.content_text)
    scores = {result.topic: result.score for result in results if result.matched}
    verdicts = tuple(_verdict(feed.slug, topics_carrying(feed, scores)) for feed in config.feeds)
    return Explanation(item, tuple(classify.explain_lines(results)), verdicts)


def _verdict(slug: str, carrying: list[str] | None) -> FeedVerdict:
    if carrying is None:  # a feed of every item
        return FeedVerdict(slug, True, "every item")
    return FeedVerdict(slug, carrying != [], ", ".join(carrying) or "no topic matched")


def reclassify(archive: Archive, config: Config) -> int:
    """Score every item again (the rules changed); one transaction."""
    topics = classify.load_topics(config)
    with archive.transaction():
        archive.clear_scores()
        batch, count = [], 0
        for item in archive.iter_items():
            batch.extend(classify.score_item(topics, item))
            count += 1
            if len(batch) >= 5000:
                archive.save_scores(batch)
                batch = []
        archive.save_scores(batch)
        archive.set_meta(RULES_HASH_KEY, classify.rules_hash(config))
    log.info("reclassified %d items", count, extra={"fields": {"items": count}})
    return count


def reclassify_and_publish(archive: Archive, config: Config) -> int:
    """`reclassify`: score every item again, then publish every feed."""
    count = reclassify(archive, config)
    publish(archive, config)
    return count


def reclassify_if_rules_changed(archive: Archive, config: Config) -> bool:
    if archive.get_meta(RULES_HASH_KEY) == classify.rules_hash(config):
        return False
    reclassify(archive, config)
    return True


def publish(archive: Archive, config: Config, slugs: Iterable[str] | None = None) -> PublishReport:
    """Render the named feeds (default: every feed) and record the outcome in the archive;
    a run that renders every feed settles what was owed. UsageError for an unknown slug,
    before anything is written; PublishError, once recorded, when a feed did not publish."""
    from aggregator.publish import chosen_feeds

    feeds = config.feeds if slugs is None else chosen_feeds(config, slugs)
    everything = {feed.slug for feed in feeds} >= {feed.slug for feed in config.feeds}
    return _publish_recorded(archive, config, feeds, settles=everything)


def publish_or_say_why(archive: Archive, config: Config) -> str | None:
    """Publish every feed; None, or why it failed (recorded and owed, settled later)."""
    from aggregator.publish import PublishError

    try:
        publish(archive, config)
    except PublishError as exc:
        return str(exc)
    return None


def settle_publish(archive: Archive, config: Config) -> bool | None:
    """Publish every feed if the archive owes a publish (one failed, or the process died
    before it ran). None: nothing was owed; True: settled; False: it failed again, which
    is recorded and stays owed (never raised)."""
    if not archive.publish_state().owed:
        return None
    return publish_or_say_why(archive, config) is None


def settle_owed_publish(archive: Archive, config: Config, began: datetime) -> bool | None:
    """At the end of a run (a `fetch`, a daemon tick): publish what the archive owes from
    before, as `settle_publish` does, unless a publish already failed since `began`
    (trying again at once would fail the same way). None: nothing owed or not tried now."""
    failure = archive.publish_state().last_failure
    if failure is not None and failure >= began:
        return None
    return settle_publish(archive, config)


def _publish_recorded(
    archive: Archive,
    config: Config,
    feeds: Sequence[FeedConfig],
    *,
    settles: bool,
    covers: int | None = None,
    months: frozenset[str] | None = None,
    items: Sequence[int] = (),
) -> PublishReport:
    """Publish `feeds` (their archive documents of `months` only, default: every month, and
    the pages of the changed `items`, with `months` given); record a failure (owed) or, when
    the run `settles` the debt, a success covering the marks made before it began (`covers`,
    default: now)."""
    from aggregator import publish as publisher
    from aggregator.publish.isolate import one_line

    covers = archive.publish_debt().marks if covers is None else covers
    began = time.monotonic()
    report, error = None, None
    try:
        slugs = [feed.slug for feed in feeds]
        report = publisher.publish_feeds(archive, config, slugs, months, items)
        error = report.failure() or None
    except Exception as exc:  # the archive could not be read: a failed publish all the same
        error = one_line(exc)
        log.error("publish failed: %s", error)  # a feed's failure the publisher logged itself
    metrics.PUBLISH_SECONDS.observe(time.monotonic() - began)
    finished = utc_now()  # not to the second: see store.publishing
    if error:
        archive.record_publish_failure(finished, error)
        metrics.PUBLISHES.labels(outcome="failed").inc()
        raise publisher.PublishError(f"publish failed: {error}", report)
    if settles:
        archive.record_publish_success(finished, covers)
    metrics.PUBLISHES.labels(outcome="ok").inc()
    log.info(
        "publish",
        extra={
            "fields": {
                "feeds": ",".join(feed.slug for feed in feeds) or "none",
                "written": len(report.written),
                "unchanged": report.unchanged,
                "left_out": len(report.left_out),
            }
        },
    )
    return report


# --- the archive's housekeeping ------------------------------------------------------------


def sync_sources(archive: Archive, config: Config) -> None:
    archive.sync_sources([SourceSpec(s.id, s.title, s.url, s.enabled) for s in config.sources])


def start_up(archive: Archive, config: Config) -> str | None:
    """A daemon's start: config's sources, the seeds of a fresh archive, scores for the
    current rules, every feed published. Returns why the publish failed, if it did (owed
    and settled by a later tick)."""
    sync_sources(archive, config)
    counts = ensure_seeds(archive, config.archive.seeds)
    if counts:  # said before the scoring and publishing that follow it
        event(log, "seeds imported", new=counts.new)
    if not reclassify_if_rules_changed(archive, config):
        # Items stored just before a crash may have missed classification.
        classify_items(archive, config, archive.unscored_item_ids())
    return publish_or_say_why(archive, config)


def apply_config(archive: Archive, config: Config, *, rescore: bool, republish: bool) -> str | None:
    """A reloaded config: its sources, scores when its rules changed, every feed published
    when its feeds did. Returns why the publish failed, if it did."""
    sync_sources(archive, config)
    if rescore:
        reclassify(archive, config)
    return publish_or_say_why(archive, config) if republish else None


def maintain(archive: Archive, config: Config) -> int:
    """The daily chores: trim the fetch log, let SQLite optimize, checkpoint the WAL."""
    cutoff = utc_now() - timedelta(seconds=config.daemon.fetch_log_max_age)
    trimmed = archive.trim_fetch_log(cutoff)
    archive.optimize()
    return trimmed


# --- a poll ----------------------------------------------------------------------------------


class PollAbandoned(Exception):
    """The daemon is stopping: the poll gave up before storing anything."""


@dataclass(frozen=True, slots=True)
class _Ingested:
    """What the parse and store steps of a poll came to."""

    counts: IngestCounts = field(default_factory=IngestCounts)
    failure: str | None = None
    warning: str | None = None
    unchanged: bool = False
    hint: str | None = None  # where the feeds are, when the source's feed seems gone


class Pipeline:
    """The archive's one writer in a process: its polls, and any other archive work run
    with `run_locked`, write one at a time (one SQLite connection) in worker threads."""

    def __init__(self, archive: Archive):
        self.archive = archive
        self.lock = asyncio.Lock()

    async def run_locked(self, work: Callable[..., T], *args: Any) -> T:
        """`work(archive, *args)` in a worker thread, holding the write lock."""
        async with self.lock:
            return await asyncio.to_thread(work, self.archive, *args)

    async def capture_due(
        self,
        config: Config,
        capturer: Capturer,
        *,
        limit: int | None = None,
        item_id: int | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        stopping: asyncio.Event | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> list[CaptureReport]:
        """Capture the due pages (at most `limit`; or only `item_id`'s), a few at a time,
        each host at its pace; store each as it comes, publish once at the end. A page
        still in flight when `stopping` is set is left pending."""
        jobs = await self.run_locked(Archive.due_captures, clock(), limit, item_id)
        reports: list[CaptureReport] = []
        stored: list[IngestCounts] = []
        topics: set[str] = set()
        gate = asyncio.Semaphore(CAPTURE_CONCURRENCY)

        async def one(job: CaptureJob) -> None:
            async with gate:
                report, counts, touched = await self._capture(
                    config, capturer, job, stopping, clock
                )
            if report is not None:
                reports.append(report)
            if counts.item_ids:
                stored.append(counts)
                topics.update(touched)
            if progress:
                progress("capture", len(reports), len(jobs))

        async def one_host(host_jobs: list[CaptureJob]) -> None:
            for job in host_jobs:  # in turn: a host's backlog holds one slot, not all
                if stopping is not None and stopping.is_set():
                    return  # the rest stay pending, untouched
                await one(job)

        await asyncio.gather(*(one_host(host_jobs) for host_jobs in _by_host(jobs)))
        if stored:
            await self.run_locked(_publish_captures, config, stored, topics)
        return reports

    async def _capture(
        self,
        config: Config,
        capturer: Capturer,
        job: CaptureJob,
        stopping: asyncio.Event | None,
        clock: Callable[[], datetime],
    ) -> tuple[CaptureReport | None, IngestCounts, set[str]]:
        now = clock().replace(microsecond=0)
        try:
            outcome = await _unless(stopping, capturer.attempt(job, now, random.random()))
        except PollAbandoned:
            return None, IngestCounts(), set()
        except Exception as exc:  # a fault no stage foresaw is this page's failure alone
            from aggregator.capture import outcome as capture_outcome

            _log_fault("capture of item %s failed", str(job.item_id), exc)
            error = f"internal error: {describe(exc)}"
            outcome = capture_outcome.failed(job, now, random.random(), error,
                                             policy=capturer.policy)  # fmt: skip
        try:
            counts, touched = await self.run_locked(_store_capture, config, job, outcome)
        except Exception as exc:
            _log_fault("storing the capture of item %s failed", str(job.item_id), exc)
            failure = CaptureReport(job.item_id, job.url, CaptureState.PENDING,
                                    f"not stored: {describe(exc)}")  # fmt: skip
            return failure, IngestCounts(), set()
        metrics.CAPTURES.labels(state=outcome.state.value).inc()
        return _capture_report(job, outcome, bool(counts.item_ids)), counts, touched

    async def poll(
        self,
        config: Config,
        source_id: str,
        fetcher: Fetcher,
        *,
        force: bool = False,
        now: datetime | None = None,
        stopping: asyncio.Event | None = None,
    ) -> PollReport:
        """Poll one source once, unless it is backing off (force polls anyway).

        Whatever goes wrong becomes this source's recorded failure, with back-off: nothing a
        source sends makes this raise. When `stopping` is set before the poll reaches its
        store step, the fetch or parse in flight is abandoned and nothing is recorded.
        """
        started = time.monotonic()
        now = now or now_to_the_second()  # the archive's resolution
        source = await self.run_locked(Archive.get_source, source_id)
        if source is None:
            raise UsageError(f'no source "{source_id}" in the archive')
        reason = skip_reason(source, now, force)
        if reason:
            report = PollReport(
                source_id,
                source.url,
                next_poll=source.next_poll_not_before,
                skipped=True,
                note=reason,
            )
        else:
            try:
                report = await self._poll(config, source, fetcher, now, stopping)
            except PollAbandoned:
                report = PollReport(source_id, source.url, skipped=True, note="abandoned: stopping")
            except Exception as exc:  # a fault no stage foresaw is still only this source's
                _log_fault("poll of %s failed", source_id, exc)
                report = await self._record_fault(config, source, now, exc)
        report = replace(report, duration=time.monotonic() - started)
        metrics.POLLS.labels(source=source_id, outcome=outcome_label(report)).inc()
        return report

    async def _poll(
        self,
        config: Config,
        source: SourceState,
        fetcher: Fetcher,
        now: datetime,
        stopping: asyncio.Event | None,
    ) -> PollReport:
        reader = _Reader.of(config.source(source.id), now, config.fetch.max_entries)
        known: dict[bytes, KnownEntry] = {}

        async def load_known() -> dict[bytes, KnownEntry]:
            known.update(await self.run_locked(known_entries, source.id))
            return known

        work = _fetch_and_parse(fetcher, source, reader, config.private_ok(source.id), load_known)
        result, parsed, ingested = await _unless(stopping, work)
        async with self.lock:
            every = (
                parsed is not None
                and parsed.known
                and await asyncio.to_thread(
                    _needs_every_entry, self.archive, parsed, known, source.id
                )
            )
            if not every:  # stored under the same hold: what was known is still so
                return await self._store_and_publish(config, source, result, parsed, ingested, now)
        # Deciding the changed entries alone could decide otherwise: read every entry, with
        # the lock let go meanwhile, so other sources' stores go on.
        parsed, ingested = await _unless(stopping, _parse(result, source.id, reader, {}))
        async with self.lock:
            return await self._store_and_publish(config, source, result, parsed, ingested, now)

    async def _store_and_publish(
        self,
        config: Config,
        source: SourceState,
        result: FetchResult,
        parsed: ParsedFeed | None,
        ingested: _Ingested,
        now: datetime,
    ) -> PollReport:
        """Store a poll's entries and outcome, then classify and publish what changed; the
        caller holds the lock."""
        if parsed is not None:
            _count_dropped(source.id, parsed)
        ingested, outcome = await asyncio.to_thread(
            _store, self.archive, config, source, result, parsed, ingested, now, random.random()
        )
        # Stored: the entries and the body go before classify and publish need memory.
        size, parsed, result = len(result.body), None, replace(result, body=b"")
        moved = outcome.new_url is not None
        if ingested.counts.changed or moved:
            await asyncio.to_thread(
                _classify_and_publish, self.archive, config, ingested.counts, source.id, moved
            )
        _count_stored(source.id, ingested.counts)
        return PollReport(
            source_id=source.id,
            url=source.url,
            status=result.status,
            bytes=size,
            new=ingested.counts.new,
            updated=ingested.counts.updated,
            next_poll=outcome.next_poll_not_before,
            error=outcome.error,
            item_ids=ingested.counts.item_ids,
            note=ingested.warning
            or (f"moved permanently to {outcome.new_url}" if outcome.new_url else None),
            unchanged=ingested.unchanged or result.not_modified,
        )

    async def _record_fault(
        self, config: Config, source: SourceState, now: datetime, exc: Exception
    ) -> PollReport:
        """Record an unforeseen fault as the poll's failure, with back-off like any other."""
        error = (
            describe(exc) if isinstance(exc, ArchiveError) else f"internal error: {describe(exc)}"
        )
        nothing = FetchResult(url=source.url, final_url=source.url)
        try:
            outcome = await self.run_locked(
                _record, config, source, nothing, _Ingested(failure=error), now, random.random()
            )
        except Exception as again:
            _log_fault("the failed poll of %s could not be recorded", source.id, again)
            return PollReport(
                source.id, source.url, error=f"{error}; not recorded: {describe(again)}"
            )
        return PollReport(
            source.id, source.url, next_poll=outcome.next_poll_not_before, error=error
        )


@dataclass(frozen=True, slots=True)
class _Reader:
    """How a source's answer is read: a listing page with its selectors (an html source;
    its relative dates count back from `now`), else a feed in whatever format it is."""

    now: datetime
    max_entries: int
    selectors: Selectors | None = None  # an html source's

    @classmethod
    def of(cls, settings: SourceConfig | None, now: datetime, max_entries: int) -> _Reader:
        html = settings is not None and settings.kind == "html"
        return cls(now, max_entries, settings.selectors if html else None)

    @property
    def expects_feed(self) -> bool:
        return self.selectors is None

    def __call__(self, result: FetchResult, known: Collection[bytes]) -> ParsedFeed:
        """The answer read; a feed's entries whose digest is `known` are left unread."""
        if self.selectors is None:
            return parse_document(
                result.body, result.final_url, result.headers, max_entries=self.max_entries,
                known=known,
            )  # fmt: skip
        from aggregator.parse.listing import parse_listing

        return parse_listing(
            result.body, result.final_url, self.selectors, self.now, result.headers,
            max_entries=self.max_entries,
        )  # fmt: skip


async def _fetch_and_parse(
    fetcher: Fetcher,
    source: SourceState,
    reader: _Reader,
    private_ok: bool,
    known: Callable[[], Awaitable[Collection[bytes]]],
) -> tuple[FetchResult, ParsedFeed | None, _Ingested]:
    """The part of a poll before any transaction: it may be abandoned at any point.
    `known` gives the digests of the entries stored before, when the answer is parsed."""
    result = await fetcher.get(source.url, source.etag, source.last_modified, private_ok=private_ok)
    metrics.FETCH_BYTES.labels(source=source.id).inc(len(result.body))
    if not result.ok:
        if result.status in (404, 410) and reader.expects_feed:
            return result, None, _Ingested(hint=await _where_feeds_are(fetcher, result))
        return result, None, _Ingested()
    if body_hash(result.body) == source.body_hash:
        return result, None, _Ingested(unchanged=True)
    parsed, ingested = await _parse(result, source.id, reader, await known())
    if parsed is None and reader.expects_feed and result.looks_like_html():
        ingested = replace(ingested, hint=await _where_feeds_are(fetcher, result))
    return result, parsed, ingested


async def _where_feeds_are(fetcher: Fetcher, result: FetchResult) -> str:
    """For a feed that answers 404, 410 or a web page: the feeds its site advertises, on
    the page it answered with, else on the site's home page."""
    from aggregator import discover

    found = (
        discover.advertised(result.body, result.final_url, result.headers)
        if result.looks_like_html()
        else []
    )
    home = discover.site_root(result.final_url or result.url)
    if not found and home != result.final_url:
        # The home of where the answer came from: a redirect may have chosen it.
        page = await fetcher.get(home, remote=not _same_host(home, result.url))
        if page.ok and page.looks_like_html():
            found = discover.advertised(page.body, page.final_url, page.headers)
    return discover.hint(found, instead_of=result.url)


def _same_host(url: str, other: str) -> bool:
    return (urlsplit(url).hostname or "").lower() == (urlsplit(other).hostname or "").lower()


async def _parse(
    result: FetchResult, source_id: str, reader: _Reader, known: Collection[bytes]
) -> tuple[ParsedFeed | None, _Ingested]:
    from aggregator.parse.feed import FeedError  # here: a re-poll that does not parse skips it

    event(log, "parse started", logging.DEBUG, source=source_id, bytes=len(result.body))
    try:
        parsed = await in_own_thread(reader, result, known)
    except FeedError as exc:
        return None, _Ingested(failure=str(exc))
    except Exception as exc:  # a parser library tripping over input it did not foresee
        log.debug("parsing the answer for %s failed", source_id, exc_info=True)
        return None, _Ingested(failure=f"cannot parse: {describe(exc)}")
    warning = "; ".join(part for part in (parsed.bozo, parsed.note) if part) or None
    return parsed, _Ingested(warning=warning)


def _store(
    archive: Archive,
    config: Config,
    source: SourceState,
    result: FetchResult,
    parsed: ParsedFeed | None,
    ingested: _Ingested,
    now: datetime,
    rand: float,
) -> tuple[_Ingested, PollOutcome]:
    """Store the entries and the poll's outcome together: both land, or neither does."""
    try:
        with archive.transaction():
            if parsed is not None:
                counts = store_entries(
                    archive, parsed.entries, source.id, Origin.FEED, now,
                    remember=lambda intents: _remember_entries(archive, source.id, parsed, intents),
                )  # fmt: skip
                ingested = _Ingested(counts=counts, warning=ingested.warning)
            outcome = _record(archive, config, source, result, ingested, now, rand)
    except Exception as exc:  # the transaction rolled back: the archive is as it was
        _log_fault("ingest of %s failed", source.id, exc)
        ingested = _Ingested(failure=f"ingest failed, nothing stored: {describe(exc)}")
        outcome = _record(archive, config, source, result, ingested, now, rand)
    return ingested, outcome


def _record(
    archive: Archive,
    config: Config,
    source: SourceState,
    result: FetchResult,
    ingested: _Ingested,
    now: datetime,
    rand: float,
) -> PollOutcome:
    settings = config.source(source.id)
    interval = settings.interval if settings else DEFAULT_INTERVAL
    outcome = source_outcome(
        source, result, ingested.failure, now, interval, config.fetch.backoff_max, rand
    )
    if outcome.error and ingested.hint:
        outcome = replace(outcome, error=f"{outcome.error}; {ingested.hint}")
    note = f"warning: {ingested.warning}" if ingested.warning and not outcome.error else None
    kept = archive.record_poll(
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
        config_url=source.config_url,
    )
    if kept and outcome.new_url:  # every document naming the source changes with it
        archive.mark_publish_owed(now)
    return outcome


def _classify_and_publish(
    archive: Archive, config: Config, counts: IngestCounts, source_id: str, moved: bool
) -> None:
    try:
        if moved:  # the feeds' atom:source and the item pages name the source's new URL
            classify_items(archive, config, counts.item_ids)
            publish_or_say_why(archive, config)  # a failure is recorded, owed and logged
        else:
            classify_and_publish(archive, config, counts)
    except Exception as exc:  # the items are stored and the publish owed: a later run settles
        _log_fault("after-ingest work for %s failed", source_id, exc)


def _log_fault(message: str, source_id: str, exc: Exception) -> None:
    """One line; the traceback too when debugging (the CLI's errors are one line)."""
    debugging = log.isEnabledFor(logging.DEBUG)
    log.error(f"{message}: %s", source_id, describe(exc), exc_info=debugging)


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


# --- every source, for the command line ----------------------------------------------------


def fetch_all(
    archive: Archive, config: Config, source_id: str | None = None, force: bool = False
) -> list[PollReport]:
    """`fetch`: the seeds of a fresh archive, one poll of every enabled source (or the one
    named), then whatever publish the archive still owes from before this run."""
    began = utc_now()
    counts = ensure_seeds(archive, config.archive.seeds)
    if counts:
        classify_and_publish(archive, config, counts)
    reports = poll_all(config, archive, source_id, force)
    settle_owed_publish(archive, config, began)
    return reports


def discover_feeds(config: Config, url: str) -> list[Found]:
    """`discover`: the feeds a page leads to (the page itself, if it is one; else those it
    advertises or links; else those at the usual paths), each fetched and read."""
    return asyncio.run(_discover(config, url))


async def _discover(config: Config, url: str) -> list[Found]:
    from aggregator import discover
    from aggregator.fetch import Fetcher

    async with Fetcher(config) as fetcher:
        page = await fetcher.get(url)
        if not page.ok:
            raise SourceError(f"{url}: {page.error or f'HTTP {page.status}'}")
        itself = _read_as_feed(page, FeedCandidate(page.final_url, how="given"), config)
        if itself is not None:
            return [itself]
        advertised = discover.advertised(page.body, page.final_url, page.headers)
        found = await _feeds_among(fetcher, advertised, config, url)
        return found or await _feeds_among(
            fetcher, discover.usual_paths(page.final_url), config, url
        )


async def _feeds_among(
    fetcher: Fetcher, candidates: Sequence[FeedCandidate], config: Config, given: str
) -> list[Found]:
    """The candidates that answer with a feed. A page names them: one on another host than
    the URL the user gave is a remote party's choice, held to public addresses."""
    found = []
    for candidate in candidates:
        answer = await fetcher.get(candidate.url, remote=not _same_host(candidate.url, given))
        feed = _read_as_feed(answer, candidate, config) if answer.ok else None
        if feed is not None:
            found.append(feed)
    return found


def _read_as_feed(answer: FetchResult, candidate: FeedCandidate, config: Config) -> Found | None:
    from aggregator.parse.feed import FeedError

    try:
        parsed = parse_document(
            answer.body, answer.final_url, answer.headers, max_entries=config.fetch.max_entries
        )
    except FeedError:
        return None
    items = len(parsed.entries) + parsed.dropped
    return Found(
        answer.final_url, parsed.title or candidate.title, parsed.version, items, candidate.how
    )


def poll_all(
    config: Config, archive: Archive, source_id: str | None = None, force: bool = False
) -> list[PollReport]:
    """Poll every enabled source of config (or the one named) once, concurrently."""
    if source_id is not None and config.source(source_id) is None:
        known = ", ".join(s.id for s in config.sources) or "none"
        raise UsageError(f'no source "{source_id}" in {config.path} (sources: {known})')
    ids = [source_id] if source_id else [s.id for s in config.sources if s.enabled]
    return asyncio.run(_poll_many(config, archive, ids, force))


async def _poll_many(
    config: Config, archive: Archive, ids: list[str], force: bool
) -> list[PollReport]:
    from aggregator.fetch import Fetcher

    pipeline = Pipeline(archive)
    async with Fetcher(config) as fetcher:
        polls = [pipeline.poll(config, i, fetcher, force=force) for i in ids]
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


def describe(exc: BaseException) -> str:
    """An exception as one line for a log, a report or `last_error`."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ArchiveError):  # its message is written for people: "disk full: ..."
        line = text
    else:
        line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= MAX_ERROR else line[: MAX_ERROR - 1] + "…"


# --- capture: the article behind each item -------------------------------------------------
#
#     capture: queue -> guard -> robots.txt -> (host's turn) fetch page -> WARC -> extract
#              -> store revision + classify -> publish what it touched (once per run)


CAPTURE_CONCURRENCY = 8  # hosts captured at once; each host's pages go one after another


class Capturer:
    """What captures share over a run, or a daemon's life: the fetcher, each host's turns,
    robots.txt rules per origin, the WARC file."""

    def __init__(self, config: Config, fetcher: Fetcher):
        from aggregator.capture.pace import HostPace, RetryPolicy

        self.config = config
        self.fetcher = fetcher
        self.pace = HostPace(config.capture.per_host_interval)
        self.policy = RetryPolicy(max_attempts=config.capture.max_attempts)
        self.agent = fetcher.request_headers()["user-agent"]
        self._robots: dict[bool, Any] = {}  # per private_ok: a refused robots.txt is no answer

    def for_config(self, config: Config) -> Capturer:
        """This capturer under a reloaded config: the hosts' turns and the robots.txt rules
        carry over, so a reload neither lets a host be asked again before its pause is over
        nor fetches every robots.txt anew."""
        reloaded = Capturer(config, self.fetcher)
        reloaded.pace = self.pace
        self.pace.interval = config.capture.per_host_interval
        reloaded._robots = self._robots
        return reloaded

    def robots(self, private_ok: bool):
        from aggregator.capture.robots import Answer, RobotsCache

        async def get(url: str) -> Answer:
            answer = await self.fetcher.get(
                url, remote=True, private_ok=private_ok, pace=self.pace.turn
            )
            if answer.refused:
                # A robots.txt we never fetch (redirected to ftp: or a private address) is
                # one that is not there, as a 404 is: the page's own fetch is checked anyway.
                return 404, b""
            if answer.error is not None:
                return None, b"", answer.error  # the reason, for the capture's record
            return answer.status, answer.body

        if private_ok not in self._robots:
            self._robots[private_ok] = RobotsCache(get)
        return self._robots[private_ok]

    async def attempt(self, job: CaptureJob, now: datetime, rand: float) -> CaptureOutcome:
        """One capture of `job`'s page, from robots.txt to the extracted article. A URL the
        fetcher refuses (the guard, on any hop) is given up at once."""
        from aggregator.capture import outcome, robots

        private_ok = self.config.private_ok(job.source_id)
        rules = await self.robots(private_ok).rules_for(job.url)
        if not robots.allowed(rules, job.url, self.agent):
            if rules.policy == "disallow all":  # robots.txt failed: ask again later
                return outcome.failed(job, now, rand, rules.reason, policy=self.policy)
            return outcome.disallowed(job, now, job.url)
        page = await self.fetcher.get(
            job.url, job.etag, job.last_modified, remote=True, private_ok=private_ok,
            pace=self.pace.turn,
        )  # fmt: skip
        if page.not_modified:
            return outcome.not_modified(job, now)
        if page.refused:
            return outcome.refused(job, now, page.refused)
        if not page.ok:
            error = page.error or f"HTTP {page.status}"
            return outcome.failed(job, now, rand, error, status=page.status,
                                  retry_after=page.retry_after, policy=self.policy)  # fmt: skip
        await asyncio.to_thread(self._keep(job, page, now))
        extracted = None
        if page.looks_like_html():
            from aggregator.capture.extract import extract

            extracted = await in_own_thread(extract, page.body, page.final_url)
        return outcome.answered(
            job, now, page.status, page.final_url, page.headers, page.body, extracted
        )

    def _keep(self, job: CaptureJob, page: FetchResult, now: datetime) -> Callable[[], None]:
        """Writing the page's request and response to the WARC file, to run in a thread."""
        from aggregator.capture.warc import append_capture

        path = self.config.capture.warc
        sent = self.fetcher.request_headers(job.etag, job.last_modified)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            append_capture(path, page.final_url, now, page.status, page.headers, page.body, sent)

        return write


def capture_queue(
    archive: Archive,
    config: Config,
    *,
    limit: int | None = None,
    item_id: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> list[CaptureReport]:
    """`capture`: work the due captures (at most `limit`), or capture `item_id` again now;
    then republish what the new articles touched."""
    if item_id is not None and not archive.requeue_capture(item_id, clock()):
        raise UsageError(f"item {item_id}: no such item, or it has no link to capture")

    async def run() -> list[CaptureReport]:
        from aggregator.fetch import Fetcher

        async with Fetcher(config) as fetcher:
            return await Pipeline(archive).capture_due(
                config, Capturer(config, fetcher), limit=limit, item_id=item_id,
                progress=progress, clock=clock,
            )  # fmt: skip

    return asyncio.run(run())


def _by_host(jobs: Sequence[CaptureJob]) -> list[list[CaptureJob]]:
    """The jobs of each host, in their order, hosts in the order they first appear."""
    from aggregator.fetch import host_key

    hosts: dict[str, list[CaptureJob]] = {}
    for job in jobs:
        hosts.setdefault(host_key(job.url), []).append(job)
    return list(hosts.values())


def _store_capture(
    archive: Archive, config: Config, job: CaptureJob, outcome: CaptureOutcome
) -> tuple[IngestCounts, set[str]]:
    """Record the attempt; a new article is classified in the same transaction, so a
    process that dies before the publish leaves only the publish owed."""
    with archive.transaction():
        counts = archive.record_capture(job, outcome)
        topics = classify_items(archive, config, counts.item_ids) if counts.item_ids else set()
    return counts, topics


def _publish_captures(
    archive: Archive, config: Config, stored: list[IngestCounts], topics: set[str]
) -> bool:
    months = frozenset().union(*(counts.months for counts in stored))
    ids = tuple(item for counts in stored for item in counts.item_ids)
    counts = IngestCounts(updated=len(ids), item_ids=ids, months=months)
    debt = archive.publish_debt()
    return publish_touched(archive, config, counts, topics, debt, own_marks=len(stored))


def _capture_report(job: CaptureJob, outcome: CaptureOutcome, stored: bool) -> CaptureReport:
    article = outcome.article
    return CaptureReport(
        job.item_id, job.url, outcome.state, outcome.reason, stored,
        len(article.text) if article else 0, outcome.status == 304,
    )  # fmt: skip


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
            # A cancel takes effect at the task's next step: until then it has no result,
            # and asking for one raised InvalidStateError, recorded as the poll's failure.
            await asyncio.wait({task})
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
