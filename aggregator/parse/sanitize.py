"""HTML sanitizing (nh3, an allowlist) and plain-text rendering.

Sanitizing happens once, when entries are parsed, before anything is stored: what the
archive holds is already safe to publish and to show.

Both nh3 and the text renderer see markup only after `limit_depth`, which bounds what
nh3 (html5ever and its serializer) spends quadratic time on: depth (100,000 nested <div>
cost a minute: the tree builder scans the stack of open elements for each start tag), an
element's attributes (checked for duplicates pairwise), and "&" or U+00A0 in one text
node or attribute value (200,000 took a second; 10 MB of them, minutes).
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import nh3

from aggregator.parse.text import xml_safe

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "dd", "del", "dl",
    "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i",
    "img", "ins", "li", "ol", "p", "pre", "q", "s", "small", "strong", "sub", "sup",
    "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "blockquote": {"cite"},
    "q": {"cite"},
}
URL_SCHEMES = {"http", "https", "mailto"}
_BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"}

MAX_DEPTH = 100  # elements open at once; start tags deeper than this are dropped, text kept
_SHORT = 2000  # characters: too few attributes or "&" to cost nh3 a millisecond
_TEXT_RUN = 1000  # characters of text in one node, about; a comment (nh3 drops) splits runs
_MAX_VALUE = 4096  # characters in an attribute value nh3 may keep; no link needs more
# Markup as the HTML tokenizer reads it: a tag ends at the first ">" outside a quoted
# attribute value (or at the end, which drops it); comments, doctypes and "bogus comments".
_MARKUP = re.compile(
    r"<(?P<end>/?)(?P<name>[A-Za-z][^\t\n\f\r />]*)"
    r"(?P<attributes>(?:[\t\n\f\r /]+|[^\t\n\f\r />][^\t\n\f\r />=]*"
    r"(?:[\t\n\f\r ]*=[\t\n\f\r ]*(?:\"[^\"]*\"?|'[^']*'?|[^\t\n\f\r >]*))?)*)"
    r"(?P<close>>|\Z)"
    r"|<!--(?:-?>|.*?(?:--!?>|\Z))"
    r"|<[!?/][^>]*>?",
    re.DOTALL,
)
_ATTRIBUTE = re.compile(
    r"([^\t\n\f\r />][^\t\n\f\r />=]*)"
    r"(?:[\t\n\f\r ]*=[\t\n\f\r ]*(?:\"([^\"]*)\"?|'([^']*)'?|([^\t\n\f\r >]*)))?"
)
# Only these tags are written back: nh3 keeps no others (only their content); and only the
# attributes nh3 may keep, once each (html5ever checks duplicates in quadratic time).
_PLAIN_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
# Elements whose content the HTML parser reads as one text node, and nh3 keeps as text
# without them: left out, so that their content is split like any other.
_TEXT_ELEMENTS = frozenset({
    "iframe", "noembed", "noframes", "noscript", "plaintext", "textarea", "title", "xmp",
})  # fmt: skip
# Where text can be split: before a reference starts, or at white space, never inside one.
_SPLIT_POINT = re.compile(r"[&\s]")
_KEPT_ATTRIBUTES = frozenset().union(*ALLOWED_ATTRIBUTES.values())
_MAY_KEEP = re.compile("|".join(sorted(_KEPT_ATTRIBUTES)), re.IGNORECASE)
_VOID = frozenset({
    "area", "base", "br", "col", "embed", "hr", "image", "img", "input", "keygen", "link",
    "meta", "param", "source", "track", "wbr",
})  # fmt: skip
_INLINE = frozenset({
    "a", "abbr", "b", "big", "cite", "code", "em", "font", "i", "nobr", "q", "s", "small",
    "span", "strike", "strong", "sub", "sup", "tt", "u",
})  # fmt: skip
# A start tag of the key closes an open element of its group (sloppy "<p>a<p>b", "<li>").
_CLOSES = {
    "p": frozenset({"p"}),
    "li": frozenset({"li"}),
    "dt": frozenset({"dt", "dd"}),
    "dd": frozenset({"dt", "dd"}),
    "tr": frozenset({"tr", "td", "th"}),
    "td": frozenset({"td", "th"}),
    "th": frozenset({"td", "th"}),
    "option": frozenset({"option"}),
}


def sanitize_html(fragment: str | None, base_url: str | None = None) -> str:
    """Only the allowlisted tags, attributes and URL schemes survive; links get rel. The
    result holds only what XML can (nh3 takes no lone surrogates, and turns references to
    control characters into characters)."""
    if not fragment:
        return ""
    cleaned = nh3.clean(
        limit_depth(xml_safe(fragment)),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
    return xml_safe(cleaned).strip()


def html_to_text(fragment: str | None) -> str:
    """Readable plain text: tags dropped, entities decoded, blocks on their own lines."""
    return sanitized_html_to_text(limit_depth(fragment)) if fragment else ""


def sanitized_html_to_text(fragment: str | None) -> str:
    """`html_to_text` for what `sanitize_html` returned, whose depth is bounded already."""
    if not fragment:
        return ""
    parser = _TextParser()
    parser.feed(fragment)
    parser.close()
    text = xml_safe("".join(parser.parts))
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def limit_depth(fragment: str, max_depth: int = MAX_DEPTH) -> str:
    """The fragment with no more than `max_depth` elements open at once, in linear time,
    and nothing else nh3 is slow on.

    Deeper start tags (and their end tags) are dropped; their text stays where it was. The
    result is rewritten markup that leaves the HTML parser nothing to guess: each tag
    written again from its name and the attributes nh3 may keep, every other "<" escaped,
    every element this closes (by an end tag further out, or a sloppy "<li>" after "<li>")
    closed by an explicit end tag, comments left out. So the depth counted here is the
    depth the parser builds. Long text is split into runs by empty comments, which nh3
    drops. Well-nested markup sanitizes exactly as before; mis-nested inline elements may
    close where html5ever would have opened them again.
    """
    if len(fragment) <= _SHORT and fragment.count("<") <= max_depth:
        return fragment  # too few tags to nest that deep, too short for many attributes
    return _DepthLimit(max_depth).rewrite(fragment)


class _DepthLimit:
    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.out: list[str] = []
        self.open: list[str] = []  # names of the elements written and not closed yet
        self.dropped: dict[str, int] = {}  # start tags dropped and not closed yet, by name

    def rewrite(self, fragment: str) -> str:
        position = 0
        for markup in _MARKUP.finditer(fragment):
            if markup.start() > position:
                self.text(fragment[position : markup.start()])
            position = markup.end()
            name = markup["name"]
            if name is None or not markup["close"]:
                continue  # a comment or doctype, or a tag cut off by the end: never an element
            name = name.lower()
            if not _PLAIN_NAME.fullmatch(name) or name in _TEXT_ELEMENTS:
                continue  # nh3 would drop the element and keep its content, as this does
            if markup["end"]:
                self.end_tag(name)
            else:
                self.start_tag(name, markup["attributes"])
        self.text(fragment[position:])
        return "".join(self.out)

    def text(self, text: str) -> None:
        """Text, "<" escaped, in runs of about _TEXT_RUN characters."""
        text = text.replace("<", "&lt;")
        start = 0
        while len(text) - start > _TEXT_RUN:
            split = _SPLIT_POINT.search(text, start + _TEXT_RUN)
            if split is None:
                break
            self.out.append(text[start : split.start()])
            self.out.append("<!---->")
            start = split.start()
        self.out.append(text[start:])

    def start_tag(self, name: str, attributes: str) -> None:
        tag = f"<{name}{_attributes(attributes)}>" if _MAY_KEEP.search(attributes) else f"<{name}>"
        if name in _VOID:
            self.out.append(tag)
            return
        closes = _CLOSES.get(name)
        if closes:
            self.close_sloppy(closes)
        if len(self.open) >= self.max_depth:
            self.dropped[name] = self.dropped.get(name, 0) + 1
            return
        self.open.append(name)
        self.out.append(tag)

    def end_tag(self, name: str) -> None:
        if self.dropped.get(name):
            self.dropped[name] -= 1  # the innermost element of that name was one dropped
        elif name in self.open:
            self.close_down_to(self.open[::-1].index(name) + 1)
        else:
            self.out.append(f"</{name}>")  # stray: the parser ignores it (or makes <p>, <br>)

    def close_sloppy(self, closes: frozenset[str]) -> None:
        """Close an open element of the group the start tag ends, and inline ones in it."""
        count = 0
        for distance, name in enumerate(reversed(self.open), 1):
            if name in closes:
                count = distance
            elif name not in _INLINE:
                break
        self.close_down_to(count)

    def close_down_to(self, count: int) -> None:
        for _ in range(count):
            self.out.append(f"</{self.open.pop()}>")


def _attributes(text: str) -> str:
    """The attributes nh3 may keep, written again double-quoted, "<" and ">" escaped."""
    written: dict[str, str] = {}
    for found in _ATTRIBUTE.finditer(text):
        name = found[1].lower()
        if name not in _KEPT_ATTRIBUTES or name in written:
            continue  # the first of duplicates counts, as in the HTML parser
        value = found[2] if found[2] is not None else found[3] if found[3] is not None else found[4]
        if value is None:
            written[name] = f" {name}"
        elif len(value) > _MAX_VALUE:
            written[name] = ""  # left out, and its duplicates with it
        else:
            value = value.replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
            written[name] = f' {name}="{value}"'
    return "".join(written.values())


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self.skipping += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def text_to_html(text: str) -> str:
    """Plain text (paragraphs separated by blank lines) as escaped HTML paragraphs."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n".join(
        f"<p>{html.escape(' '.join(p.split()), quote=False)}</p>" for p in paragraphs if p.strip()
    )
