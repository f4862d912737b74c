"""Snapshots: consistent, self-describing copies of the archive that outlive this program.

A snapshot is a folder `<snapshots>/<UTC stamp>[-<label>]/` (or the same folder as one
`.tar.gz`) holding `aggregator.db` (an online backup, never a file copy), `items.jsonl`
(every item with its revisions, exported from that backup), `feeds/` (the published
documents) and `manifest.json` (counts, versions, and the size and SHA-256 of every other
file), plus `SHA256SUMS` so `sha256sum -c` can check it by hand. It is written under a
temporary name and renamed when complete, so a half-written snapshot never looks like one.

    layout     names, resolving a name, listing, a snapshot's folder to read
    files      hashing while reading or copying, fsync
    manifest   what a snapshot promises: built, read and checked
    writing    create
    checking   verify
    restoring  restore
    pruning    prune

Long work reports progress to a plain callback (stage, done, total); drawing it is the
command line's business.
"""

from aggregator.snapshot.checking import verify, verify_folder
from aggregator.snapshot.layout import (
    DATABASE,
    FEEDS,
    ITEMS,
    MANIFEST,
    SUMS,
    TAR_SUFFIX,
    TEMP_PREFIX,
    Progress,
    SnapshotError,
    SnapshotInfo,
    info,
    list_snapshots,
    resolve,
    snapshot_name,
)
from aggregator.snapshot.pruning import prune
from aggregator.snapshot.restoring import RestoreReport, restore
from aggregator.snapshot.writing import create

__all__ = [
    "DATABASE",
    "FEEDS",
    "ITEMS",
    "MANIFEST",
    "SUMS",
    "TAR_SUFFIX",
    "TEMP_PREFIX",
    "Progress",
    "RestoreReport",
    "SnapshotError",
    "SnapshotInfo",
    "create",
    "info",
    "list_snapshots",
    "prune",
    "resolve",
    "restore",
    "snapshot_name",
    "verify",
    "verify_folder",
]
