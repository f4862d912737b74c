"""The command line: a thin layer over the stages. Each command parses its options,
calls one library function and prints the result. Errors are one line on stderr."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click

from aggregator import __version__
from aggregator.clock import MISSING, stamp
from aggregator.config import Config, choose_path, load
from aggregator.errors import AggregatorError, ConfigurationError, UsageError
from aggregator.models import Item, Origin
from aggregator.search import DEFAULT_RESULTS, MAX_RESULTS


class UserError(UsageError):
    """Something the user asked for that is not there; str() is the message."""


EXIT_FAILURE = 1


class _Group(click.Group):
    """An expected failure (AggregatorError) is one line on stderr and its exit status;
    anything else is a bug, said in one line too unless AGGREGATOR_DEBUG is set. A wrong
    option or argument is one line too, naming the --help to read (click's own is three)."""

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        with _usage_errors_in_one_line():  # this group's own options
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context):
        try:
            with _usage_errors_in_one_line():  # the subcommand's, and its own checks
                return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            _die("interrupted", 130)
        except BrokenPipeError:
            raise  # the reader went away (`| head -1`): click ends quietly, as Unix tools do
        except Exception as exc:
            if os.environ.get("AGGREGATOR_DEBUG") and not isinstance(exc, ConfigurationError):
                raise
            status = exc.exit_status if isinstance(exc, AggregatorError) else EXIT_FAILURE
            _die(_one_line(exc), status)


@contextlib.contextmanager
def _usage_errors_in_one_line() -> Iterator[None]:
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise  # a group run alone shows its help, as click does
    except click.UsageError as exc:
        message = " ".join(exc.format_message().split())
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        _die(f"error: {message}{where}", exc.exit_code)


def _one_line(exc: Exception) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, ConfigurationError):
        return message  # "FILE: KEY: problem", the way compilers say where
    if isinstance(exc, AggregatorError):
        return f"error: {message}"
    return f"error: {type(exc).__name__}: {message} (AGGREGATOR_DEBUG=1 shows a traceback)"


def _die(message: str, status: int) -> None:
    click.echo(message, err=True)
    sys.exit(status)


class State:
    """Loads config and opens the archive on first use, so --help needs neither."""

    def __init__(self, config_option: str | None):
        self.path = choose_path(config_option)
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load(self.path)
        return self._config

    def archive(self, *, sync: bool = False):
        from aggregator import pipeline
        from aggregator.store import Archive

        archive = Archive(self.config.archive.database)
        if sync:
            pipeline.sync_sources(archive, self.config)
        return archive

    @contextlib.contextmanager
    def writing(self, command: str, *, sync: bool = False) -> Iterator:
        """The archive for a command that writes, under the archive lock: a daemon or a
        restore holding it makes the command wait a few seconds, then refuse (LockHeld)."""
        from aggregator.lock import WRITER_WAIT, ArchiveLock

        lock = ArchiveLock(self.config.archive.database, command)
        with lock.acquire(wait=WRITER_WAIT), self.archive(sync=sync) as archive:
            yield archive

    @contextlib.contextmanager
    def synced_if_free(self, command: str) -> Iterator:
        """The archive with config's sources written in first, unless a daemon (which does
        that itself) or another writer holds it: then as it is."""
        from aggregator.lock import ArchiveLock, LockHeld

        lock = ArchiveLock(self.config.archive.database, command)
        with contextlib.suppress(LockHeld):
            lock.acquire()
        try:
            with self.archive(sync=lock.held) as archive:
                yield archive
        finally:
            lock.release()


pass_state = click.make_pass_decorator(State)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="config file (default: $AGGREGATOR_CONFIG, else ./config.toml)",
)
@click.version_option(__version__, prog_name="aggregator")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Follow NATO's news feed, archive it, republish partnership feeds."""
    ctx.obj = State(config_path)


