"""The bytes feedparser gets: hostile documents refused, the rest made XML.

- `refusal`: entity declarations (entity expansion attacks): no feed needs them.
- `xml_characters`: characters and character references XML 1.0 cannot hold are removed
  (feedparser's fallback parser raised UnicodeEncodeError on `&#xD800;` and ValueError
  beyond U+10FFFF), so the strict parser reads the document.

Everything here is one linear pass of a regular expression, at C speed between matches;
CDATA sections and comments are skipped whole, as they hold text, not markup.
"""

from __future__ import annotations

import re

_ENTITY_DECLARATION = re.compile(rb"<!ENTITY", re.IGNORECASE)
_TEXT_SECTION = rb"<!\[CDATA\[.*?(?:\]\]>|\Z)|<!--.*?(?:-->|\Z)"
_REFERENCE = re.compile(
    _TEXT_SECTION + rb"|&#(?:[xX](?P<hex>[0-9a-fA-F]+)|(?P<decimal>[0-9]+));", re.DOTALL
)
# C0 controls but tab, LF and CR; U+FFFE and U+FFFF in UTF-8. Bytes that are never part
# of another character in UTF-8, so deleting them leaves the rest intact.
_CONTROLS = bytes(c for c in range(32) if c not in (9, 10, 13))
_CONTROL = re.compile(b"[%s]" % re.escape(_CONTROLS))
_NON_CHARACTERS = (b"\xef\xbf\xbe", b"\xef\xbf\xbf")


def refusal(data: bytes) -> str | None:
    """Why the document is refused unread, or None."""
    if _ENTITY_DECLARATION.search(data):
        return (
            "refused: the document declares XML entities (<!ENTITY), which feeds do not "
            "need and entity-expansion and external-entity attacks use"
        )
    return None


def xml_characters(data: bytes) -> bytes:
    """UTF-8 `data` without characters, or references to characters, that XML 1.0 cannot
    hold: C0 controls but tab, LF and CR, U+FFFE, U+FFFF, surrogates, beyond U+10FFFF.
    A reference to a surrogate or beyond stands for a character we cannot know: U+FFFD."""
    if _CONTROL.search(data):
        data = data.translate(None, _CONTROLS)
    for sequence in _NON_CHARACTERS:
        if sequence in data:
            data = data.replace(sequence, b"")
    if b"&#" not in data:
        return data
    return _REFERENCE.sub(_xml_reference, data)


def _xml_reference(found: re.Match[bytes]) -> bytes:
    digits, base = (found["hex"], 16) if found["hex"] is not None else (found["decimal"], 10)
    if digits is None:
        return found[0]  # a CDATA section or a comment, left as it is
    digits = digits.lstrip(b"0") or b"0"
    code = int(digits, base) if len(digits) <= 8 else 0x110000
    if code in (9, 10, 13) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD:
        return found[0]
    if 0x10000 <= code <= 0x10FFFF:
        return found[0]
    if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        return b"&#xFFFD;"
    return b""  # a control character or a non-character: no text
