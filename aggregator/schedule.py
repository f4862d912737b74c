"""The daemon: poll, ingest, publish and serve in one process and one event loop.

APScheduler (3.x, asyncio) runs one polling job per enabled source and a maintenance
job; uvicorn serves `feeds/` on the same loop. Decisions about when to poll and what a
new config changes are pure functions (`first_run`, `plan_reload`); `Daemon` does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aggregator.clock import now, stamp
from aggregator.config import Config, ConfigError, SourceConfig, load
from aggregator.logs import event
from aggregator.models import Item, SourceState

# A poll still fetching or parsing when SIGTERM comes is abandoned at once (nothing of it is
# stored yet); one already storing may finish:
STOP_TIMEOUT = 6.0  # seconds an in-flight store may take to finish after SIGTERM
INTERRUPT_TIMEOUT = 2.0  # then its SQL is interrupted (it rolls back); all within 10 s
SHOWN_AT_START = 20
MAX_JITTER_SHARE = 0.1  # jitter never exceeds a tenth of the interval

log = logging.getLogger("aggregator.daemon")


# --- decisions (pure) -------------------------------------------------------------------


def jitter_for(interval: float, configured: float) -> float:
    return min(configured, interval * MAX_JITTER_SHARE)


def first_run(
    state: SourceState | None, interval: float, now: datetime, jitter: float, rand: float
) -> datetime:
    """When a source is first polled after start: not before its back-off ends and not
    sooner than one interval after its last poll, so restarts do not hammer the server."""
    earliest = now
    if state and state.last_poll:
        earliest = max(earliest, state.last_poll + timedelta(seconds=interval))
    if state and state.next_poll_not_before:
        earliest = max(earliest, state.next_poll_not_before)
    return earliest + timedelta(seconds=jitter * rand)


@dataclass(frozen=True)
class ReloadPlan:
    add: tuple[SourceConfig, ...]
    remove: tuple[str, ...]
    reschedule: tuple[SourceConfig, ...]
    reclassify: bool
    republish: bool
    restart_needed: tuple[str, ...]  # keys that only a restart applies


def plan_reload(old: Config, new: Config, old_rules: str, new_rules: str) -> ReloadPlan:
    old_sources = {s.id: s for s in old.sources if s.enabled}
    new_sources = {s.id: s for s in new.sources if s.enabled}
    changed = tuple(
        s for sid, s in new_sources.items() if sid in old_sources and old_sources[sid] != s
    )
    restart = tuple(
        f"server.{key}"
        for key in ("host", "port")
        if getattr(old.server, key) != getattr(new.server, key)
    )
    reclassify = old_rules != new_rules
    republish = reclassify or old.feeds != new.feeds or old.server != new.server
    return ReloadPlan(
        add=tuple(s for sid, s in new_sources.items() if sid not in old_sources),
        remove=tuple(sid for sid in old_sources if sid not in new_sources),
        reschedule=changed,
        reclassify=reclassify,
        republish=republish,
        restart_needed=restart,
    )


# --- the daemon -----------------------------------------------------------------------------


class Daemon:
    def __init__(self, config: Config, on_ready: Callable[[list[Item], int], None] | None = None):
        self.config = config
        self._on_ready = on_ready  # shows the archive to a person who just ran `make run`
        self._stopping = asyncio.Event()
        self._inflight: set[asyncio.Task] = set()
        self._capturer = None  # robots.txt rules and host turns, kept between capture runs

    def run(self) -> int:
        from aggregator.lock import ArchiveLock

        lock = ArchiveLock(self.config.archive.database)
        lock.acquire()  # raises LockHeld naming the other daemon's pid
        try:
            return asyncio.run(self._main())
        finally:
            lock.release()

    async def _main(self) -> int:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        from aggregator.fetch import Fetcher
        from aggregator.pipeline import Pipeline
        from aggregator.store import Archive

        self.scheduler = None
        self._install_signals()  # from the start: a signal during start-up is not a crash
        self.archive = Archive(self.config.archive.database)
        self.pipeline = Pipeline(self.archive)  # one writer at a time on the archive
        try:
            await self.pipeline.run_locked(self._prepare_archive)
            if self._stopping.is_set():
                event(log, "stopped before start-up finished")
                return 0
            self.fetcher = Fetcher(self.config)
            self.scheduler = AsyncIOScheduler(timezone=UTC)
            for source in self.config.sources:
                if source.enabled:
                    self._schedule(source, self.archive.get_source(source.id))
            self._schedule_maintenance()
            self._schedule_capture()
            self.scheduler.start()
            server_task = await self._start_server()
            event(
                log,
                "daemon started",
                pid=os.getpid(),
                url=f"http://{self.config.server.host}:{self.config.server.port}/",
                sources=len([s for s in self.config.sources if s.enabled]),
            )
            stop = asyncio.create_task(self._stopping.wait())
            done, _ = await asyncio.wait({stop, server_task}, return_when=asyncio.FIRST_COMPLETED)
            failed = server_task in done and not self._stopping.is_set()
            await self._shutdown(server_task)
            if failed:
                event(log, "server stopped unexpectedly; exiting", logging.ERROR)
                return 1
            return 0
        finally:
            self.archive.close()

    # --- start-up ---------------------------------------------------------------------

    def _prepare_archive(self, archive) -> None:
        from aggregator import pipeline

        publish_failure = pipeline.start_up(archive, self.config)
        _log_publish_failure(publish_failure, "at start-up")
        if self._on_ready:
            self._on_ready(archive.list_items(limit=SHOWN_AT_START), archive.count_items())

    async def _start_server(self) -> asyncio.Task:
        from aggregator.serve import make_server
        from aggregator.serve.embedded import EmbeddedServer

        self.server = EmbeddedServer(make_server(self.config))
        task = asyncio.create_task(self.server.serve(self._stopping))
        while not self.server.started and not task.done():
            await asyncio.sleep(0.02)
        return task

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self._request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)

    def _on_hangup(self) -> None:
        if self._stopping.is_set() or self.scheduler is None:
            event(log, "SIGHUP ignored: the daemon is starting or stopping", logging.WARNING)
            return
        task = asyncio.ensure_future(self._reload())
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    # --- jobs -------------------------------------------------------------------------

    def _schedule(self, source: SourceConfig, state: SourceState | None) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        jitter = jitter_for(source.interval, self.config.daemon.jitter)
        start = first_run(state, source.interval, now(), jitter, random.random())
        self.scheduler.add_job(
            self._poll,
            IntervalTrigger(seconds=source.interval, jitter=jitter or None, timezone=UTC),
            args=[source.id],
            id=f"poll:{source.id}",
            replace_existing=True,
            max_instances=1,  # never two polls of one source at once
            coalesce=True,  # missed runs (a sleeping laptop) become one
            misfire_grace_time=None,
            next_run_time=start,
        )

    def _schedule_maintenance(self) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        self.scheduler.add_job(
            self._maintenance,
            IntervalTrigger(seconds=self.config.daemon.maintenance_interval, timezone=UTC),
            id="maintenance",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )

    def _schedule_capture(self) -> None:
        """Capture works the queue in its own job, between polls and never in their way:
        the first run comes one interval after start."""
        from apscheduler.triggers.interval import IntervalTrigger

        if not self.config.capture.enabled:
            return
        self.scheduler.add_job(
            self._capture,
            IntervalTrigger(seconds=self.config.capture.every, timezone=UTC),
            id="capture",
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )

    async def _capture(self) -> None:
        from aggregator.pipeline import Capturer

        if self._stopping.is_set():
            return
        task = asyncio.current_task()
        self._inflight.add(task)
        try:
            if self._capturer is None:
                self._capturer = Capturer(self.config, self.fetcher)
            elif self._capturer.config is not self.config:  # reloaded
                self._capturer = self._capturer.for_config(self.config)
            reports = await self.pipeline.capture_due(
                self.config,
                self._capturer,
                limit=self.config.capture.batch,
                stopping=self._stopping,
            )
            for report in reports:
                _log_capture(report)
        except Exception as exc:  # one bad run must not take the daemon down
            event(log, "capture crashed", logging.ERROR, error=repr(exc))
        finally:
            self._inflight.discard(task)

    async def _poll(self, source_id: str) -> None:
        if self._stopping.is_set():
            return
        task = asyncio.current_task()
        self._inflight.add(task)
        began = now()
        try:
            report = await self.pipeline.poll(
                self.config, source_id, self.fetcher, stopping=self._stopping
            )
            _log_poll(report)
            if not self._stopping.is_set():
                await self._settle_publish(began)
        except Exception as exc:  # one bad poll must not take the daemon down
            event(log, "poll crashed", logging.ERROR, source=source_id, error=repr(exc))
        finally:
            self._inflight.discard(task)

    async def _settle_publish(self, began: datetime) -> None:
        """Each tick publishes what the archive owes: a publish that failed, or one a
        process that died after its ingest never ran."""
        from aggregator.pipeline import settle_owed_publish

        settled = await self.pipeline.run_locked(settle_owed_publish, self.config, began)
        if settled:
            event(log, "owed publish settled")
        elif settled is False:
            event(log, "publish failed again; retried after the next poll", logging.ERROR)

    async def _maintenance(self) -> None:
        from aggregator.pipeline import maintain

        if self._stopping.is_set():
            return
        task = asyncio.current_task()
        self._inflight.add(task)
        try:
            trimmed = await self.pipeline.run_locked(maintain, self.config)
        finally:
            self._inflight.discard(task)
        event(log, "maintenance done", fetch_log_rows_trimmed=trimmed)

    # --- reload and stop -----------------------------------------------------------------

    async def _reload(self) -> None:
        try:
            new = load(self.config.path)
        except ConfigError as exc:
            event(log, "config refused; keeping the running one", logging.ERROR, error=str(exc))
            return
        try:
            await self._apply(new)
        except Exception as exc:
            event(log, "reload failed", logging.ERROR, error=repr(exc))

    async def _apply(self, new: Config) -> None:
        from aggregator import classify, pipeline

        plan = plan_reload(
            self.config, new, classify.rules_hash(self.config), classify.rules_hash(new)
        )
        async with self.pipeline.lock:
            publish_failure = await asyncio.to_thread(
                pipeline.apply_config,
                self.archive,
                new,
                rescore=plan.reclassify,
                republish=plan.republish,
            )
            _log_publish_failure(publish_failure, "after reload")
            states = {
                s.id: await asyncio.to_thread(self.archive.get_source, s.id)
                for s in plan.add + plan.reschedule
            }
        # Only now, with the archive in step, does the new config take over.
        old_capture, self.config = self.config.capture, new
        for source_id in plan.remove:
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(f"poll:{source_id}")
        for source in plan.add + plan.reschedule:
            self._schedule(source, states[source.id])
        if new.capture != old_capture:
            with contextlib.suppress(Exception):
                self.scheduler.remove_job("capture")
            self._schedule_capture()
        for key in plan.restart_needed:
            event(log, "config change needs a restart", logging.WARNING, key=key)
        event(
            log,
            "config reloaded",
            added=",".join(s.id for s in plan.add) or "-",
            removed=",".join(plan.remove) or "-",
            changed=",".join(s.id for s in plan.reschedule) or "-",
            reclassified=plan.reclassify,
        )

    def _request_stop(self, name: str) -> None:
        if not self._stopping.is_set():
            event(log, "stopping", signal=name)
            self._stopping.set()

    async def _shutdown(self, server_task: asyncio.Task) -> None:
        # Pause, not shut down, first: shutting APScheduler down cancels running jobs, and a
        # cancelled poll would leave its worker thread writing while the archive closes.
        self.scheduler.pause()
        self.server.stop()
        if self._inflight:
            # An ingest is one transaction: let it land, or interrupt it so it rolls back.
            _, late = await asyncio.wait(self._inflight, timeout=STOP_TIMEOUT)
            if late:
                event(log, "interrupting an unfinished ingest; it rolls back", logging.WARNING)
                self.archive.interrupt()
                await asyncio.wait(late, timeout=INTERRUPT_TIMEOUT)
        with contextlib.suppress(Exception):
            self.scheduler.shutdown(wait=False)
        with contextlib.suppress(asyncio.TimeoutError, Exception):
            await asyncio.wait_for(server_task, timeout=1.5)
        await self.fetcher.aclose()
        event(log, "stopped")


def _log_publish_failure(failure: str | None, when: str) -> None:
    """A publish that failed is recorded in the archive as owed and settled by a later
    poll tick; the daemon goes on serving what was published before."""
    if failure:
        event(log, f"publish {when} failed; retried after each poll", logging.ERROR, error=failure)


def _log_capture(report) -> None:
    failed = report.state.value in ("pending", "given up")
    event(
        log,
        "capture",
        logging.WARNING if failed else logging.INFO,
        item=report.item_id,
        url=report.url,
        state="unchanged" if report.not_modified else report.state.value,
        characters=report.characters,
        revision=report.stored,
        **({"reason": report.reason} if report.reason else {}),
    )


def _log_poll(report) -> None:
    level = logging.WARNING if report.error else logging.INFO
    if report.skipped:
        return
    event(
        log,
        "poll",
        level,
        source=report.source_id,
        status=report.status if report.status is not None else "-",
        bytes=report.bytes,
        new=report.new,
        updated=report.updated,
        duration=f"{report.duration:.2f}s",
        next_poll=stamp(report.next_poll),
        **({"error": report.error} if report.error else {}),
        **({"note": report.note} if report.note and not report.error else {}),
    )
