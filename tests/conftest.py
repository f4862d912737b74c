"""Shared fixtures: a project copy in tmp_path, the CLI in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.feedserver import feed_server  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SEEDS = ROOT / "archive" / "seed"


def table_counts(archive) -> dict[str, int]:
    """Rows in each table of an open archive, the full-text index's included."""
    return {name: archive.db[name].count for name in archive.db.table_names()}


@dataclass
class Project:
    """A throwaway copy of the project's runtime files: config.toml, seeds, feeds/."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def database(self) -> Path:
        return self.root / "archive" / "aggregator.db"

    @property
    def feeds(self) -> Path:
        return self.root / "feeds"

    def write_config(self, text: str) -> Path:
        self.config.write_text(text, encoding="utf-8")
        return self.config

    def replace_in_config(self, old: str, new: str) -> None:
        text = self.config.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in config"
        self.config.write_text(text.replace(old, new), encoding="utf-8")

    def cli(self, *args: str, check: bool = True, timeout: float = 60, env=None):
        return run_cli(
            "--config",
            str(self.config),
            *args,
            check=check,
            timeout=timeout,
            env=env,
            cwd=self.root,
        )


def run_cli(*args: str, check: bool = True, timeout: float = 60, env=None, cwd=None):
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("AGGREGATOR_CONFIG", None) if "AGGREGATOR_CONFIG" not in (env or {}) else None
    result = subprocess.run(
        [sys.executable, "-m", "aggregator", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"aggregator {' '.join(args)} exited {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return result


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "project"
    (root / "archive").mkdir(parents=True)
    shutil.copytree(SEEDS, root / "archive" / "seed")
    shutil.copy(ROOT / "config.toml", root / "config.toml")
    (root / "feeds").mkdir()
    return Project(root)
