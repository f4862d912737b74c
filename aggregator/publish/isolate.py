"""Rendering a document so that no single item can stop it.

A renderer that cannot write one item (text XML 1.0 cannot hold, an Atom entry without a
title) fails the whole document, and with it every feed that carries the item. The parser
cleans the entries it makes, but an archive may hold older ones, and a renderer may fail
for reasons nobody foresaw. So a document is rendered as usual, and only when that fails
are items rendered alone to find the ones at fault (first those that break a known rule,
then, if need be, every item), then the document without them: a clean document costs
nothing extra. A document that fails without any item is the
document's own failure, not an item's, and is raised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aggregator.models import EMPTY_TITLE, NOT_XML_TEXT, RENDER_ERROR, Item, LeftOut
from aggregator.xmlchars import xml_safe

Render = Callable[[Sequence[Item]], bytes]


def render_isolated(render: Render, items: Sequence[Item]) -> tuple[bytes, list[LeftOut]]:
    """The document of `items`, without those it cannot be rendered with."""
    try:
        return render(items), []
    except Exception:
        if not items:
            raise
    render(())  # fails when the fault is the document's own
    # The usual culprits break the rules renderers enforce: try those alone first, so that
    # an archive holding a bad item pays for a few renders, not one per item.
    suspects = [item for item in items if reason_for(item) != RENDER_ERROR]
    left_out = _failing_alone(render, suspects)
    kept = _without(items, left_out)
    try:
        return render(kept), left_out
    except Exception:
        left_out += _failing_alone(render, kept)
    return render(_without(kept, left_out)), left_out


def _failing_alone(render: Render, items: Sequence[Item]) -> list[LeftOut]:
    left_out = []
    for item in items:
        try:
            render((item,))
        except Exception as exc:
            left_out.append(LeftOut(item.id, reason_for(item), one_line(exc)))
    return left_out


def _without(items: Sequence[Item], left_out: Sequence[LeftOut]) -> list[Item]:
    gone = {left.item_id for left in left_out}
    return [item for item in items if item.id not in gone]


def reason_for(item: Item) -> str:
    """Why a renderer could not write `item`, as far as the rules renderers enforce tell."""
    texts = (item.title, item.link, item.guid, item.atom_id, item.author, item.summary_html,
             item.content_html, *item.categories)  # fmt: skip
    if any(text and xml_safe(text) != text for text in texts):
        return NOT_XML_TEXT
    if not item.title.strip():
        return EMPTY_TITLE
    return RENDER_ERROR


def one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
