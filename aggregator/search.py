"""What people type into a search box, as an SQLite FTS5 query.

People type `Indo-Pacific`, `NATO's`, `H.W. Bush`, `counter-terrorism`: each is a word to
FTS5's tokenizer but an operator or a syntax error to its query language. So a plain query
is read as people mean it: words and "quoted phrases" that must all appear, `partner*` for
words that begin so, `OR` between alternatives, `-word` or `NOT word` for a word that must
not appear; everything else is quoted before SQLite sees it. The whole FTS5 syntax stays
available behind the prefix `fts:` (columns, NEAR, brackets), for those who know it.

Pure functions; the store runs the query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aggregator.dedupe import canonical_url
from aggregator.errors import SearchError
from aggregator.models import ItemReference

MAX_QUERY = 200  # characters: a search box, not a document
MAX_RESULTS = 50  # a search answers with the best matches, not the archive
DEFAULT_RESULTS = 20
RAW_PREFIX = "fts:"
_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')
OPERATORS = ("OR", "NOT", "AND")
_EDGE_PUNCTUATION = ".,;:!?()[]{}<>«»“”‘’'"


class QueryError(SearchError):
    """A query that cannot be searched; str() is the one line shown to the person."""


@dataclass(frozen=True, slots=True)
class Query:
    text: str  # as typed, trimmed
    fts: str  # what SQLite's MATCH receives
    raw: bool  # typed in FTS5 syntax (fts:)


def parse_query(typed: str) -> Query:
    text = " ".join(typed.split())
    if not text:
        raise QueryError("search: type a word to look for")
    if len(text) > MAX_QUERY:
        raise QueryError(f"search: a query has at most {MAX_QUERY} characters")
    if text.lower().startswith(RAW_PREFIX):
        raw = text[len(RAW_PREFIX) :].strip()
        if not raw:
            raise QueryError("search: nothing after fts:")
        return Query(text, raw, True)
    fts = plain_to_fts(text)
    if not fts:
        raise QueryError(f"search: nothing to look for in {text!r}: {_why_empty(text)}")
    return Query(text, fts, False)


def _why_empty(text: str) -> str:
    """Why a plain query left no term to search for."""
    words = [word for match in _TOKEN.finditer(text) if (word := match.group(2) or match.group(3))]
    if any(char.isalnum() for word in words if word not in OPERATORS for char in word):
        return "an excluded word needs a word to find beside it (as in: NATO -Russia)"
    if any(word in OPERATORS for word in words):
        return "AND, OR and NOT join words; they are not words to find"
    return "only punctuation"


def plain_to_fts(text: str) -> str:
    """Words and phrases ANDed, each quoted; OR and NOT (or a leading -) kept as operators."""
    terms: list[str] = []
    pending = ""  # an operator waiting for the term after it
    for match in _TOKEN.finditer(text):
        negated, phrase, word = match.group(1), match.group(2), match.group(3)
        if word in OPERATORS:
            pending = word if terms else ""
            continue
        if word is not None and word.startswith("-") and len(word) > 1:
            negated, word = "-", word[1:]
        term = _phrase(phrase) if phrase is not None else _word(word)
        if not term:
            continue
        operator = "NOT" if negated else pending
        if operator == "NOT" and not terms:  # FTS5 has no leading NOT: drop the exclusion
            pending = ""
            continue
        terms.append(f"{operator} {term}" if operator else term)
        pending = ""
    return " ".join(terms)


def _word(word: str) -> str:
    prefix = word.endswith("*")
    word = word.rstrip("*").strip(_EDGE_PUNCTUATION)
    if not any(char.isalnum() for char in word):
        return ""
    return _quoted(word) + ("*" if prefix else "")


def _phrase(phrase: str) -> str:
    phrase = " ".join(phrase.split())
    return _quoted(phrase) if any(char.isalnum() for char in phrase) else ""


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def item_reference(typed: str) -> ItemReference:
    """An item as people name it: `12`, `tag:aggregator.invalid,2024:...` or a link."""
    text = typed.strip()
    if not text:
        raise QueryError("name an item by its number, its published id or its URL")
    number = int(text) if text.isascii() and text.isdigit() else None
    return ItemReference(text, number, canonical_url(text))
