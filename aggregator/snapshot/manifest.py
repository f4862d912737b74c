"""The manifest: what a snapshot promises (counts, versions, every file's size and
SHA-256) and SHA256SUMS, built when it is written and checked when it is read."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aggregator import __version__
from aggregator.clock import stamp
from aggregator.snapshot.files import file_entry
from aggregator.snapshot.layout import MANIFEST, SUMS, SnapshotError

if TYPE_CHECKING:
    from aggregator.store import Archive

FORMAT = "aggregator-snapshot"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Counts:
    """What the manifest promises about the items, checked against db and JSONL."""

    items: int
    items_by_origin: dict[str, int]
    items_by_source: dict[str, int]
    revisions: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "items_by_origin": self.items_by_origin,
            "items_by_source": self.items_by_source,
            "revisions": self.revisions,
        }


class Tally:
    """Counts, one item at a time (from an export or from items.jsonl)."""

    def __init__(self) -> None:
        self.items, self.revisions = 0, 0
        self.origins: Counter[str] = Counter()
        self.sources: Counter[str] = Counter()

    def add(self, origin: str, source_id: str, revisions: int) -> None:
        self.items += 1
        self.revisions += revisions
        self.origins[origin] += 1
        self.sources[source_id] += 1

    def counts(self) -> Counts:
        return Counts(
            self.items,
            dict(sorted(self.origins.items())),
            dict(sorted(self.sources.items())),
            self.revisions,
        )


def db_counts(archive: Archive) -> Counts:
    by_origin = archive.count_items_by("origin")
    return Counts(
        items=sum(by_origin.values()),
        items_by_origin=by_origin,
        items_by_source=archive.count_items_by("source_id"),
        revisions=archive.count_revisions(),
    )


@dataclass(frozen=True)
class Facts:
    """What the copied database says about itself."""

    counts: Counts
    schema_version: int
    oldest_published: str | None
    newest_published: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.counts.as_dict(),
            "schema_version": self.schema_version,
            "oldest_published": self.oldest_published,
            "newest_published": self.newest_published,
        }


def facts_of(archive: Archive) -> Facts:
    return Facts(db_counts(archive), archive.schema_version(), *archive.published_range())


# --- writing ---------------------------------------------------------------------------------


def build(
    name: str, created: datetime, label: str | None, facts: Facts, files: dict[str, dict]
) -> dict:
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "created": stamp(created),
        "label": label,
        "program": "aggregator",
        "program_version": __version__,
        "schema_version": facts.schema_version,
        **facts.counts.as_dict(),
        "oldest_published": facts.oldest_published,
        "newest_published": facts.newest_published,
        "files": dict(sorted(files.items())),
    }
    manifest["manifest_sha256"] = fields_hash(manifest)
    return manifest


def fields_hash(manifest: dict) -> str:
    """SHA-256 of the manifest's own fields, so an edited field is caught too."""
    fields = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def to_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()


def sums_text(files: dict[str, dict]) -> str:
    """The `sha256sum` format, escaped as GNU coreutils does for odd file names."""
    lines = []
    for relative, entry in sorted(files.items()):
        if "\\" in relative or "\n" in relative:
            escaped = relative.replace("\\", "\\\\").replace("\n", "\\n")
            lines.append(f"\\{entry['sha256']}  {escaped}\n")
        else:
            lines.append(f"{entry['sha256']}  {relative}\n")
    return "".join(lines)


# --- reading and checking --------------------------------------------------------------------


def read(folder: Path) -> dict:
    """The manifest of a snapshot folder, once its format and its own checksum hold."""
    path = folder / MANIFEST
    if not path.is_file():
        raise SnapshotError(f"{MANIFEST}: missing")
    try:
        manifest = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SnapshotError(f"{MANIFEST}: not valid JSON (damaged)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SnapshotError(f"{MANIFEST}: not an aggregator snapshot manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise SnapshotError(
            f"{MANIFEST}: format version {manifest.get('format_version')} is not "
            f"{FORMAT_VERSION}; use a newer program"
        )
    if manifest.get("manifest_sha256") != fields_hash(manifest):
        raise SnapshotError(f"{MANIFEST}: sha256 of its fields mismatch (edited or damaged)")
    return manifest


def compare(file_name: str, found: dict, manifest: dict) -> None:
    """SnapshotError naming the first value `file_name` holds that the manifest does not."""
    for key, value in found.items():
        if manifest.get(key) != value:
            raise SnapshotError(
                f"{file_name}: {key} is {_show(value)}, manifest says {_show(manifest.get(key))}"
            )


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def check_sums(folder: Path, files: dict) -> None:
    path = folder / SUMS
    if not path.is_file():
        raise SnapshotError(f"{SUMS}: missing")
    expected = {**files, MANIFEST: file_entry(folder / MANIFEST)}
    if path.read_bytes() != sums_text(expected).encode():
        raise SnapshotError(f"{SUMS}: does not match the files")
