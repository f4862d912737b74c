"""The command line: a thin layer over the stages. Each command parses its options,
calls one library function and prints the result. Errors are one line on stderr."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path

import click

from aggregator import __version__
from aggregator.config import Config, ConfigError, choose_path, load
from aggregator.models import Item, Origin


class UserError(Exception):
    """Something the user can fix; str() is the message."""


EXIT_CONFIG = 2
EXIT_FAILURE = 1


class _Group(click.Group):
    """Turns expected failures into one line on stderr instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except ConfigError as exc:
            _die(str(exc), EXIT_CONFIG)
        except KeyboardInterrupt:
            _die("interrupted", 130)
        except Exception as exc:
            if os.environ.get("AGGREGATOR_DEBUG"):
                raise
            _die(_one_line(exc), EXIT_FAILURE)


def _one_line(exc: Exception) -> str:
    from aggregator.parse.seed import SeedError
    from aggregator.store import ArchiveError

    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, UserError | SeedError | ArchiveError | ValueError):
        return f"error: {message}"
    return f"error: {type(exc).__name__}: {message} (set AGGREGATOR_DEBUG=1 for a traceback)"


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
        from aggregator.store import Archive
        from aggregator.store.sources import SourceSpec

        archive = Archive(self.config.archive.database)
        if sync:
            archive.sync_sources(
                [SourceSpec(s.id, s.title, s.url, s.enabled) for s in self.config.sources]
            )
        return archive


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
    from aggregator import ingest

    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: no such file or folder")
    with state.archive() as archive:
        counts = ingest.import_seeds(
            archive, list(paths) or [state.config.archive.seeds], reference_date
        )
        ingest.after_ingest(archive, state.config, counts)
    click.echo(f"seeds: {counts.new} new, {counts.updated} updated, {counts.unchanged} unchanged")


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


def item_json(item: Item) -> dict:
    return {
        "id": item.id,
        "title": item.title,
        "url": item.link,
        "published": _iso(item.published),
        "updated": _iso(item.updated),
        "precision": item.precision.value,
        "origin": item.origin.value,
        "source": item.source_id,
        "topics": sorted(item.topics),
        "score": round(max(item.topics.values(), default=0.0), 3),
        "atom_id": item.atom_id,
        "revision": item.revision,
        "summary": item.summary_text,
    }


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_table(items: list[Item]) -> None:
    if not items:
        click.echo("no items")
        return
    width = max(len(str(item.id)) for item in items)
    for item in items:
        topics = ",".join(sorted(item.topics)) or "-"
        click.echo(
            f"{item.id:>{width}}  {item.published:%Y-%m-%d}  {item.origin.value:<4}  "
            f"{topics:<14.14}  {item.title}"
        )
    click.echo(f"{len(items)} items")


@cli.command("daemon")
@pass_state
def daemon_command(state: State) -> None:
    """Run the daemon (for now: import the seeds if missing and list the archive)."""
    from aggregator import ingest

    with state.archive(sync=True) as archive:
        counts = ingest.ensure_seeds(archive, state.config.archive.seeds)
        if counts:
            ingest.after_ingest(archive, state.config, counts)
        _print_table(archive.list_items())


def main() -> None:
    cli(prog_name="aggregator")
