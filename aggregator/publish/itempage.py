"""An item's page: the static HTML document publish writes for every item of the archive
(`items/<id>.html` in the feeds folder), so the whole site is files any web server can serve.

The id in the name is the archive's number for the item: it never changes, whatever happens to
the title. The page says what the archive knows: title, dates as precise as the source gave
them, source, original link, topics with their scores and the rules that put the item in them,
the whole archived text and the revisions. Pure: the same inputs give the same bytes (nothing
comes from the clock), so an unchanged item's page is never rewritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from html import escape
from itertools import pairwise
from typing import Any

from aggregator.html import page
from aggregator.models import Item, Precision, Revision
from aggregator.publish.document import SITE_TITLE, SourceInfo, author_of, original_link

FIELDS = {"title": "the title", "summary": "the summary", "content": "the full text"}
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")  # fmt: skip
CAP_RULE = "cap"  # classify's name for a field's points cut down to its cap


@dataclass(frozen=True, slots=True)
class ItemPage:
    """What an item's page shows."""

    item: Item
    source: SourceInfo
    rules: dict[str, Sequence[dict[str, Any]]]  # matched topic -> the rules that fired
    revisions: Sequence[Revision] = ()  # oldest first; empty when the item has only its first
    feeds: Sequence[tuple[str, str]] = ()  # (slug, title) of the feeds that carry it


def render(view: ItemPage) -> bytes:
    item = view.item
    body = (
        f'<p class="meta"><a href="../../">{escape(SITE_TITLE)}</a></p>\n'
        f"<article>\n<h1>{escape(item.title)}</h1>\n{_facts(view)}"
        f'<div class="text">\n{_text(item)}\n</div>\n</article>\n'
        f"<h2>Topics</h2>\n{_topics(item, view.rules)}"
        f"<h2>Revisions</h2>\n{_revisions(item, view.revisions)}"
    )
    return page(item.title, body).encode("utf-8", "replace")


def _facts(view: ItemPage) -> str:
    item = view.item
    rows = [("Published", _published(item))]
    if item.updated != item.published:
        rows.append(("Updated", _when(item.updated, _finer(item.precision))))
    rows.append(("Source", _source(view.source)))
    rows.append(("Author", escape(author_of(item))))
    original = original_link(item)
    if original:
        shown = escape(original)
        rows.append(("Original", f'<a href="{shown}">{shown}</a>'))
    if view.feeds:
        rows.append(("In the feeds", _feed_links(tuple(view.feeds))))
    rows.append(("Published id", f"<code>{escape(item.atom_id)}</code>"))
    lines = "".join(f"<dt>{name}</dt><dd>{value}</dd>\n" for name, value in rows)
    return f'<dl class="facts">\n{lines}</dl>\n'


@lru_cache(maxsize=64)
def _feed_links(feeds: tuple[tuple[str, str], ...]) -> str:
    """Links to the Atom documents of these feeds (few combinations: made once each)."""
    return ", ".join(
        f'<a href="../{escape(slug)}.atom">{escape(title)}</a>' for slug, title in feeds
    )


def _published(item: Item) -> str:
    if item.date_inferred:
        return f"{_when(item.first_seen, Precision.MINUTE)} (first seen: the source gave no date)"
    return _when(item.published, item.precision)


def _finer(precision: Precision) -> Precision:
    """An update is dated when we saw it: to the minute, even for a day-only story."""
    return Precision.MINUTE if precision is Precision.DAY else precision


def _when(value: datetime, precision: Precision) -> str:
    """A <time>: a day-only date says the day and nothing more. (No strftime: a full
    publish formats two dates for each of thousands of pages.)"""
    if value.utcoffset():
        value = value.astimezone(UTC)
    y, m, d = value.year, value.month, value.day
    day = f"{d} {MONTHS[m - 1]} {y}"
    if precision is Precision.DAY:
        return f'<time datetime="{y:04d}-{m:02d}-{d:02d}">{day}</time>'
    h, mi, s = value.hour, value.minute, value.second
    stamp = f"{y:04d}-{m:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z"
    return f'<time datetime="{stamp}">{day}, {h:02d}:{mi:02d} UTC</time>'


def _source(source: SourceInfo) -> str:
    url = _http(source.feed_url or source.home_url)
    title = escape(source.title)
    return f'<a href="{escape(url)}">{title}</a>' if url else title


def _http(url: str | None) -> str | None:
    return url if url and url[:8].lower().startswith(("http://", "https://")) else None


def _text(item: Item) -> str:
    """The whole text the archive holds (sanitized when it was stored): the full text, else
    the summary; a seed's full text is the whole article."""
    return item.content_html or item.summary_html or "<p>The source sent no text.</p>"


def _topics(item: Item, rules: dict[str, Sequence[dict[str, Any]]]) -> str:
    if not item.topics:
        return "<p>No topic matched this item.</p>\n"
    rows = []
    for topic in sorted(item.topics):
        reasons = "".join(f"<li>{_reason(fired)}</li>" for fired in rules.get(topic, ()))
        listed = f'<ul class="reasons">{reasons}</ul>' if reasons else ""
        rows.append(
            f"<li><strong>{escape(topic)}</strong>: score {item.topics[topic]:g}{listed}</li>\n"
        )
    return f"<ul>\n{''.join(rows)}</ul>\n"


def _reason(fired: dict[str, Any]) -> str:
    """One fired rule in words, as `aggregator explain` lists it."""
    where = FIELDS.get(str(fired.get("field")), escape(str(fired.get("field"))))
    weight = float(fired.get("weight") or 0)
    if fired.get("rule") == CAP_RULE:
        return f"{weight:+g}: the points from {where} are capped"
    match = escape(str(fired.get("match") or ""))
    rule = escape(str(fired.get("rule")))
    counts = "does not count" if weight == 0 else f"{weight:+g}"
    return f"{counts}: “{match}” in {where} (rule {rule})"


def _revisions(item: Item, revisions: Sequence[Revision]) -> str:
    if len(revisions) < 2:
        first = _when(item.first_seen, Precision.MINUTE)
        return f"<p>Archived {first}; not changed since.</p>\n"
    rows = [f"<li>{_when(revisions[0].recorded_at, Precision.MINUTE)}: first archived</li>\n"]
    for before, after in pairwise(revisions):
        when = _when(after.recorded_at, Precision.MINUTE)
        rows.append(f"<li>{when}: {_changes(before, after)}</li>\n")
    return f"<ol>\n{''.join(rows)}</ol>\n"


def _changes(before: Revision, after: Revision) -> str:
    """What a revision changed, in words."""
    changed = []
    if after.title != before.title:
        changed.append(f"the title (was “{escape(before.title)}”)")
    if after.summary_html != before.summary_html:
        changed.append("the summary")
    if after.content_html != before.content_html:
        changed.append("the full text" if before.content_html else "the full text (none before)")
    if (after.published, after.updated) != (before.published, before.updated):
        changed.append("the dates")
    if not changed:
        return "its link or other details changed"
    return "changed " + ", ".join(changed)
