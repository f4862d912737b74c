"""The errors a user sees: one hierarchy, so the command line and the daemon catch one class.

Every error the program expects derives from `AggregatorError`: str() is the one line shown to
the user and `exit_status` the command's exit status. Anything else that escapes is a bug, and
the command line says so. Stages keep their own classes (`ConfigError`, `FeedError`,
`PublishError`, `SnapshotError`, `LockHeld`, ...), each derived from one class here.
"""

from __future__ import annotations


class AggregatorError(Exception):
    """An expected failure; str() is the one line for the user."""

    exit_status = 1


class ConfigurationError(AggregatorError):
    """The configuration file is missing, unreadable or wrong."""

    exit_status = 2


class UsageError(AggregatorError):
    """A command was asked for what cannot be: a feed, item or source that is not there, a file
    it cannot read, an address it cannot listen on."""


class SourceError(AggregatorError):
    """One source failed (its fetch or its document); the others go on."""


class ArchiveError(AggregatorError):
    """The archive cannot be opened, read or written."""


class ArchiveBusy(ArchiveError):
    """Another program held the archive's write lock for longer than we wait."""


class ArchiveDamaged(ArchiveError):
    """The archive file is not a sound SQLite database."""


class DiskFull(ArchiveError):
    """A write did not fit on the disk (SQLITE_FULL); nothing of its transaction is stored."""


class SearchError(UsageError):
    """A full-text query that cannot be searched (what the person typed, or what SQLite read)."""
