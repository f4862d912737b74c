"""feedparser's own test corpus, served as feeds: the hostile-input run of `make corpus`.

feedparser's source distribution on the package index ships about 2,250 small documents
(ill-formed XML, encodings, entities, sanitizer attacks, HTTP statuses, compression) that
it tests itself against. We download them rather than vendor them: they are 9 MB that no
other test needs, they change with each feedparser release (the cache is keyed on the
installed version), and feedparser's licence (BSD-style, Kurt McKee and Mark Pilgrim) asks
that copies keep its notice, which the cache keeps as `LICENSE` beside them.

    python -m tests.corpus download .cache/feedparser-corpus   # what `make corpus` runs

Each document is served as feedparser's own test server serves it: `Header:` lines in its
leading comment become response headers (status, content type, location, validators), the
compression cases carry their Content-Encoding, everything else is `application/xml`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from tests.feedserver import Route

DEFAULT_TYPE = "application/xml"
# Redirect targets in the corpus name feedparser's own test server.
FEEDPARSER_TEST_SERVER = "http://localhost:8097"
_HEADER = re.compile(rb"^Header:\s+([^:]+):(.+)$", re.MULTILINE)
_ENCODINGS = {".gz": "gzip", ".z": "deflate"}
# Python 3.11.4+ can refuse links and absolute paths in an archive; older 3.11s cannot.
_SAFE_EXTRACT = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


@dataclass(frozen=True)
class Document:
    path: str  # URL path, the same as in feedparser's tests: /tests/wellformed/rss/x.xml
    file: Path

    @property
    def name(self) -> str:
        return self.path.removeprefix("/tests/")


def installed_version() -> str:
    return version("feedparser")


def corpus_dir(cache: Path) -> Path:
    """Where the corpus of the installed feedparser lives (or will) under the cache."""
    return cache / f"feedparser-{installed_version()}"


def download(cache: Path) -> Path:
    """Fetch the installed feedparser's sdist and keep its tests/ and LICENSE; idempotent."""
    target = corpus_dir(cache)
    if (target / "LICENSE").is_file():
        return target
    release = f"feedparser-{installed_version()}"
    with tempfile.TemporaryDirectory() as scratch:
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        only_sources = ["--no-binary", ":all:"]  # the wheel carries no tests
        wanted = f"feedparser=={installed_version()}"
        subprocess.run([*pip, *only_sources, "--dest", scratch, wanted], check=True)
        (sdist,) = Path(scratch).glob("feedparser-*.tar.gz")
        unpacked = Path(scratch) / "unpacked"
        with tarfile.open(sdist) as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.name.startswith((f"{release}/tests/", f"{release}/LICENSE"))
            ]
            tar.extractall(unpacked, members=members, **_SAFE_EXTRACT)
        staging = cache / f".{release}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(unpacked / release, staging)
        staging.rename(target)  # the corpus appears whole or not at all
    return target


def documents(corpus: Path) -> list[Document]:
    """Every test document of the corpus (not feedparser's test runner)."""
    files = sorted(f for f in (corpus / "tests").rglob("*") if f.is_file() and f.suffix != ".py")
    return [Document("/" + f.relative_to(corpus).as_posix(), f) for f in files]


def route_for(document: Document, base_url: str) -> Route:
    """The response feedparser's test server gives for this document, pointed at ours."""
    body = document.file.read_bytes()
    encoding = _ENCODINGS.get(document.file.suffix)
    if encoding:
        return Route(body=body, content_type=DEFAULT_TYPE, raw_encoding=encoding)
    headers = {
        name.decode().strip(): value.decode("utf-8", "replace").strip()
        for name, value in _HEADER.findall(body)
    }
    by_name = {name.lower(): name for name in headers}

    def take(name: str) -> str | None:
        return headers.pop(by_name[name]) if name in by_name else None

    location = take("location")
    return Route(
        status=int(take("status") or 200),
        body=body,
        content_type=take("content-type") or DEFAULT_TYPE,
        location=location.replace(FEEDPARSER_TEST_SERVER, base_url) if location else None,
        etag=take("etag"),
        last_modified=take("last-modified"),
        headers=headers,
    )


def extra_routes() -> dict[str, Route]:
    """Paths feedparser's test server answers without a file behind them."""
    return {"/-/return-304.xml": Route(status=304)}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "download":
        print("usage: python -m tests.corpus download CACHE_DIR", file=sys.stderr)
        return 2
    target = download(Path(argv[1]))
    print(f"feedparser corpus: {len(documents(target))} documents in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
