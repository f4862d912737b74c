"""OPML in: another reader's subscriptions as `[[sources]]` entries of config.toml.

`subscriptions(body)` reads an OPML file (any nesting of outlines; those with an xmlUrl
are feeds); `new_sources` turns them into sources the config does not have yet, with ids
made from their titles; `sources_toml` prints them (tomlkit writes the TOML), and
`append_sources` adds them at the end of a config file, so its comments and layout stay
as the user wrote them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aggregator.errors import UsageError
from aggregator.slugs import slugify
from aggregator.xmlchars import xml_safe

# A new source id's length, with room for "-NN" within config's 63 characters.
ID_ROOM = 56


class OpmlError(UsageError):
    """The file is not OPML we can read; str() is the one-line reason."""


@dataclass(frozen=True, slots=True)
class Subscription:
    title: str
    url: str  # the feed (xmlUrl)
    site: str | None = None  # htmlUrl


@dataclass(frozen=True, slots=True)
class NewSource:
    id: str
    title: str
    url: str


def subscriptions(body: bytes) -> list[Subscription]:
    """Every outline with an http(s) xmlUrl, in file order, each URL once."""
    if b"<!ENTITY" in body[:65536].upper():
        raise OpmlError("not readable OPML: it declares entities (refused: entity expansion)")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise OpmlError(f"not readable OPML: {exc}") from None
    if root.tag != "opml":
        raise OpmlError(f"not OPML: the document is <{root.tag[:40]}>")
    found: dict[str, Subscription] = {}
    for outline in root.iter("outline"):
        url = (outline.get("xmlUrl") or "").strip()
        if urlsplit(url).scheme in ("http", "https") and url not in found:
            title = outline.get("title") or outline.get("text") or urlsplit(url).netloc
            site = (outline.get("htmlUrl") or "").strip() or None
            found[url] = Subscription(" ".join(xml_safe(title).split()), xml_safe(url), site)
    return list(found.values())


def new_sources(
    found: Iterable[Subscription], known_ids: Iterable[str], known_urls: Iterable[str]
) -> list[NewSource]:
    """The subscriptions whose URL no source has, each with an id no source uses."""
    taken, urls = set(known_ids) | {"seed"}, set(known_urls)
    result = []
    for sub in found:
        if sub.url in urls:
            continue
        title, host = sub.title, urlsplit(sub.url).netloc
        source_id = _unique(slugify(title, ID_ROOM) or slugify(host, ID_ROOM), taken)
        taken.add(source_id)
        urls.add(sub.url)
        result.append(NewSource(source_id, sub.title or sub.url, sub.url))
    return result


def sources_toml(sources: Sequence[NewSource]) -> str:
    """The `[[sources]]` tables to paste into config.toml."""
    import tomlkit

    document = tomlkit.document()
    document.add("sources", _tables(sources))
    return tomlkit.dumps(document)


def append_sources(config: Path, sources: Sequence[NewSource], origin: str) -> None:
    """Add the sources at the end of the config file under a comment naming `origin`;
    every line already there stays as it is (TOML lets [[sources]] come after any table)."""
    import tomlkit

    text = config.read_text(encoding="utf-8")
    added = f"\n# Added from {' '.join(origin.split())} by `aggregator sources import`.\n"
    text = text.rstrip("\n") + "\n" + added + sources_toml(sources)
    tomlkit.parse(text)  # the result must still be TOML
    temporary = config.with_name(config.name + ".new")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(config)  # all or nothing: a crash never leaves half a config


def _tables(sources: Sequence[NewSource]):
    import tomlkit

    tables = tomlkit.aot()
    for source in sources:
        table = tomlkit.table()
        table.update({"id": source.id, "title": source.title, "url": source.url})
        tables.append(table)
    return tables


def _unique(base: str, taken: set[str]) -> str:
    base = base or "source"
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"