@cli.command("check-config")
@pass_state
def check_config(state: State) -> None:
    """Validate the config file and print a summary."""
    config = state.config
    click.echo(f"{config.path}: ok")
    click.echo(f"  archive   {config.archive.database}")
    click.echo(f"  seeds     {config.archive.seeds}")
    click.echo(f"  snapshots {config.archive.snapshots}")
    click.echo(f"  feeds     {config.server.feeds_dir}")
    click.echo(f"  server    {config.server.host}:{config.server.port} ({config.server.base_url})")
    for source in config.sources:
        state_word = "" if source.enabled else " (disabled)"
        click.echo(
            f"  source    {source.id}: {source.url} every {_duration(source.interval)}{state_word}"
        )
    for name in config.topics:
        click.echo(f"  topic     {name}")
    for feed in config.feeds:
        topics = ", ".join(feed.topics) or "every item"
        click.echo(f"  feed      {feed.slug}: {topics} (limit {feed.limit})")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@cli.command("import-seeds")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--reference-date",
    metavar="YYYY-MM-DD",
    help="when a listing capture was taken (its relative ages count back from it)",
)
@pass_state
def import_seeds_command(state: State, paths: tuple[Path, ...], reference_date: str | None):
    """Import seeded articles (default: the archive.seeds folder). Idempotent."""
    from aggregator import pipeline

    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: no such file or folder")
    with state.writing("import-seeds") as archive:
        counts, published = pipeline.import_seeds_and_publish(
            archive, state.config, list(paths) or [state.config.archive.seeds], reference_date
        )
        problem = None if published else _publish_problem(archive)
    click.echo(f"seeds: {counts.new} new, {counts.updated} updated, {counts.unchanged} unchanged")
    if problem:
        _die(f"error: {problem}", EXIT_FAILURE)


def _publish_problem(archive) -> str | None:
    """One line when the newest publish failed (the archive owes it), else None."""
    state = archive.publish_state()
    if not state.failing:
        return None
    return (
        "the feeds are not published (retried by the next fetch or daemon tick): "
        f"{state.last_error}"
    )


@cli.command("items")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="at most N items")
@click.option("--origin", type=click.Choice([o.value for o in Origin]), default=None)
@click.option("--feed", "feed_slug", metavar="SLUG", help="only the items of this output feed")
@pass_state
def items_command(
    state: State, as_json: bool, limit: int | None, origin: str | None, feed_slug: str | None
) -> None:
    """List archived items, newest first."""
    topics, min_score = None, 0.0
    if feed_slug:
        feed = next((f for f in state.config.feeds if f.slug == feed_slug), None)
        if feed is None:
            slugs = ", ".join(f.slug for f in state.config.feeds)
            raise UserError(f'no feed "{feed_slug}" in {state.path} (feeds: {slugs})')
        topics, min_score = feed.topics or None, feed.min_score
    with state.archive() as archive:
        items = archive.list_items(
            origin=Origin(origin) if origin else None,
            topics=topics,
            min_score=min_score,
            limit=limit,
        )
    if as_json:
        for item in items:
            click.echo(json.dumps(item_json(item), ensure_ascii=False))
    else:
        _print_table(items)


@cli.command("reclassify")
@pass_state
def reclassify_command(state: State) -> None:
    """Score every item against the topics again, then republish."""
    from aggregator import pipeline

    with state.writing("reclassify") as archive:
        count = pipeline.reclassify_and_publish(archive, state.config)
    click.echo(f"reclassified {_counted(count, 'item')}")


@cli.command("explain")
@click.argument("item", metavar="ITEM")
@pass_state
def explain_command(state: State, item: str) -> None:
    """Show why an item (its number, published id or URL) is or is not in each topic and feed."""
    from aggregator import pipeline
    from aggregator.search import item_reference

    reference = item_reference(item)
    with state.archive() as archive:
        explained = pipeline.explain(archive, state.config, reference)
    if explained is None:
        raise UserError(
            f"no item {reference.text} in {state.config.archive.database} "
            "(by number, published id or URL)"
        )
    found = explained.item
    click.echo(f"{found.id}  {found.published:%Y-%m-%d}  {found.title}")
    for line in explained.topic_lines:
        click.echo(f"  {line}")
    for feed in explained.feeds:
        click.echo(f"  feed {feed.slug}: {'in' if feed.carried else 'out'} ({feed.why})")


