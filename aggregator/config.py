"""Every configuration key in one place: its type, default, check and documentation.

`load(path)` reads a TOML file and returns a frozen `Config`, or raises `ConfigError`
whose message is one line naming the file and the key. Nothing else in the program
reads the TOML file. README.md documents the same keys; a test keeps the two in step.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aggregator.errors import ConfigurationError
from aggregator.xmlchars import xml_safe

DEFAULT_PATH = "config.toml"
ENV_VAR = "AGGREGATOR_CONFIG"


class ConfigError(ConfigurationError):
    """A configuration problem; str() is the one line shown to the user."""

    def __init__(self, file: str, key: str, message: str):
        self.file, self.key, self.message = file, key, message
        line = f"{file}: {key}: {message}" if key else f"{file}: {message}"
        super().__init__(printable(line))


def printable(text: str) -> str:
    """`text` with each character a terminal would act on (a newline, an ESC) escaped, so that
    an error quoting a bad value is still one harmless line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# --- value checks -------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90s', '15m', '1h', '2d' -> seconds. Raises ValueError otherwise."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f'must be a duration like "15m", got "{text}"')
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _duration_up_to(ceiling: str, zero: bool = False) -> Callable[[Any], float]:
    """A duration check: positive (or zero, if `zero`) and at most `ceiling`.

    Every duration has a ceiling: a duration beyond it is a typo or a wrong unit, and the
    program adds durations to dates, which overflow ("3000000d" failed every poll)."""
    most = parse_duration(ceiling)

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, str):
            raise ValueError(f'must be a duration like "15m", got {_show(value)}')
        seconds = parse_duration(value)
        if seconds == 0 and not zero:
            raise ValueError(f'must be a positive duration like "15m", got "{value}"')
        if seconds > most:
            raise ValueError(f"must be at most {ceiling}, got {_show(value)}")
        return seconds

    return check


def _show(value: Any) -> str:
    text = f'"{value}"' if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _http_url(value: Any) -> str:
    # No space or control character: the URL goes into links of published XML, and the
    # contact URL into the User-Agent header, where a newline fails every request.
    if not isinstance(value, str) or any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(f"must be an http or https URL, got {_show(value)}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http or https URL, got {_show(value)}")
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {_show(value)}")
    return value


def _nonempty(value: Any) -> str:
    if not _string(value).strip():
        raise ValueError("must not be empty")
    return value


def _slug(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", value):
        raise ValueError(f"must be lower-case letters, digits and dashes, got {_show(value)}")
    return value


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            names = " or ".join(f'"{choice}"' for choice in choices)
            raise ValueError(f"must be {names}, got {_show(value)}")
        return value

    return check


def _table(value: Any) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"must be a table, got {_show(value)}")
    return value


def _css(value: Any) -> str:
    """A CSS selector the listing parser (selectolax) can run."""
    from selectolax.lexbor import LexborHTMLParser, SelectolaxError

    text = _nonempty(value)
    try:
        LexborHTMLParser("<p></p>").css(text)
    except (SelectolaxError, ValueError):
        raise ValueError(f"is not a CSS selector this program can use: {_show(text)}") from None
    return text


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {_show(value)}")
    return value


