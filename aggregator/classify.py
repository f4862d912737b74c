"""Scores items against the topics in config.toml (filled in by the publishing issue)."""

from __future__ import annotations

from typing import Any

from aggregator.config import ConfigError


def validate_config(config: Any, name: str) -> None:
    for topic, table in config.topics.items():
        if not isinstance(table, dict):
            raise ConfigError(name, f"topics.{topic}", "must be a table")