@cli.command("search")
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_RESULTS),
    default=DEFAULT_RESULTS,
    show_default=True,
    help=f"at most N results (up to {MAX_RESULTS})",
)
@pass_state
def search_command(state: State, query: str, as_json: bool, limit: int) -> None:
    """Search titles, summaries and full text, best match first.

    Words as typed (all must appear), "a phrase", partner* for words that begin so,
    OR between alternatives, -word for a word that must not appear; fts:QUERY for
    SQLite FTS5 syntax."""
    from aggregator.search import parse_query

    parsed = parse_query(query)
    with state.archive() as archive:
        results = archive.search_snippets(parsed.fts, limit)
    if as_json:
        for result in results:
            row = {**item_json(result.item), "snippet": _passage_text(result.passage)}
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    _print_table([r.item for r in results], [_marked(r.passage) for r in results])


def _marked(passage: tuple[tuple[str, bool], ...]) -> str:
    """The passage with its matched words in bold (click drops the style off a terminal)."""
    return "".join(click.style(text, bold=True) if hit else text for text, hit in passage)


def _passage_text(passage: tuple[tuple[str, bool], ...]) -> str:
    return "".join(text for text, _ in passage)


def item_json(item: Item) -> dict:
    return {
        "id": item.id,
        "title": item.title,
        "url": item.link,
        "published": stamp(item.published),
        "updated": stamp(item.updated),
        "precision": item.precision.value,
        "origin": item.origin.value,
        "source": item.source_id,
        "topics": sorted(item.topics),
        "score": round(max(item.topics.values(), default=0.0), 3),
        "atom_id": item.atom_id,
        "revision": item.revision,
        "summary": item.summary_text,
    }


def _print_table(items: list[Item], passages: list[str] | None = None) -> None:
    """One line per item; with `passages`, each item's passage indented below it."""
    if not items:
        click.echo("no items")
        return
    width = max(len(str(item.id)) for item in items)
    for index, item in enumerate(items):
        topics = ",".join(sorted(item.topics)) or "-"
        click.echo(
            f"{item.id:>{width}}  {item.published:%Y-%m-%d}  {item.origin.value:<4}  "
            f"{topics:<14.14}  {item.title}"
        )
        if passages:
            click.echo(f"{'':>{width}}  {passages[index]}")
    click.echo(_counted(len(items), "item"))


@cli.command("daemon")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@pass_state
def daemon_command(state: State, log_format: str, log_level: str) -> None:
    """Poll, archive, publish and serve until stopped (SIGHUP reloads the config)."""
    from aggregator import logs
    from aggregator.schedule import Daemon

    config = state.config
    logs.setup(log_level, log_format)
    status = Daemon(config, on_ready=_show_archive if log_format == "text" else None).run()
    sys.exit(status)


def _show_archive(items: list[Item], total: int) -> None:
    click.echo(f"The archive holds {total} items; the newest {len(items)}:")
    _print_table(items)


@cli.command("serve")
@click.option("--host", metavar="HOST", help="address to listen on (default: server.host)")
@click.option("--port", type=click.IntRange(1, 65535), help="TCP port (default: server.port)")
@pass_state
def serve_command(state: State, host: str | None, port: int | None) -> None:
    """Serve the published feeds, an index page, OPML and /healthz over HTTP."""
    from aggregator import serve

    config = state.config
    host, port = host or config.server.host, port or config.server.port
    if not serve.is_loopback_host(host):
        click.echo(f"warning: listening on {host}, reachable from other machines", err=True)
    serve.run(
        config,
        host=host,
        port=port,
        ready=lambda url: click.echo(f"serving {config.server.feeds_dir} on {url} (Ctrl-C stops)"),
    )


