"""The captured pages (the WARC file, issue 15) in a snapshot.

Capture appends one gzip member per record while a snapshot may be copying the file, so
the copy keeps whole members only: a record half-written at that instant is left for the
next snapshot. `verify` reads the copy back: every gzip member complete, and every record
readable by warcio, the reader pywb and other web archive tools use.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from aggregator.snapshot.files import copy_file, file_entry
from aggregator.snapshot.layout import PAGES, SnapshotError

CHUNK = 1 << 20


def copy_pages(source: Path, target: Path) -> dict:
    """Copy the WARC file's whole records; returns the copy's manifest entry."""
    copy_file(source, target)
    end = whole_members_end(target)
    if end < target.stat().st_size:
        with open(target, "r+b") as copy:
            copy.truncate(end)
            os.fsync(copy.fileno())
    return file_entry(target)


def whole_members_end(path: Path) -> int:
    """Where the last complete gzip member of `path` ends."""
    end = position = 0
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            while chunk:
                try:
                    _inflate(inflater, chunk)
                except zlib.error:
                    return end
                if not inflater.eof:
                    position += len(chunk)
                    break
                rest = inflater.unused_data
                position += len(chunk) - len(rest)
                end, chunk = position, rest
                inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    return end


def _inflate(inflater: zlib._Decompress, data: bytes) -> None:
    """Inflate `data` into nothing, at most CHUNK bytes a call so a bomb stays small, until
    its member ends or it is used up (a full output may still hold more back). The end is
    told by `eof` alone: a member that ends in a call fed from `unconsumed_tail` leaves that
    tail in place, and feeding it again would only append it to `unused_data`, forever."""
    output = inflater.decompress(data, CHUNK)
    while not inflater.eof and (inflater.unconsumed_tail or len(output) == CHUNK):
        output = inflater.decompress(inflater.unconsumed_tail, CHUNK)


def check_pages(path: Path) -> int:
    """How many records the snapshot's WARC file holds; SnapshotError when one is torn or
    warcio cannot read one."""
    if whole_members_end(path) != path.stat().st_size:
        raise SnapshotError(f"{PAGES}: the last record is incomplete")
    count = 0
    try:
        with open(path, "rb") as file:
            for record in ArchiveIterator(file):
                record.content_stream().read()
                count += 1
    except (ArchiveLoadFailed, OSError, ValueError, zlib.error) as exc:
        raise SnapshotError(f"{PAGES}: warcio cannot read record {count + 1}: {exc}") from None
    return count