def _int_range(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number, got {_show(value)}")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value

    return check


def _number_range(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, got {_show(value)}")
        if not low <= value <= high:  # also refuses nan and inf, before float() can overflow
            raise ValueError(f"must be between {low:g} and {high:g}, got {_show(value)}")
        return float(value)

    return check


def _string_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"must be a list of strings, got {_show(value)}")
    return tuple(value)


@dataclass(frozen=True)
class Setting:
    """One key: its check (which also converts), its default (None = required), its doc."""

    check: Callable[[Any], Any]
    default: Any = None
    doc: str = ""
    required: bool = False


# --- the table of settings -----------------------------------------------------------------

# Ceilings of durations. Beyond them a value is a typo or a wrong unit, never a wish.
MAX_TIMEOUT = "1h"  # connect/read: a server silent for an hour is down; fail and back off
MAX_REST = "30d"  # poll interval, back-off, maintenance: rarer than monthly is `enabled = false`
MAX_JITTER = "1d"  # it is also cut to a tenth of the source's interval, itself at most 30d
MAX_LOG_AGE = "3650d"  # ten years of fetch log; older than that is not an operational record
# Scores add rule weights (the shipped ones are 1 to 3), so no useful score comes near this.
MAX_SCORE = 1000

ARCHIVE = {
    "database": Setting(_nonempty, "archive/aggregator.db", "SQLite archive file"),
    "seeds": Setting(_nonempty, "archive/seed", "folder of seeded article text files"),
    "snapshots": Setting(_nonempty, "archive/snapshots", "folder where snapshots are written"),
}
SERVER = {
    "host": Setting(_nonempty, "127.0.0.1", "address the HTTP server binds to"),
    "port": Setting(_int_range(1, 65535), 8080, "TCP port of the HTTP server"),
    "base_url": Setting(
        _http_url, "http://127.0.0.1:8080", "public URL of the server: self links and feed ids"
    ),
    "feeds_dir": Setting(_nonempty, "feeds", "folder publish writes to and serve reads from"),
    "cache_max_age": Setting(
        _int_range(0, 86400), 300, "seconds in Cache-Control: public, max-age for feeds"
    ),
    "publish_overdue": Setting(
        _duration_up_to(MAX_REST),
        3600.0,
        "/healthz answers 503 when a publish has been owed this long",
    ),
}
FETCH = {
    "user_agent_contact": Setting(
        _http_url,
        "https://github.com/nato-partnership-aggregator/aggregator",
        "contact URL sent in the User-Agent",
    ),
    "connect_timeout": Setting(_duration_up_to(MAX_TIMEOUT), 10.0, "TCP/TLS connect timeout"),
    "read_timeout": Setting(
        _duration_up_to(MAX_TIMEOUT), 30.0, "timeout between bytes of a response"
    ),
    "max_bytes": Setting(
        _int_range(1024, 1 << 31), 10_000_000, "response size cap, after decompression"
    ),
    "max_entries": Setting(
        _int_range(1, 1_000_000),
        5000,
        "entries read from one document; the rest are dropped and the poll says so",
    ),
    "backoff_max": Setting(
        _duration_up_to(MAX_REST), 21600.0, "ceiling of the exponential error back-off"
    ),
    "allow_fast_polling": Setting(_bool, False, "allow intervals under 15m for non-loopback hosts"),
    "allow_private_addresses": Setting(
        _bool,
        False,
        "let article links and redirects reach private, loopback and link-local addresses",
    ),
}
CAPTURE = {
    "enabled": Setting(_bool, True, "the daemon captures the article behind each new item"),
    "every": Setting(_duration_up_to(MAX_REST), 60.0, "how often the daemon works the queue"),
    "batch": Setting(_int_range(1, 10_000), 20, "captures at most this many per daemon run"),
    "per_host_interval": Setting(
        _duration_up_to(MAX_TIMEOUT), 2.0, "pause between two capture requests to one host"
    ),
    "max_attempts": Setting(_int_range(1, 100), 4, "failed captures before one is given up"),
    "warc": Setting(_nonempty, "archive/pages.warc.gz", "WARC file every capture is added to"),
}
DAEMON = {
    "jitter": Setting(
        _duration_up_to(MAX_JITTER, zero=True),
        60.0,
        "random delay added to each poll, at most this long",
    ),
    "fetch_log_max_age": Setting(
        _duration_up_to(MAX_LOG_AGE), 90 * 86400.0, "maintenance trims older fetch log rows"
    ),
    "maintenance_interval": Setting(
        _duration_up_to(MAX_REST), 86400.0, "how often maintenance runs"
    ),
}
SELECTORS = {
    "item": Setting(_css, required=True, doc="CSS selector of one element per story"),
    "title": Setting(_css, required=True, doc="in an item: the element whose text is the title"),
    "link": Setting(_css, required=True, doc="in an item: the element whose href is the link"),
    "date": Setting(_css, None, "in an item: its datetime attribute, else its text"),
    "summary": Setting(_css, None, "in an item: the element whose text is the summary"),
}
SOURCE_KINDS = ("feed", "html")
SOURCE = {
    "id": Setting(_slug, required=True, doc="stable identifier of the source"),
    "title": Setting(_nonempty, required=True, doc="human-readable name"),
    "url": Setting(_http_url, required=True, doc="feed URL (http or https)"),
    "kind": Setting(
        _one_of(SOURCE_KINDS), "feed", "feed (RSS, Atom, JSON Feed) or html (a listing page)"
    ),
    "selectors": Setting(
        _table, None, 'for kind = "html": where the listing page keeps its stories'
    ),
    "interval": Setting(_duration_up_to(MAX_REST), 1800.0, "poll interval"),
    "enabled": Setting(_bool, True, "false keeps the source's items but stops polling it"),
    "allow_private_addresses": Setting(
        _bool, False, "this source's redirects and article links may reach private addresses"
    ),
}
FEED = {
    "slug": Setting(_slug, required=True, doc="file name and URL path of the feed"),
    "title": Setting(_nonempty, required=True, doc="feed title"),
    "subtitle": Setting(_string, "", "feed subtitle"),
    "topics": Setting(_string_list, (), "topics whose items the feed carries; empty = every item"),
    "min_score": Setting(
        _number_range(0, MAX_SCORE), 0.0, "minimum topic score (0 = the topic's own threshold)"
    ),
    "limit": Setting(_int_range(1, 1000), 50, "entries in the current document"),
}

# Every table of settings, by where it sits in config.toml ("[]": in each table of the array).
SECTIONS = {
    "archive": ARCHIVE,
    "server": SERVER,
    "fetch": FETCH,
    "daemon": DAEMON,
    "capture": CAPTURE,
    "sources[]": SOURCE,
    "sources[].selectors": SELECTORS,
    "feeds[]": FEED,
}
FREE_FORM = ("topics", "lists")  # checked by their own rules (classify.load_topics, _lists)


def defaults(schema: dict[str, Setting]) -> dict[str, Any]:
    """Each key of a table of settings with its default: the only place defaults live."""
    return {key: setting.default for key, setting in schema.items()}


MIN_REMOTE_INTERVAL = 15 * 60
RESERVED_SOURCE_ID = "seed"  # the pseudo-source of the seeded articles


# --- the typed result ------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveConfig:
    database: Path
    seeds: Path
    snapshots: Path


@dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int
    base_url: str
    feeds_dir: Path
    cache_max_age: int
    publish_overdue: float


@dataclass(frozen=True)
class FetchConfig:
    user_agent_contact: str
    connect_timeout: float
    read_timeout: float
    max_bytes: int
    max_entries: int
    backoff_max: float
    allow_fast_polling: bool
    allow_private_addresses: bool


@dataclass(frozen=True)
class CaptureConfig:
    enabled: bool
    every: float
    batch: int
    per_host_interval: float
    max_attempts: int
    warc: Path

    @classmethod
    def default(cls) -> CaptureConfig:
        return cls(**{**defaults(CAPTURE), "warc": Path(CAPTURE["warc"].default)})


@dataclass(frozen=True)
class DaemonConfig:
    jitter: float
    fetch_log_max_age: float
    maintenance_interval: float


@dataclass(frozen=True, slots=True)
class Selectors:
    """Where an html source's listing page keeps its stories; all but `item` are looked
    up inside an item."""

    item: str
    title: str
    link: str
    date: str | None = None
    summary: str | None = None


@dataclass(frozen=True)
class SourceConfig:
    id: str
    title: str
    url: str
    kind: str
    selectors: Selectors | None
    interval: float
    enabled: bool
    allow_private_addresses: bool


@dataclass(frozen=True)
class FeedConfig:
    slug: str
    title: str
    subtitle: str
    topics: tuple[str, ...]
    min_score: float
    limit: int


@dataclass(frozen=True)
class Config:
    path: Path
    archive: ArchiveConfig
    server: ServerConfig
    fetch: FetchConfig
    daemon: DaemonConfig
    sources: tuple[SourceConfig, ...]
    feeds: tuple[FeedConfig, ...]
    topics: dict[str, Any] = field(default_factory=dict)  # validated by classify.load_topics
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)
    capture: CaptureConfig = field(default_factory=CaptureConfig.default)

    def source(self, source_id: str) -> SourceConfig | None:
        return next((s for s in self.sources if s.id == source_id), None)

    def private_ok(self, source_id: str) -> bool:
        """May fetches for this source (its redirects, its articles) reach private addresses."""
        source = self.source(source_id)
        allowed = source is not None and source.allow_private_addresses
        return allowed or self.fetch.allow_private_addresses