@cli.group("snapshot")
def snapshot_group() -> None:
    """Consistent, verifiable copies of the archive (in archive.snapshots)."""


@snapshot_group.command("create")
@click.option("--label", metavar="TEXT", help="added to the snapshot's name and manifest")
@click.option("--tar", is_flag=True, help="write one .tar.gz instead of a folder")
@pass_state
def snapshot_create(state: State, label: str | None, tar: bool) -> None:
    """Snapshot the archive and the published feeds, also while the daemon writes."""
    from aggregator import snapshot

    config = state.config
    with TerminalProgress() as progress:
        made = snapshot.create(
            config.archive.database,
            config.archive.snapshots,
            config.server.feeds_dir,
            label=label,
            tar=tar,
            progress=progress,
            pages=config.capture.warc,
        )
    click.echo(f"snapshot {made.path}: {_counted(made.items, 'item')}, {_size(made.size)}")


@snapshot_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@pass_state
def snapshot_list(state: State, as_json: bool) -> None:
    """List the snapshots, oldest first."""
    from aggregator import snapshot

    found = snapshot.list_snapshots(state.config.archive.snapshots)
    if as_json:
        for made in found:
            row = {"name": made.name, "path": str(made.path), "created": stamp(made.created)}
            row.update(items=made.items, size=made.size, label=made.label, tar=made.packed)
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    width = max([len(made.name) for made in found] + [4])
    click.echo(f"{'name':<{width}}  {'created':<20}  {'items':>8}  {'size':>10}")
    for made in found:
        items = MISSING if made.items is None else made.items
        packed = "  tar.gz" if made.packed else ""
        click.echo(
            f"{made.name:<{width}}  {stamp(made.created):<20}  "
            f"{items:>8}  {_size(made.size):>10}{packed}"
        )
    click.echo(f"{_counted(len(found), 'snapshot')} in {state.config.archive.snapshots}")


@snapshot_group.command("verify")
@click.argument("name")
@pass_state
def snapshot_verify(state: State, name: str) -> None:
    """Re-check a snapshot's checksums, database and counts; non-zero on a mismatch."""
    from aggregator import snapshot

    with TerminalProgress() as progress:
        checked = snapshot.verify(state.config.archive.snapshots, name, progress)
    click.echo(f"{checked.name}: ok ({_counted(checked.items, 'item')})")


@snapshot_group.command("restore")
@click.argument("name")
@pass_state
def snapshot_restore(state: State, name: str) -> None:
    """Verify a snapshot, swap its database in (keeping the old one) and republish."""
    from aggregator import snapshot

    with TerminalProgress() as progress:
        report = snapshot.restore(state.config, name, progress)
    click.echo(f"restored {report.snapshot.name} into {report.database}")
    if report.replaced:
        click.echo(f"  the replaced archive is kept as {report.replaced}")
    click.echo(f"  {report.note}")


@snapshot_group.command("prune")
@click.option("--keep", type=click.IntRange(min=1), required=True, help="how many to keep")
@pass_state
def snapshot_prune(state: State, keep: int) -> None:
    """Remove all but the newest N snapshots."""
    from aggregator import snapshot

    removed = snapshot.prune(state.config.archive.snapshots, keep)
    for name in removed:
        click.echo(f"removed {name}")
    click.echo(f"removed {_counted(len(removed), 'snapshot')}, kept the newest {keep}")


