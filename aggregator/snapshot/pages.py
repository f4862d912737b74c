"""The captured pages (the WARC file, issue 15) in a snapshot.

Capture appends one gzip member per record while a snapshot may be copying the file, so
the copy keeps whole members only: a record half-written at that instant is left for the
next snapshot. `verify` reads the copy back: every gzip member complete, and every record
readable by warcio, the reader pywb and other web archive tools use.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from aggregator.snapshot.files import HashingWriter
from aggregator.snapshot.layout import PAGES, SnapshotError

CHUNK = 1 << 16  # 64 KiB: see _reads


def copy_pages(source: Path, target: Path) -> dict:
    """Copy the WARC file's whole records; returns the copy's manifest entry. One read of
    `source`: the copy is hashed as it is written and cut at its last whole record without
    being read back."""
    with open(source, "rb") as src, open(target, "wb") as copy:
        out = HashingWriter(copy)
        kept = out.entry()
        for chunk, whole in _reads(src):
            if whole:
                out.write(chunk[:whole])
                kept = out.entry()
            out.write(chunk[whole:])
        if kept["size"] < out.size:
            copy.truncate(kept["size"])  # a record still being appended: the next snapshot's
        copy.flush()
        os.fsync(copy.fileno())
    return kept


def whole_members_end(path: Path) -> int:
    """Where the last complete gzip member of `path` ends."""
    end = position = 0
    with open(path, "rb") as file:
        for chunk, whole in _reads(file):
            if whole:
                end = position + whole
            position += len(chunk)
    return end


def _reads(file: BinaryIO) -> Iterator[tuple[memoryview, int]]:
    """Each read of a gzip file, with how much of it is whole members: up to the end of the
    last member that ends in it (0 when none does). The first byte that is not gzip is the
    last read. Reads are small because at each member end zlib copies the rest of its
    input into `unused_data`: a read costs its size times the members ending in it."""
    inflater = _gunzip()
    while data := file.read(CHUNK):
        chunk, whole = memoryview(data), 0
        while whole < len(chunk):
            try:
                _inflate(inflater, chunk[whole:])
            except zlib.error:
                yield chunk, whole
                return
            if not inflater.eof:
                break
            whole = len(chunk) - len(inflater.unused_data)
            inflater = _gunzip()
        yield chunk, whole


def _gunzip() -> zlib._Decompress:
    return zlib.decompressobj(zlib.MAX_WBITS | 16)


def _inflate(inflater: zlib._Decompress, data: memoryview) -> None:
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
