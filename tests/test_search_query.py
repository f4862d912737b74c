"""search: what people type becomes an FTS5 query SQLite accepts and means the same (issue 14).

Each query runs against a real FTS5 table with the archive's tokenizer."""

from __future__ import annotations

import sqlite3

import pytest

from aggregator.search import MAX_QUERY, QueryError, parse_query, plain_to_fts

DOCUMENTS = {
    1: "NATO and its Indo-Pacific partners met in Brussels",
    2: "NATO's counter-terrorism policy was reviewed",
    3: "George H.W. Bush spoke of a new world order",
    4: "Building defence capacity in Georgia",
    5: "Partnership with Ukraine and Georgia deepens",
    6: "Defence ministers discuss capacity for air defence",
}


@pytest.fixture(scope="module")
def table():
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE VIRTUAL TABLE docs USING fts5(text, "
        "tokenize='porter unicode61 remove_diacritics 2')"
    )
    conn.executemany("INSERT INTO docs(rowid, text) VALUES (?, ?)", DOCUMENTS.items())
    yield conn
    conn.close()


def found(table, typed: str) -> set[int]:
    query = parse_query(typed)
    rows = table.execute("SELECT rowid FROM docs WHERE docs MATCH ?", (query.fts,))
    return {row[0] for row in rows}


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("Indo-Pacific", {1}),
        ("NATO's", {2}),
        ("counter-terrorism", {2}),
        ("H.W.", {3}),
        ('"defence capacity"', {4}),
        ("defence capacity", {4, 6}),
        ("partner*", {1, 5}),
        ("Georgia OR Ukraine", {4, 5}),
        ("Georgia -Ukraine", {4}),
        ("Georgia NOT Ukraine", {4}),
        ("NATO (Brussels)", {1}),
        ('an "unclosed phrase', set()),
        ("fts: text:georgia NOT ukraine", {4}),
    ],
)
def test_plain_queries_find_what_people_mean(table, typed, expected):
    assert found(table, typed) == expected


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("   ", "type a word"),
        ("--- ... !!!", "only punctuation"),
        ("-Russia", "an excluded word needs a word to find beside it"),
        ('-"Black Sea"', "an excluded word needs a word to find beside it"),
        ("AND", "AND, OR and NOT join words"),
        ('""', "only punctuation"),
        ('-""', "only punctuation"),
        ("OR ...", "AND, OR and NOT join words"),
        ("x" * (MAX_QUERY + 1), f"at most {MAX_QUERY} characters"),
        ("fts:   ", "nothing after fts:"),
    ],
)
def test_a_query_with_nothing_to_search_is_one_clear_line(typed, message):
    with pytest.raises(QueryError, match=message):
        parse_query(typed)


def test_quotes_inside_words_cannot_break_out_of_the_quoting():
    assert plain_to_fts('a"b') == '"a""b"'
    assert plain_to_fts("OR NOT -x") == ""  # operators without terms say nothing
