"""Files as snapshots need them: hashed while they are read or copied, and on disk (fsync)
before the next step relies on them."""

from __future__ import annotations

import hashlib
import mmap
import os
from pathlib import Path
from typing import BinaryIO

from aggregator.snapshot.layout import Progress

CHUNK = 1 << 20
HASH_CHUNK = 64 << 20


def file_entry(path: Path, progress: Progress | None = None) -> dict:
    """Size and SHA-256, read through mmap: no copy into Python, and hashlib releases the
    GIL, so checksums run beside other work."""
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        if size:
            with mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                for start in range(0, size, HASH_CHUNK):
                    digest.update(view[start : start + HASH_CHUNK])
                    if progress:
                        progress(f"sha256 {path.name}", min(start + HASH_CHUNK, size), size)
                view.release()
    return {"size": size, "sha256": digest.hexdigest()}


class HashingWriter:
    """A file written through this is hashed and measured on the way: its manifest entry
    needs no second read."""

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.digest, self.size = out, hashlib.sha256(), 0

    def write(self, data: bytes | memoryview) -> None:
        self.out.write(data)
        self.digest.update(data)
        self.size += len(data)

    def entry(self) -> dict:
        """Size and SHA-256 of what was written so far."""
        return {"size": self.size, "sha256": self.digest.hexdigest()}


def copy_file(source: Path, destination: Path) -> dict:
    """Copy and hash in one read; the copy is on disk when this returns."""
    with open(source, "rb") as src, open(destination, "wb") as dst:
        out = HashingWriter(dst)
        while chunk := src.read(CHUNK):
            out.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return out.entry()


def write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def fsync_dir(path: Path) -> None:
    """A rename is durable only once its folder is on disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
