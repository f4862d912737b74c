"""Text XML 1.0 can hold: what every published document, and so every stored string, keeps to.

Used where text enters (parse, config, OPML, captured pages) and where it leaves (publish).
"""

from __future__ import annotations

import re

# XML 1.0's Char production excludes C0 controls but tab, LF and CR, the surrogates and
# U+FFFE/U+FFFF. Controls and non-characters are dropped (they carry no text); a surrogate
# stands for a character we cannot know, so it becomes U+FFFD, the replacement character.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def xml_safe(text: str) -> str:
    """`text` without what XML 1.0 cannot hold (a no-op, and fast, for clean text)."""
    if not _NOT_XML.search(text):
        return text
    return _NOT_XML.sub(lambda m: "\ufffd" if _SURROGATE.match(m[0]) else "", text)