# --- loading ---------------------------------------------------------------------------------


def choose_path(option: str | None) -> Path:
    """--config beats $AGGREGATOR_CONFIG beats ./config.toml."""
    return Path(option or os.environ.get(ENV_VAR) or DEFAULT_PATH)


def load(path: Path | str) -> Config:
    path = Path(path)
    name = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(name, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(name, "", f"cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, "", f"not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(name, "", "not valid TOML: nested too deeply") from None
    return _build(raw, path)


_TOP_LEVEL = {section.split("[")[0].split(".")[0] for section in SECTIONS} | set(FREE_FORM)


def _build(raw: dict[str, Any], path: Path) -> Config:
    name = str(path)
    for key in raw:
        if key not in _TOP_LEVEL:
            raise ConfigError(name, key, "unknown key")
    _check_text(raw, "", name)
    base = path.resolve().parent
    archive = _section(raw, "archive", ARCHIVE, name)
    server = _section(raw, "server", SERVER, name)
    fetch = _section(raw, "fetch", FETCH, name)
    daemon = _section(raw, "daemon", DAEMON, name)
    capture = _section(raw, "capture", CAPTURE, name)
    sources = tuple(_source(t, i, name) for i, t in enumerate(_tables(raw, "sources", name)))
    feeds = tuple(_array(raw, "feeds", FEED, name, FeedConfig))
    lists = _lists(raw.get("lists", {}), name)
    topics = raw.get("topics", {})
    if not isinstance(topics, dict):
        raise ConfigError(name, "topics", "must be a table of topics")
    _unique(sources, "sources", "id", name)
    _unique(feeds, "feeds", "slug", name)
    for index, source in enumerate(sources):
        if source.id == RESERVED_SOURCE_ID:
            message = '"seed" is reserved for the seeded articles'
            raise ConfigError(name, f"sources[{index}].id", message)
        _check_interval(source, index, fetch["allow_fast_polling"], name)
    config = Config(
        path=path,
        archive=ArchiveConfig(**{k: _resolve(base, v) for k, v in archive.items()}),
        server=ServerConfig(**{**server, "feeds_dir": _resolve(base, server["feeds_dir"])}),
        fetch=FetchConfig(**fetch),
        daemon=DaemonConfig(**daemon),
        capture=CaptureConfig(**{**capture, "warc": _resolve(base, capture["warc"])}),
        sources=sources,
        feeds=feeds,
        topics=topics,
        lists=lists,
    )
    _check_topics(config, name)
    return config


def _check_text(value: Any, where: str, name: str) -> None:
    """Every string of the file, its keys too, must be text XML can hold: titles, topic names
    and URLs end up in published documents, where one ESC would make each of them unwritable.
    `xml_safe` is the one definition of that text, the same one every parsed entry passes."""
    if isinstance(value, str):
        if bad := _not_xml(value):
            raise ConfigError(name, where, f"contains {bad}, which XML cannot hold")
    elif isinstance(value, dict):
        for key, inner in value.items():
            if bad := _not_xml(key):
                raise ConfigError(name, where, f'key "{key}" contains {bad}, which XML cannot hold')
            _check_text(inner, f"{where}.{key}" if where else key, name)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _check_text(inner, f"{where}[{index}]", name)


def _not_xml(text: str) -> str | None:
    """The first character of `text` that XML cannot hold, as "U+001B"; None if there is none."""
    if xml_safe(text) == text:
        return None
    return next(f"U+{ord(c):04X}" for c in text if xml_safe(c) != c)


def _check_topics(config: Config, name: str) -> None:
    """Topics are validated by classify, which owns their grammar."""
    from aggregator import classify  # on load, not import: `--help` needs no rules

    try:
        classify.validate_config(config)
    except classify.TopicError as exc:
        raise ConfigError(name, exc.key, exc.message) from None
    for index, feed in enumerate(config.feeds):
        unknown = [topic for topic in feed.topics if topic not in config.topics]
        if unknown:  # the feed would stay empty for ever, saying nothing
            known = ", ".join(f'"{topic}"' for topic in config.topics) or "none"
            message = f'no topic "{unknown[0]}" is defined (topics: {known})'
            raise ConfigError(name, f"feeds[{index}].topics", message)


def _resolve(base: Path, value: str) -> Path:
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else base / candidate


def _values(table: Any, where: str, schema: dict[str, Setting], name: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(name, where, "must be a table")
    for key in table:
        if key not in schema:
            raise ConfigError(name, f"{where}.{key}", "unknown key")
    values = {}
    for key, setting in schema.items():
        if key not in table:
            if setting.required:
                raise ConfigError(name, f"{where}.{key}", "is required")
            values[key] = setting.default
            continue
        try:
            values[key] = setting.check(table[key])
        except ValueError as exc:
            raise ConfigError(name, f"{where}.{key}", str(exc)) from None
    return values


def _section(raw: dict, key: str, schema: dict[str, Setting], name: str) -> dict[str, Any]:
    return _values(raw.get(key, {}), key, schema, name)


def _array(raw: dict, key: str, schema: dict[str, Setting], name: str, kind: type) -> list:
    tables = _tables(raw, key, name)
    return [kind(**_values(t, f"{key}[{i}]", schema, name)) for i, t in enumerate(tables)]


def _tables(raw: dict, key: str, name: str) -> list:
    tables = raw.get(key, [])
    if not isinstance(tables, list):
        raise ConfigError(name, key, f"must be an array of tables ([[{key}]])")
    return tables


def _source(table: Any, index: int, name: str) -> SourceConfig:
    where = f"sources[{index}]"
    values = _values(table, where, SOURCE, name)
    given = values["selectors"]
    if values["kind"] == "html" and given is None:
        raise ConfigError(name, f"{where}.selectors", 'is required for kind = "html"')
    if values["kind"] != "html" and given is not None:
        raise ConfigError(name, f"{where}.selectors", 'is only for kind = "html"')
    if given is not None:
        values["selectors"] = Selectors(**_values(given, f"{where}.selectors", SELECTORS, name))
    return SourceConfig(**values)


def _unique(values: tuple, where: str, attr: str, name: str) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        ident = getattr(value, attr)
        if ident in seen:
            raise ConfigError(name, f"{where}[{index}].{attr}", f'duplicate "{ident}"')
        seen.add(ident)


def _lists(raw: Any, name: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise ConfigError(name, "lists", "must be a table of named lists")
    result = {}
    for key, value in raw.items():
        try:
            result[key] = _string_list(value)
        except ValueError as exc:
            raise ConfigError(name, f"lists.{key}", str(exc)) from None
    return result


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _check_interval(source: SourceConfig, index: int, allow_fast: bool, name: str) -> None:
    if source.interval < MIN_REMOTE_INTERVAL and not allow_fast and not is_loopback(source.url):
        raise ConfigError(
            name,
            f"sources[{index}].interval",
            "polling a remote host more often than every 15m needs fetch.allow_fast_polling = true",
        )
