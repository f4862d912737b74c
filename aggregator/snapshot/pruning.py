"""Pruning: all but the newest snapshots removed, and the temporary folders of dead runs."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from aggregator.snapshot.layout import TEMP_PREFIX, SnapshotError, alive, base_name, entries

_TEMP = re.compile(r"^\.tmp-.*-(\d+)-[a-z0-9_]+(?:\.tar\.gz)?$")  # the PID is the group


def prune(snapshots: Path, keep: int) -> list[str]:
    """Remove all but the newest `keep` snapshots (and temporary folders of dead runs);
    returns the names of the snapshots removed."""
    if keep < 1:
        raise SnapshotError("--keep must be at least 1 (delete the folder to remove them all)")
    snapshots = Path(snapshots)
    doomed = entries(snapshots)[:-keep]
    names = [base_name(path) for path in doomed]
    for path in [*doomed, *_stale_temporaries(snapshots)]:
        _remove(path)
    return names


def _remove(path: Path) -> None:
    """Rename first, so a half-deleted snapshot never looks like a snapshot."""
    doomed = path.with_name(f"{TEMP_PREFIX}{path.name}-{os.getpid()}-deleting")
    os.rename(path, doomed)
    if doomed.is_dir():
        shutil.rmtree(doomed)
    else:
        doomed.unlink()


def _stale_temporaries(snapshots: Path) -> list[Path]:
    if not snapshots.is_dir():
        return []
    return [
        path
        for path in snapshots.iterdir()
        if (match := _TEMP.match(path.name)) and not alive(int(match.group(1)))
    ]
