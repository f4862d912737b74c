"""Each capture kept as WARC records (warcio), the format web archives replay.

A capture is a response record and the request record that asked for it (linked by
WARC-Concurrent-To), appended to a gzip WARC file as one write: a file starts with a
warcinfo record naming this program, and every record is its own gzip member, so the file
can be appended to forever and read by pywb, ArchiveBox or the Internet Archive's tools.

The fetcher hands over bodies already decompressed, so a record stores the body as
received after decoding, without Content-Encoding or Transfer-Encoding and with its real
Content-Length: a replay tool then serves exactly these bytes. One writer per file at a time.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.timeutils import datetime_to_iso_date, iso_date_to_datetime
from warcio.warcwriter import WARCWriter

from aggregator import __version__

# Describe the stored bytes, which are decoded: these would make a replay decode them again.
DROPPED_HEADERS = frozenset({"content-encoding", "transfer-encoding", "content-length"})

Record = tuple[str, datetime, int, dict[str, str], bytes]  # uri, date, status, headers, body


def append_capture(
    path: Path,
    url: str,
    date: datetime,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    request_headers: Mapping[str, str],
) -> None:
    """Append the request and response of one capture of `url`, made at `date`."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True)
    if not path.exists() or path.stat().st_size == 0:
        writer.write_record(
            writer.create_warcinfo_record(
                path.name, {"software": f"nato-partnership-aggregator/{__version__}"}
            )
        )
    warc_date = {"WARC-Date": datetime_to_iso_date(date.astimezone(UTC))}
    response = writer.create_warc_record(
        url,
        "response",
        payload=io.BytesIO(body),
        length=len(body),
        warc_headers_dict=dict(warc_date),
        http_headers=_response_headers(status, headers, len(body)),
    )
    request = writer.create_warc_record(
        url,
        "request",
        warc_headers_dict={
            **warc_date,
            "WARC-Concurrent-To": response.rec_headers.get_header("WARC-Record-ID"),
        },
        http_headers=_request_headers(url, request_headers),
    )
    writer.write_record(response)
    writer.write_record(request)
    with path.open("ab") as file:  # one write: a crash leaves whole records or none
        file.write(buffer.getvalue())


def _response_headers(status: int, headers: Mapping[str, str], length: int) -> StatusAndHeaders:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    kept = [(name, value) for name, value in headers.items() if name.lower() not in DROPPED_HEADERS]
    kept.append(("Content-Length", str(length)))
    return StatusAndHeaders(f"{status} {phrase}", kept, protocol="HTTP/1.1")


def _request_headers(url: str, headers: Mapping[str, str]) -> StatusAndHeaders:
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    sent = [(name, value) for name, value in headers.items() if name.lower() != "host"]
    return StatusAndHeaders(
        f"GET {target} HTTP/1.1",
        [("Host", parts.netloc), *sent],
        is_http_request=True,
    )


def records(path: Path) -> Iterator[Record]:
    """Every response in the file: (uri, date, status, headers lower-cased, body)."""
    with path.open("rb") as file:
        for record in ArchiveIterator(file):
            if record.rec_type != "response":
                continue
            http = record.http_headers
            yield (
                record.rec_headers.get_header("WARC-Target-URI"),
                iso_date_to_datetime(record.rec_headers.get_header("WARC-Date")).replace(
                    tzinfo=UTC
                ),
                int(http.get_statuscode()),
                {name.lower(): value for name, value in http.headers},
                record.content_stream().read(),
            )
