"""Slugs: lower-case ASCII letters, digits and dashes, made from any text, for ids and names."""

from __future__ import annotations

import re
import unicodedata

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str, max_length: int) -> str:
    """`text` folded to ASCII ("Sécurité" -> "securite"; what has no ASCII form goes), with
    every run of anything else one dash, cut to `max_length`; "" when nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NOT_SLUG.sub("-", ascii_text.lower()).strip("-")[:max_length].strip("-")
