"""config.toml: every class of mistake stops the program with one line naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.config import ConfigError, choose_path, load

BASE = """
[[sources]]
id = "nato-news"
title = "NATO News"
url = "https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml"
interval = "30m"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_for(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text))
    return caught.value


def test_the_shipped_config_is_valid():
    config = load(Path(__file__).parent.parent / "config.toml")
    assert config.sources[0].url == "https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml"
    assert config.sources[0].interval == 1800
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert {"partnerships", "all"} <= {feed.slug for feed in config.feeds}


def test_defaults_and_relative_paths_resolve_from_the_config_folder(tmp_path):
    config = load(write(tmp_path, BASE))
    assert config.archive.database == tmp_path / "archive" / "aggregator.db"
    assert config.server.feeds_dir == tmp_path / "feeds"
    assert config.fetch.max_bytes == 10_000_000
    assert config.feeds == ()


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        (BASE.replace('"30m"', '"soon"'), "sources[0].interval", 'like "15m", got "soon"'),
        (BASE.replace('"30m"', '"-5m"'), "sources[0].interval", "duration"),
        (BASE.replace('"30m"', "30"), "sources[0].interval", "got 30"),
        (BASE.replace("https://www.nato.int", "ftp://www.nato.int"), "sources[0].url", "http"),
        (BASE.replace('url = "https', 'url = "not a url'), "sources[0].url", "URL"),
        (BASE + 'colour = "red"\n', "sources[0].colour", "unknown key"),
        (BASE + "[server]\nport = 70000\n", "server.port", "between 1 and 65535"),
        (BASE + '[server]\nport = "8080"\n', "server.port", "whole number"),
        (BASE + "[archive]\ndatabase = 5\n", "archive.database", "string"),
        (BASE + "[nonsense]\n", "nonsense", "unknown key"),
        (BASE + "[fetch]\nallow_fast_polling = 1\n", "fetch.allow_fast_polling", "true or false"),
        (BASE + BASE, "sources[1].id", 'duplicate "nato-news"'),
        (BASE.replace('id = "nato-news"', 'id = "seed"'), "sources[0].id", "reserved"),
        (BASE.replace('id = "nato-news"', 'id = "NATO News"'), "sources[0].id", "lower-case"),
        (BASE.replace('title = "NATO News"\n', ""), "sources[0].title", "required"),
        (BASE.replace('"30m"', '"5m"'), "sources[0].interval", "allow_fast_polling"),
        ('[[feeds]]\nslug = "x"\ntitle = "X"\nlimit = 0\n', "feeds[0].limit", "between"),
        ("sources = 3\n", "sources", "array of tables"),
    ],
)
def test_each_mistake_names_file_and_key(tmp_path, text, key, fragment):
    error = error_for(tmp_path, text)
    line = str(error)
    assert "\n" not in line
    assert line.startswith(f"{tmp_path / 'config.toml'}: {key}: "), line
    assert fragment in line


def test_missing_file_and_broken_toml(tmp_path):
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=r"absent\.toml: file not found"):
        load(missing)
    error = error_for(tmp_path, "[server\nport = 1")
    assert "not valid TOML" in str(error)


def test_fast_polling_is_allowed_for_loopback_or_with_the_flag(tmp_path):
    loopback = BASE.replace('"30m"', '"10s"').replace(
        "https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml", "http://127.0.0.1:9/f"
    )
    assert load(write(tmp_path, loopback)).sources[0].interval == 10
    flagged = BASE.replace('"30m"', '"5m"') + "[fetch]\nallow_fast_polling = true\n"
    assert load(write(tmp_path, flagged)).sources[0].interval == 300


def test_config_path_precedence(monkeypatch):
    monkeypatch.setenv("AGGREGATOR_CONFIG", "/etc/from-env.toml")
    assert choose_path("cli.toml") == Path("cli.toml")
    assert choose_path(None) == Path("/etc/from-env.toml")
    monkeypatch.delenv("AGGREGATOR_CONFIG")
    assert choose_path(None) == Path("config.toml")


def test_jitter_may_be_zero_but_intervals_may_not(tmp_path):
    assert load(write(tmp_path, BASE + '[daemon]\njitter = "0s"\n')).daemon.jitter == 0
    error = error_for(tmp_path, BASE.replace('"30m"', '"0s"'))
    assert error.key == "sources[0].interval" and "positive" in str(error)
