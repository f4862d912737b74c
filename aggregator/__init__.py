"""Follows NATO's news feed, archives every item and republishes partnership feeds."""

# The one place the version is written: pyproject.toml reads it (dynamic version), so a
# command does not pay importlib.metadata's ~40 ms at every start to look it up.
__version__ = "0.1.0"
