"""Follows NATO's news feed, archives every item and republishes partnership feeds."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nato-partnership-aggregator")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
