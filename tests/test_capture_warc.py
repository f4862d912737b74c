"""WARC records of captures, written and read back through warcio's own reader."""

from __future__ import annotations

import base64
import gzip
import hashlib
from datetime import UTC, datetime
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from aggregator.capture.warc import append_capture, records

ARTICLE = Path(__file__).resolve().parent / "fixtures" / "articles" / "news_144098.htm"
URL = "https://www.nato.int/cps/en/natohq/news_144098.htm?selectedLocale=en"
WHEN = datetime(2026, 3, 1, 9, 30, 15, tzinfo=UTC)
SENT = {"User-Agent": "nato-partnership-aggregator/0.1.0 (+mailto:a@example.org)", "Accept": "*/*"}


def sha1_digest(body: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(body).digest()).decode()


def write_two(path: Path) -> bytes:
    page = ARTICLE.read_bytes()
    append_capture(
        path,
        URL,
        WHEN,
        200,
        {"Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip", "ETag": '"v1"'},
        page,
        SENT,
    )
    append_capture(
        path,
        "https://www.nato.int/cps/en/natohq/news_1.htm",
        datetime(2026, 3, 1, 10, 0, tzinfo=UTC),
        404,
        {"Content-Type": "text/plain"},
        b"not found",
        SENT,
    )
    return page


def test_captures_round_trip_through_warcio(tmp_path):
    path = tmp_path / "pages.warc.gz"
    page = write_two(path)
    with path.open("rb") as file:
        found = [
            (
                r.rec_type,
                r.rec_headers.get_header("WARC-Target-URI"),
                r.rec_headers.get_header("WARC-Date"),
                r.rec_headers.get_header("WARC-Record-ID"),
                r.rec_headers.get_header("WARC-Concurrent-To"),
                r.rec_headers.get_header("WARC-Payload-Digest"),
                r.http_headers,
                r.content_stream().read(),
            )
            for r in ArchiveIterator(file)
        ]
    assert [f[0] for f in found] == ["warcinfo", "response", "request", "response", "request"]
    _, response, request, missing, _ = found
    assert response[1] == request[1] == URL
    assert response[2] == request[2] == "2026-03-01T09:30:15Z"
    assert request[4] == response[3]  # the request names the response it brought
    assert response[5] == sha1_digest(page)
    assert response[6].get_statuscode() == "200"
    assert response[6].get_header("ETag") == '"v1"'
    assert response[7] == page
    assert request[6].protocol == "GET"
    assert request[6].statusline == "/cps/en/natohq/news_144098.htm?selectedLocale=en HTTP/1.1"
    assert request[6].get_header("Host") == "www.nato.int"
    assert request[6].get_header("User-Agent") == SENT["User-Agent"]
    assert missing[6].get_statuscode() == "404" and missing[7] == b"not found"


def test_the_stored_body_is_described_as_it_is_stored(tmp_path):
    path = tmp_path / "pages.warc.gz"
    page = write_two(path)
    [first, _] = list(records(path))
    headers = first[3]
    assert "content-encoding" not in headers  # the body was decoded by the fetcher
    assert headers["content-length"] == str(len(page))


def test_records_reads_back_what_was_captured(tmp_path):
    path = tmp_path / "pages.warc.gz"
    page = write_two(path)
    assert [(uri, date, status, body) for uri, date, status, _, body in records(path)] == [
        (URL, WHEN, 200, page),
        ("https://www.nato.int/cps/en/natohq/news_1.htm", datetime(2026, 3, 1, 10, tzinfo=UTC),
         404, b"not found"),
    ]  # fmt: skip


def test_the_file_is_gzip_with_one_member_per_record_and_one_warcinfo(tmp_path):
    path = tmp_path / "pages.warc.gz"
    write_two(path)
    write_two(path)
    with gzip.open(path, "rb") as file:
        text = file.read()
    assert text.startswith(b"WARC/1.")
    assert text.count(b"WARC-Type: warcinfo") == 1
    assert text.count(b"WARC-Type: response") == 4
    with path.open("rb") as file:
        iterator = ArchiveIterator(file)
        offsets = [iterator.get_record_offset() for _record in iterator]
    data = path.read_bytes()
    members = [data[a:b] for a, b in zip(offsets, [*offsets[1:], len(data)], strict=True)]
    assert len(members) == 9  # a warcinfo, then a response and a request per capture
    for member in members:  # each record is a gzip member of its own: indexable, appendable
        assert gzip.decompress(member).startswith(b"WARC/1.")
    assert len(list(records(path))) == 4
