"""What every parser does last to an entry: text that XML 1.0 can hold, and a title.

Whatever a source sends ends up in published XML, and one character XML cannot hold (an
ESC in a description, a lone surrogate from a broken character reference) would make
every document that carries the item unwritable. So every parser passes the entries it
makes through `finished`, the one place that guarantees both rules for every field.
"""

from __future__ import annotations

from dataclasses import replace

from aggregator.models import Entry
from aggregator.xmlchars import xml_safe

__all__ = ["fallback_title", "finished", "xml_safe"]

UNTITLED = "Untitled"
TITLE_WORDS = 12  # a title made from the summary: its first words


def fallback_title(entry: Entry) -> str:
    """A title for an entry that has none: the summary's first words, then the link."""
    text = " ".join((entry.summary_text or entry.content_text or "").split())
    if text:
        words = text.split(" ")
        return " ".join(words[:TITLE_WORDS]) + ("…" if len(words) > TITLE_WORDS else "")
    return entry.link or UNTITLED


def finished(entry: Entry) -> Entry:
    """The entry with every text field XML-safe and a non-empty title."""
    changes = {}
    for name in ("title", "link", "guid", "summary_html", "summary_text", "content_html",
                 "content_text", "author"):  # fmt: skip
        value = getattr(entry, name)
        if value:
            safe = xml_safe(value)
            if safe is not value:
                changes[name] = safe
    categories = tuple(c for c in (xml_safe(c).strip() for c in entry.categories) if c)
    if categories != entry.categories:
        changes["categories"] = categories
    if changes:
        entry = replace(entry, **changes)
    if not " ".join(entry.title.split()):
        entry = replace(entry, title=xml_safe(fallback_title(entry)))
    return entry