def _size(size: float) -> str:
    """Bytes in binary units, named as such (1 KiB = 1024 bytes)."""
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def _counted(count: int | None, noun: str) -> str:
    """A count and its noun: "1 item", "2 items"; "? items" when the count is unknown."""
    if count is None:
        return f"? {noun}s"
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class TerminalProgress:
    """A progress bar per stage on a terminal, only once the work has taken a second; a
    callback (stage, done, total) for the library, closed when the `with` block ends.

    Quiet when the stream is not a terminal (logs, pipes, tests) and for small archives.
    """

    def __init__(self, stream: IO[str] | None = None, delay: float = 1.0, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.delay, self.clock = delay, clock
        self.started = clock()
        self.stage: str | None = None
        self.bar: Any = None
        self.shown = 0

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, failure: type[BaseException] | None, *exc: object) -> None:
        self.close(finished=failure is None)  # a failed stage's bar stays where it stopped

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if stage != self.stage:
            self.close()
            self.stage, self.shown = stage, 0
        if self.bar is None:
            if self.clock() - self.started < self.delay or done >= total:
                return
            self.bar = click.progressbar(length=total, label=stage, file=self.stream)
            self.bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self, finished: bool = True) -> None:
        if self.bar is not None:
            if finished:
                self.bar.update(self.bar.length - self.shown)
            self.bar.__exit__(None, None, None)
            self.bar = None


@cli.command("publish")
@click.argument("slugs", nargs=-1, metavar="[SLUG]...")
@pass_state
def publish_command(state: State, slugs: tuple[str, ...]) -> None:
    """Render the output feeds (default: all) into server.feeds_dir; unchanged files stay."""
    from aggregator import pipeline
    from aggregator.publish import PublishError

    failure = None
    with state.writing("publish", sync=True) as archive:
        try:
            report = pipeline.publish(archive, state.config, slugs or None)
        except PublishError as exc:  # recorded in the archive: owed until a run settles it
            report, failure = exc.report, str(exc)
    for feed in report.feeds if report else ():
        removed = f", {len(feed.removed)} removed" if feed.removed else ""
        click.echo(
            f"{feed.slug}: {feed.entries} entries, {feed.months} archive months, "
            f"{len(feed.written)} written, {feed.unchanged} unchanged{removed}"
        )
    if failure:
        _die(f"error: {failure}", EXIT_FAILURE)


@cli.command("fetch")
@click.argument("source_id", required=False, metavar="[SOURCE_ID]")
@click.option("--force", is_flag=True, help="poll even a source that is backing off")
@pass_state
def fetch_command(state: State, source_id: str | None, force: bool) -> None:
    """Poll every enabled source (or one) once and ingest what is new."""
    from aggregator import pipeline, poll

    with state.writing("fetch", sync=True) as archive:
        reports = pipeline.fetch_all(archive, state.config, source_id, force)
        problem = _publish_problem(archive)
    for report in reports:
        click.echo(poll.summary_line(report))
    if problem:
        _die(f"error: {problem}", EXIT_FAILURE)
    polled = [r for r in reports if not r.skipped]
    if polled and all(r.error for r in polled):
        sys.exit(EXIT_FAILURE)


@cli.command("capture")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="at most N pages")
@click.option("--item", "item_id", type=int, default=None, help="capture this item's page again")
@click.option("--status", is_flag=True, help="count captures by state; show the latest problems")
@pass_state
def capture_command(state: State, limit: int | None, item_id: int | None, status: bool) -> None:
    """Fetch the article behind each queued item, politely, and keep its text."""
    if status:
        _show_captures(state)
        return
    from aggregator import pipeline

    with state.writing("capture", sync=True) as archive, TerminalProgress() as progress:
        reports = pipeline.capture_queue(
            archive, state.config, limit=limit, item_id=item_id, progress=progress
        )
        problem = _publish_problem(archive)
    for report in reports:
        click.echo(_capture_line(report))
    tally: dict[str, int] = {}
    for report in reports:
        tally[report.state.value] = tally.get(report.state.value, 0) + 1
    said = ", ".join(f"{count} {name}" for name, count in sorted(tally.items()))
    click.echo(f"{_counted(len(reports), 'capture')}{': ' + said if said else ''}")
    if problem:
        _die(f"error: {problem}", EXIT_FAILURE)


