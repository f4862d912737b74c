"""config.toml: every class of mistake stops the program with one line naming file and key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from aggregator import config as config_module
from aggregator.config import ConfigError, Selectors, choose_path, load

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


# --- check-config refuses what would fail later ----------------------------------------------

FEED_TITLE = 'title = "NATO partnerships"'
SUBTITLE = 'subtitle = "NATO news about its partners and partnership programmes"'
HUGE = "1" + "0" * 400  # TOML integers have no size limit; as a float this overflows


@pytest.mark.parametrize(
    ("old", "new", "key", "fragment"),
    [
        # durations that overflow the scheduler's or maintenance's date arithmetic
        ('interval = "30m"', 'interval = "3000000d"', "sources[0].interval", "at most 30d"),
        ('interval = "30m"', f'interval = "{HUGE}s"', "sources[0].interval", "at most 30d"),
        ('connect_timeout = "10s"', 'connect_timeout = "2h"', "fetch.connect_timeout", "1h"),
        ('read_timeout = "30s"', 'read_timeout = "90m"', "fetch.read_timeout", "at most 1h"),
        ('backoff_max = "6h"', 'backoff_max = "400d"', "fetch.backoff_max", "at most 30d"),
        ('jitter = "60s"', 'jitter = "30d"', "daemon.jitter", "at most 1d"),
        ('fetch_log_max_age = "90d"', 'fetch_log_max_age = "3000000d"', "daemon.fetch_log_max_age",
         "at most 3650d"),
        ('maintenance_interval = "1d"', 'maintenance_interval = "60d"',
         "daemon.maintenance_interval", "at most 30d"),
        # numbers that are no numbers, or absurd
        (SUBTITLE, SUBTITLE + "\nmin_score = nan", "feeds[0].min_score", "between 0 and 1000"),
        (SUBTITLE, SUBTITLE + "\nmin_score = inf", "feeds[0].min_score", "between 0 and 1000"),
        (SUBTITLE, SUBTITLE + f"\nmin_score = {HUGE}", "feeds[0].min_score", "between 0 and"),
        (SUBTITLE, SUBTITLE + "\nmin_score = -1.5", "feeds[0].min_score", "between 0 and 1000"),
        # text that a published XML document cannot hold
        (FEED_TITLE, 'title = "NATO\\u001b partnerships"', "feeds[0].title", "U+001B"),
        (SUBTITLE, 'subtitle = "News\\u0000"', "feeds[0].subtitle", "U+0000"),
        (FEED_TITLE, 'title = "NATO \\uFFFE"', "feeds[0].title", "U+FFFE"),
        ('title = "NATO News"', 'title = "NATO\\u0007News"', "sources[0].title", "U+0007"),
        ('base_url = "http://127.0.0.1:8080"', 'base_url = "http://127.0.0.1:8080/\\u0001"',
         "server.base_url", "U+0001"),
        ('base_url = "http://127.0.0.1:8080"', 'base_url = "http://127.0.0.1:8080/a b"',
         "server.base_url", "http or https URL"),
        ("topics.indo-pacific", 'topics."indo\\u0008pacific"', "topics", "U+0008"),
        ('description = "NATO\'s relations', 'description = "\\u001fNATO\'s relations',
         "topics.partnerships.description", "U+001F"),
        ('"Partnership for Peace"', '"Partnership\\u0003for Peace"',
         "lists.partnership_frameworks[0]", "U+0003"),
        # a header the HTTP client would refuse on every poll
        ('user_agent_contact = "https://github.com/', 'user_agent_contact = "https://x.org/\\n',
         "fetch.user_agent_contact", "http or https URL"),
    ],
)  # fmt: skip
def test_check_config_refuses_what_would_fail_later(project, old, new, key, fragment):
    project.replace_in_config(old, new)
    result = project.cli("check-config", check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{project.config}: {key}: "), line
    assert fragment in line, line
    assert line.isprintable(), line  # no control character reaches the terminal


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('interval = "30m"', 'interval = "30d"'),
        ('connect_timeout = "10s"', 'connect_timeout = "1h"'),
        ('backoff_max = "6h"', 'backoff_max = "30d"'),
        ('jitter = "60s"', 'jitter = "1d"'),
        ('fetch_log_max_age = "90d"', 'fetch_log_max_age = "3650d"'),
        (SUBTITLE, SUBTITLE + "\nmin_score = 1000"),
        (FEED_TITLE, 'title = "NATO\\tpartnerships\\nand friends"'),  # XML holds tab and LF
    ],
)
def test_check_config_accepts_the_ceilings_themselves(project, old, new):
    project.replace_in_config(old, new)
    assert project.cli("check-config").returncode == 0


def test_a_file_nested_too_deeply_is_one_line_not_a_traceback(project):
    project.write_config("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    result = project.cli("check-config", check=False)
    assert result.returncode == 2
    assert result.stderr == f"{project.config}: not valid TOML: nested too deeply\n"


# --- source kinds (issue 13) ----------------------------------------------------------------

HTML_SOURCE = """
[[sources]]
id = "nato-listing"
title = "NATO news (listing page)"
url = "https://www.nato.int/en/news-and-events/articles/news"
kind = "html"
interval = "1h"
[sources.selectors]
item = "div.news-card"
title = "h3"
link = "h3 a"
date = "time"
summary = "p.summary"
"""


def test_an_html_source_carries_its_selectors(tmp_path):
    config = load(write(tmp_path, BASE + HTML_SOURCE))
    feed, listing = config.sources
    assert (feed.kind, feed.selectors) == ("feed", None)
    assert listing.kind == "html"
    assert listing.selectors == Selectors("div.news-card", "h3", "h3 a", "time", "p.summary")


@pytest.mark.parametrize(
    ("old", "new", "key", "fragment"),
    [
        ('kind = "html"', 'kind = "pdf"', "sources[1].kind", 'must be "feed" or "html"'),
        ('item = "div.news-card"', 'item = "div["', "sources[1].selectors.item", "CSS selector"),
        ('link = "h3 a"\n', "", "sources[1].selectors.link", "is required"),
        ('summary = "p.summary"', 'summery = "p"', "sources[1].selectors.summery", "unknown key"),
        ('title = "h3"\nlink', 'title = ""\nlink', "sources[1].selectors.title", "empty"),
        ('kind = "html"\n', "", "sources[1].selectors", 'only for kind = "html"'),
    ],
)
def test_each_html_source_mistake_names_its_key(tmp_path, old, new, key, fragment):
    assert old in HTML_SOURCE
    error = error_for(tmp_path, BASE + HTML_SOURCE.replace(old, new))
    assert error.key == key and fragment in str(error)


def test_an_html_source_needs_its_selectors(tmp_path):
    text = BASE + HTML_SOURCE.split("[sources.selectors]")[0]
    error = error_for(tmp_path, text)
    assert error.key == "sources[1].selectors" and 'required for kind = "html"' in str(error)


def test_the_shipped_config_s_commented_html_source_loads_once_uncommented(tmp_path):
    text = (Path(__file__).parent.parent / "config.toml").read_text(encoding="utf-8")
    start = text.index('# [[sources]]\n# id = "nato-listing"')
    block = text[start:].split("\n\n")[0]
    enabled = text.replace(block, "\n".join(line[2:] for line in block.splitlines()))
    listing = load(write(tmp_path, enabled)).sources[1]
    assert (listing.id, listing.kind) == ("nato-listing", "html")
    assert listing.selectors == Selectors("div.news-card", "h3", "h3 a", "time", "p.summary")


def test_a_feed_naming_a_topic_that_does_not_exist_is_refused(tmp_path):
    text = BASE + '[[feeds]]\nslug = "x"\ntitle = "X"\ntopics = ["partnerships"]\n'
    error = error_for(tmp_path, text)
    assert error.key == "feeds[0].topics"
    assert 'no topic "partnerships" is defined (topics: none)' in str(error)


# --- one place for every key -------------------------------------------------------------------

TYPED = {
    "archive": config_module.ArchiveConfig,
    "server": config_module.ServerConfig,
    "fetch": config_module.FetchConfig,
    "daemon": config_module.DaemonConfig,
    "capture": config_module.CaptureConfig,
    "sources[]": config_module.SourceConfig,
    "sources[].selectors": Selectors,
    "feeds[]": config_module.FeedConfig,
}


@pytest.mark.parametrize("section", TYPED)
def test_each_table_of_settings_is_a_typed_value_with_no_defaults_of_its_own(section):
    """The keys, checks and defaults live in config.py's tables (SECTIONS); the typed values
    carry exactly those keys, and a default only where it is the table's (an optional
    selector: None)."""
    schema, fields = config_module.SECTIONS[section], dataclasses.fields(TYPED[section])
    assert [field.name for field in fields] == list(schema)
    for field in fields:
        assert field.default_factory is dataclasses.MISSING
        if field.default is not dataclasses.MISSING:
            assert field.default == schema[field.name].default is None


def test_the_default_capture_settings_are_the_tables():
    capture = config_module.Config.__dataclass_fields__["capture"].default_factory()
    assert dataclasses.asdict(capture) == {
        **config_module.defaults(config_module.CAPTURE),
        "warc": Path("archive/pages.warc.gz"),
    }