def _capture_line(report) -> str:
    if report.not_modified:
        what = "unchanged (304)"
    elif report.stored:
        what = f"captured, {report.characters} characters: a new revision"
    elif report.characters:
        what = f"captured, {report.characters} characters: the same text"
    else:
        what = f"{report.state.value}: {report.reason}"
    return f"item {report.item_id}: {what} ({report.url})"


def _show_captures(state: State) -> None:
    from aggregator.models import CaptureState

    with state.archive() as archive:
        counts = archive.capture_counts()
        problems = archive.captures_in(
            (CaptureState.GIVEN_UP, CaptureState.DISALLOWED, CaptureState.PENDING), 10
        )
    click.echo(", ".join(f"{count} {name}" for name, count in counts.items()))
    for record in problems:
        if record.reason:
            click.echo(f"item {record.item_id} {record.state.value}: {record.reason}")


@cli.group("sources", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.pass_context
def sources_command(ctx: click.Context, as_json: bool) -> None:
    """Each source's state, last poll, errors and next poll; `sources import` adds some."""
    if ctx.invoked_subcommand is None:
        _show_sources(ctx.find_object(State), as_json)


@sources_command.command("import")
@click.argument("opml_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--append", is_flag=True, help="add them to the config file instead of printing")
@pass_state
def sources_import(state: State, opml_file: Path, append: bool) -> None:
    """The feeds of an OPML file (another reader's export) as [[sources]] to add."""
    from aggregator import opml

    config = state.config
    found = opml.subscriptions(opml_file.read_bytes())
    new = opml.new_sources(found, [s.id for s in config.sources], [s.url for s in config.sources])
    if not new:
        click.echo(f"nothing to add: the {len(found)} feeds of {opml_file} are sources already")
    elif append:
        opml.append_sources(config.path, new, opml_file.name)
        click.echo(
            f"added {len(new)} sources to {config.path}; `aggregator check-config` shows them"
        )
    else:
        click.echo(opml.sources_toml(new), nl=False)


@cli.command("discover")
@click.argument("url")
@pass_state
def discover_command(state: State, url: str) -> None:
    """List the feeds a web page leads to, with their title, format and item count."""
    from aggregator import pipeline

    found = pipeline.discover_feeds(state.config, url)
    if not found:
        _die(f"no feed found at {url}: none advertised, linked or at the usual paths", EXIT_FAILURE)
    for feed in found:
        title = f"{feed.title}: " if feed.title else ""
        click.echo(f"{feed.url}\n  {title}{feed.kind}, {_counted(feed.items, 'item')} ({feed.how})")


def _show_sources(state: State, as_json: bool) -> None:
    with state.synced_if_free("sources") as archive:
        sources = archive.list_sources()
    if as_json:
        for source in sources:
            click.echo(json.dumps(source_json(source), ensure_ascii=False))
        return
    rows = [
        (s.id, s.state, s.url, stamp(s.last_poll), str(s.last_status or "-"),
         str(s.consecutive_errors), stamp(s.next_poll_not_before), str(s.item_count))
        for s in sources
    ]  # fmt: skip
    header = ("id", "state", "url", "last poll", "status", "errors", "next poll", "items")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())
    for source in sources:
        if source.last_error:
            click.echo(f"{source.id}: last error: {source.last_error}")


def source_json(source) -> dict:
    return {
        "id": source.id,
        "title": source.title,
        "state": source.state,
        "url": source.url,
        "config_url": source.config_url,
        "last_poll": stamp(source.last_poll, None),
        "last_status": source.last_status,
        "last_error": source.last_error,
        "consecutive_errors": source.consecutive_errors,
        "next_poll": stamp(source.next_poll_not_before, None),
        "items": source.item_count,
    }


def main() -> None:
    cli(prog_name="aggregator")
