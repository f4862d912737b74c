"""Scores items against the topics in config.toml and says which rules fired.

A topic is a threshold, field weights and weighted rules. A rule fires at most once per field
(title, summary, content) and adds `rule weight x field weight` to the item's score; the item is
in the topic when its score reaches the threshold. Rules match phrases (case-insensitive, whole
words, plural forms), named lists of phrases from `[lists]`, or regular expressions. Exclusions
("industry partners") take their words away so that no rule counts them.

Where matches overlap, the one that starts first wins, then the longest: "Partnership for Peace"
counts once, for the rule that lists it, and never again as the word "partnership".

Regular expressions run on the `regex` engine with a time limit: a rule whose expression runs
longer on an item (one that backtracks exponentially, like "(a|a)+$") counts as not matched for
that item, and classifying goes on.

Pure functions, no SQL; the one side effect is the warning `score_item` logs for such a rule.
`validate_config` is called by `aggregator.config` while loading, which turns `TopicError` into
its ConfigError naming the file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from aggregator.errors import ConfigurationError
from aggregator.models import Item, TopicScore

if TYPE_CHECKING:
    import regex

log = logging.getLogger("aggregator.classify")

# Bump when matching or scoring changes meaning, so stored scores are recomputed.
GRAMMAR_VERSION = 1

FIELDS = ("title", "summary", "content")
DEFAULT_FIELD_WEIGHTS = {"title": 3.0, "summary": 1.5, "content": 0.5}
TOPIC_KEYS = ("description", "threshold", "fields", "caps", "exclude", "exclude_regex", "rules")
RULE_KEYS = (
    "name", "weight", "exclude", "phrases", "lists", "regex", "fields", "case_sensitive", "plurals",
)  # fmt: skip
EXCLUDE = "exclude"
CAP = "cap"
# Thresholds, weights and caps: the shipped ones are 0.5 to 4; beyond this a number is a typo.
MAX_WEIGHT = 1000
# How long one expression may search one field of one item. Sound expressions search megabytes
# of text in milliseconds; this bounds the others, which hold the archive's lock meanwhile.
REGEX_TIMEOUT = 0.25  # seconds

# Spaces and hyphens in a phrase match any run of whitespace, hyphens and dashes, so
# "NATO-Ukraine Council", "NATO–Ukraine Council" and "NATO Ukraine Council" are one phrase.
_SEPARATORS = "\\s\\-\u2010\u2011\u2012\u2013\u2014"
_SEPARATOR_RUN = re.compile(f"[{_SEPARATORS}]+")
_APOSTROPHES = "'\u2019"


# --- the compiled form ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    weight: float  # 0 for exclusions
    fields: frozenset[str]


@dataclass(frozen=True, slots=True)
class FieldText:
    """A field's text and its lower-case form, made once per item for every topic."""

    original: str
    lower: str | None  # None when lower-casing changes the length: then search ignoring case

    @classmethod
    def of(cls, text: str) -> FieldText:
        lower = text.lower()
        return cls(text, lower if len(lower) == len(text) else None)


class Candidate(NamedTuple):
    """Where phrases may start in a text: each possible end (a word end) with the words
    between, as case-sensitive rules compare them and in lower case."""

    start: int
    keys: tuple[tuple[int, str, str], ...]  # (end, exact key, lower-case key), longest first


@dataclass(frozen=True, slots=True)
class PhraseIndex:
    """The phrases of every topic in one regex, so that a text is searched once for all.

    It searches the lower-cased text: without re.IGNORECASE the engine skips ahead quickly.
    A match is a non-word character (texts get a leading space), then the longest phrase.
    """

    pattern: re.Pattern[str]
    ignoring_case: re.Pattern[str]  # for texts whose lower-case form has another length

    def candidates(self, text: FieldText) -> list[Candidate]:
        haystack = text.original if text.lower is None else text.lower
        pattern = self.ignoring_case if text.lower is None else self.pattern
        padded = " " + haystack  # so that position p in the text is p + 1 here
        found = []
        for match in pattern.finditer(padded):
            start, end = match.start(1) - 1, match.end(1) - 1
            found.append(_candidate(text.original, start, end))
            if text.original[start:end].isalnum():
                continue  # one word: no other phrase starts inside it
            for inner_start in _word_starts(haystack, start + 1, end):
                # "Korea" inside "North Korea" may be another topic's phrase
                inner = pattern.match(padded, inner_start)
                if inner:
                    found.append(_candidate(text.original, inner_start, inner.end(1) - 1))
        return found


def _candidate(text: str, start: int, end: int) -> Candidate:
    words = text[start:end]
    if words.isalnum():  # most matches are one word
        return Candidate(start, ((end, words, words.lower()),))
    ends = [end, *reversed(_word_ends(text, start + 1, end))]
    exact = [_phrase_key(text[start:e], case_sensitive=True) for e in ends]
    return Candidate(start, tuple((e, k, k.lower()) for e, k in zip(ends, exact, strict=True)))


@dataclass(frozen=True, slots=True)
class RegexMatcher:
    pattern: regex.Pattern[str]
    rule: int

    def spans(self, text: FieldText) -> list[tuple[int, int, int]]:
        """Raises TimeoutError when the search takes longer than REGEX_TIMEOUT."""
        matches = self.pattern.finditer(text.original, timeout=REGEX_TIMEOUT)
        return [(m.start(), m.end(), self.rule) for m in matches if m.end() > m.start()]


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    description: str
    threshold: float
    field_weights: dict[str, float]
    caps: dict[str, float]
    rules: tuple[Rule, ...]
    # (field, case-sensitive) -> phrase key -> index of the rule that applies to the field
    phrases: dict[tuple[str, bool], dict[str, int]]
    regexes: dict[str, tuple[RegexMatcher, ...]]  # field -> regexes of the rules that apply


@dataclass(frozen=True, slots=True)
class Topics:
    topics: tuple[Topic, ...]
    hash: str
    index: PhraseIndex | None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(topic.name for topic in self.topics)


@dataclass(frozen=True, slots=True)
class TopicResult:
    """One item's verdict for one topic. The fired rules' weights add up to the score."""

    topic: str
    score: float
    threshold: float
    matched: bool
    rules: tuple[dict[str, Any], ...]  # {"rule", "field", "weight", "match"}
    timed_out: tuple[str, ...] = ()  # rules whose regex ran out of time: counted as not matched


# --- public API --------------------------------------------------------------------------------


class TopicError(ConfigurationError):
    """A bad topic definition: `key` is where it is in the file, as "topics.NAME.rules[2].regex"."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


def validate_config(config: Any) -> None:
    """Raises TopicError naming the key of any bad topic definition."""
    _compiled_topics(_canonical(config))  # not the phrase index: it cannot fail, and is slow


def load_topics(config: Any) -> Topics:
    return _compiled(_canonical(config))


def rules_hash(config: Any) -> str:
    return hashlib.sha256(_canonical(config).encode()).hexdigest()


def classify(
    topics: Topics, title: str, summary_text: str, content_text: str | None
) -> list[TopicResult]:
    raw = {"title": title, "summary": summary_text, "content": content_text}
    texts = {field: FieldText.of(text) for field, text in raw.items() if text}
    index = topics.index
    found = {field: index.candidates(text) if index else [] for field, text in texts.items()}
    return [_score_topic(topic, texts, found) for topic in topics.topics]


def score_item(topics: Topics, item: Item) -> list[TopicScore]:
    results = classify(topics, item.title, item.summary_text, item.content_text)
    for result in results:
        for rule in result.timed_out:
            log.warning(
                f'rule "{rule}" of topic "{result.topic}" timed out on item {item.id} '
                f"(over {REGEX_TIMEOUT:g} s): counted as not matched",
                extra={"fields": {"item": item.id, "topic": result.topic, "rule": rule}},
            )
    return [TopicScore(item.id, r.topic, r.score, r.matched, r.rules) for r in results]


def explain_lines(results: Iterable[TopicResult]) -> list[str]:
    lines = []
    for result in results:
        verdict = "in" if result.matched else "out"
        lines.append(
            f"{result.topic}: score {result.score:g}, threshold {result.threshold:g} -> {verdict}"
        )
        lines.extend(_explain_rule(fired) for fired in result.rules)
        if not result.rules:
            lines.append("  (no rule fired)")
        lines.extend(
            f'  (rule "{rule}" timed out: counted as not matched)' for rule in result.timed_out
        )
    return lines


# --- scoring -----------------------------------------------------------------------------------


def _score_topic(
    topic: Topic, texts: dict[str, FieldText], found: dict[str, list[Candidate]]
) -> TopicResult:
    timed_out: set[int] = set()
    spans = {
        field: _phrase_spans(topic, field, found[field])
        + _regex_spans(topic, field, text, timed_out)
        for field, text in texts.items()
    }
    fired: list[dict[str, Any]] = []
    for field, text in texts.items():
        field_spans = spans[field]
        if timed_out:  # a rule that ran out of time in one field is not matched in any
            field_spans = [span for span in field_spans if span[2] not in timed_out]
        fired.extend(_score_field(topic, field, text, _winning_spans(field_spans)))
    score = round(float(sum(f["weight"] for f in fired)), 4)
    late = tuple(topic.rules[index].name for index in sorted(timed_out)) if timed_out else ()
    matched = score >= topic.threshold
    return TopicResult(topic.name, score, topic.threshold, matched, tuple(fired), late)


def _phrase_spans(topic: Topic, field: str, found: list[Candidate]) -> list[tuple[int, int, int]]:
    """At each candidate start, the longest of this topic's phrases."""
    any_case, exact_case = topic.phrases[field, False], topic.phrases[field, True]
    spans = []
    for candidate in found:
        for end, exact, lower in candidate.keys:
            rule, exact_rule = any_case.get(lower), exact_case.get(exact)
            if rule is None and exact_rule is None:
                continue
            if rule is None or (exact_rule is not None and exact_rule < rule):
                rule = exact_rule  # a phrase in two rules counts for the first one
            spans.append((candidate.start, end, rule))
            break
    return spans


def _regex_spans(
    topic: Topic, field: str, text: FieldText, timed_out: set[int]
) -> list[tuple[int, int, int]]:
    """The regex rules' matches in one field; a rule that runs out of time joins `timed_out`
    and is not searched again for this item."""
    spans = []
    for matcher in topic.regexes[field]:
        if matcher.rule in timed_out:
            continue
        try:
            spans.extend(matcher.spans(text))
        except TimeoutError:
            timed_out.add(matcher.rule)
    return spans


def _score_field(
    topic: Topic, field: str, text: FieldText, spans: list[tuple[int, int, int]]
) -> list[dict[str, Any]]:
    weight = topic.field_weights[field]
    fired: dict[int, dict[str, Any]] = {}
    for start, end, index in spans:
        if index not in fired:  # a rule counts once per field
            rule = topic.rules[index]
            points = round(rule.weight * weight, 4)
            match = text.original[start:end]
            fired[index] = {"rule": rule.name, "field": field, "weight": points, "match": match}
    entries = list(fired.values())
    total = sum(e["weight"] for e in entries)
    cap = topic.caps.get(field)
    if cap is not None and total > cap:
        # A long text names everything once; the cap keeps it from outvoting the title.
        entries.append({"rule": CAP, "field": field, "weight": round(cap - total, 4), "match": ""})
    return entries


def _winning_spans(spans: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Non-overlapping matches: the earliest start wins, then the longest."""
    spans.sort(key=lambda span: (span[0], -span[1]))
    winners, end_of_last = [], -1
    for span in spans:
        if span[0] >= end_of_last:
            winners.append(span)
            end_of_last = span[1]
    return winners


def _explain_rule(fired: dict[str, Any]) -> str:
    note = " (field capped)" if fired["rule"] == CAP else ""
    if fired["weight"] == 0:
        note = " (these words do not count)"
    match = f'"{fired["match"]}"' if fired["match"] else ""
    return (
        f"  {fired['weight']:+7.2f}  {fired['field']:<8} {fired['rule']:<28} {match}{note}".rstrip()
    )


# --- compiling and validating ------------------------------------------------------------------


def _canonical(config: Any) -> str:
    lists = {key: list(values) for key, values in (config.lists or {}).items()}
    data = {"grammar": GRAMMAR_VERSION, "topics": config.topics or {}, "lists": lists}
    return json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)


@functools.lru_cache(maxsize=16)
def _compiled(canonical: str) -> Topics:
    topics = _compiled_topics(canonical)
    return Topics(topics, hashlib.sha256(canonical.encode()).hexdigest(), _index(topics))


@functools.lru_cache(maxsize=16)
def _compiled_topics(canonical: str) -> tuple[Topic, ...]:
    data = json.loads(canonical)
    return tuple(
        _compile_topic(name, table, data["lists"]) for name, table in data["topics"].items()
    )


@dataclass(frozen=True, slots=True)
class _RuleSource:
    """A rule before compiling: what it matches and where."""

    rule: Rule
    phrases: tuple[str, ...]
    regexes: tuple[regex.Pattern[str], ...]
    case_sensitive: bool
    plurals: bool


def _compile_topic(name: str, table: Any, lists: dict[str, list[str]]) -> Topic:
    where = f"topics.{name}"
    check = _Checker(where)
    if not isinstance(table, dict):
        check.fail("", "must be a table ([topics.NAME])")
    check.known_keys(table, TOPIC_KEYS)
    threshold = check.number(table, "threshold", 0, MAX_WEIGHT, required=True, above_low=True)
    weights = {**DEFAULT_FIELD_WEIGHTS, **check.field_numbers(table, "fields", allow_zero=True)}
    caps = check.field_numbers(table, "caps", allow_zero=False)
    sources = [_exclusion_source(table, check)]
    raw_rules = table.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        check.fail("rules", "must be one or more [[" + where + ".rules]] tables")
    seen: set[str] = {EXCLUDE, CAP}
    for index, raw in enumerate(raw_rules):
        sources.append(_rule_source(raw, lists, _Checker(f"{where}.rules[{index}]"), seen))
    return Topic(
        name=name,
        description=check.string(table, "description"),
        threshold=threshold,
        field_weights=weights,
        caps=caps,
        rules=tuple(source.rule for source in sources),
        phrases={
            (field, case_sensitive): _rule_by_phrase(sources, field, case_sensitive)
            for field in FIELDS
            for case_sensitive in (False, True)
        },
        regexes={
            field: tuple(
                RegexMatcher(regex, index)
                for index, source in enumerate(sources)
                if field in source.rule.fields
                for regex in source.regexes
            )
            for field in FIELDS
        },
    )


def _exclusion_source(table: dict, check: _Checker) -> _RuleSource:
    return _RuleSource(
        rule=Rule(EXCLUDE, 0.0, frozenset(FIELDS)),
        phrases=check.phrases(table, "exclude"),
        regexes=check.regexes(table, "exclude_regex", case_sensitive=False),
        case_sensitive=False,
        plurals=True,
    )


def _rule_source(raw: Any, lists: dict, check: _Checker, seen: set[str]) -> _RuleSource:
    if not isinstance(raw, dict):
        check.fail("", "must be a table")
    check.known_keys(raw, RULE_KEYS)
    name = check.string(raw, "name", required=True)
    if name in seen:
        check.fail("name", f'"{name}" is already used in this topic')
    seen.add(name)
    weight = _rule_weight(raw, check)
    case_sensitive = check.boolean(raw, "case_sensitive", default=False)
    phrases = check.phrases(raw, "phrases") + check.list_phrases(raw, "lists", lists)
    regexes = check.regexes(raw, "regex", case_sensitive)
    if not phrases and not regexes:
        check.fail("", "needs phrases, lists or regex")
    return _RuleSource(
        rule=Rule(name, weight, check.fields(raw, "fields")),
        phrases=phrases,
        regexes=regexes,
        case_sensitive=case_sensitive,
        plurals=check.boolean(raw, "plurals", default=True),
    )


def _rule_weight(raw: dict, check: _Checker) -> float:
    if check.boolean(raw, "exclude", default=False):
        if "weight" in raw:
            check.fail("weight", "an exclusion has no weight: its words count for nothing")
        return 0.0
    weight = check.number(raw, "weight", -MAX_WEIGHT, MAX_WEIGHT, required=True)
    if weight == 0:
        check.fail("weight", "must not be 0 (make words that must not count an exclusion)")
    return weight


def _rule_by_phrase(sources: list[_RuleSource], field: str, case_sensitive: bool) -> dict[str, int]:
    rule_by_phrase: dict[str, int] = {}
    for index, source in enumerate(sources):
        if field in source.rule.fields and source.case_sensitive == case_sensitive:
            for phrase in source.phrases:
                for variant in _variants(phrase, source.plurals):
                    # A phrase in two rules counts for the first one.
                    rule_by_phrase.setdefault(_phrase_key(variant, case_sensitive), index)
    return rule_by_phrase


def _index(topics: tuple[Topic, ...]) -> PhraseIndex | None:
    keys = {key.lower() for topic in topics for lookup in topic.phrases.values() for key in lookup}
    if not keys:
        return None
    body = "\\W(" + _trie_regex(_trie(keys)) + ")(?!\\w)"
    return PhraseIndex(re.compile(body), re.compile(body, re.IGNORECASE))


_INNER_WORD_START = re.compile(r"(?<=\W)\w")
_INNER_WORD_END = re.compile(r"\w(?=\W)")


def _word_starts(text: str, start: int, end: int) -> list[int]:
    """Where words start after `start` and before `end`."""
    return [start - 1 + m.start() for m in _INNER_WORD_START.finditer(text[start - 1 : end], 1)]


def _word_ends(text: str, start: int, end: int) -> list[int]:
    """Where words end after `start` and before `end`."""
    return [start + m.start() for m in _INNER_WORD_END.finditer(text[start - 1 : end])]


def _phrase_key(text: str, case_sensitive: bool) -> str:
    key = text if text.isalnum() else _SEPARATOR_RUN.sub(" ", text.strip()).replace("\u2019", "'")
    return key if case_sensitive else key.lower()


def _variants(phrase: str, plurals: bool) -> tuple[str, ...]:
    if not plurals or not phrase[-1:].isalpha():
        return (phrase,)
    return (phrase, _plural(phrase))


def _plural(phrase: str) -> str:
    if phrase[-1:] in "yY" and phrase[-2:-1].lower() not in "aeiou":
        return phrase[:-1] + "ies"
    if phrase.lower().endswith(("s", "x", "z", "ch", "sh")):
        return phrase + "es"
    return phrase + "s"


_END = ""


def _trie(phrases: Iterable[str]) -> dict:
    root: dict = {}
    for phrase in phrases:
        node = root
        for char in phrase:
            node = node.setdefault(char, {})
        node[_END] = {}
    return root


def _trie_regex(node: dict) -> str:
    """A regex that tries the longest phrase first and backs off to shorter ones.

    Python's regex engine tries alternatives one by one; branching on one character at a
    time keeps a list of hundreds of phrases about as fast as a single word.
    """
    branches = [_char_regex(char) + _trie_regex(child) for char, child in node.items() if char]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if _END in node else body


def _char_regex(char: str) -> str:
    if char == " ":
        return f"[{_SEPARATORS}]+"
    if char == "'":
        return f"[{_APOSTROPHES}]"
    return re.escape(char)


class _Checker:
    """Reads one table of topic config, raising TopicError that names the exact key."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str, message: str) -> NoReturn:
        raise TopicError(f"{self.where}.{key}" if key else self.where, message)

    def known_keys(self, table: dict, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                self.fail(key, f"unknown key (known: {', '.join(allowed)})")

    def string(self, table: dict, key: str, required: bool = False) -> str:
        if key not in table:
            if required:
                self.fail(key, "is required")
            return ""
        value = table[key]
        if not isinstance(value, str) or (required and not value.strip()):
            self.fail(key, f"must be a non-empty string, got {_show(value)}")
        return value

    def number(
        self,
        table: dict,
        key: str,
        low: float,
        high: float,
        required: bool = False,
        above_low: bool = False,
    ) -> float:
        """A number from `low` (excluded if `above_low`) to `high`: never nan or infinite."""
        if key not in table:
            if required:
                self.fail(key, "is required")
            return 0.0
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"must be a number, got {_show(value)}")
        # Compared before float(), which overflows on a huge TOML integer; nan fails both.
        if above_low and not low < value <= high:
            self.fail(key, f"must be greater than {low:g} and at most {high:g}, got {_show(value)}")
        if not low <= value <= high:
            self.fail(key, f"must be between {low:g} and {high:g}, got {_show(value)}")
        return float(value)

    def boolean(self, table: dict, key: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {_show(value)}")
        return value

    def strings(self, table: dict, key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, f"must be a list of strings, got {_show(value)}")
        return tuple(value)

    def phrases(self, table: dict, key: str) -> tuple[str, ...]:
        phrases = self.strings(table, key)
        for phrase in phrases:
            if not re.match(r"\s*\w", phrase):
                self.fail(key, f"phrase {_show(phrase)} must start with a letter or digit")
        return tuple(_SEPARATOR_RUN.sub(" ", p.strip()) for p in phrases)

    def list_phrases(self, table: dict, key: str, lists: dict) -> tuple[str, ...]:
        phrases: list[str] = []
        for name in self.strings(table, key):
            if name not in lists:
                known = ", ".join(sorted(lists)) or "none defined in [lists]"
                self.fail(key, f'unknown list "{name}" (known: {known})')
            phrases.extend(self.phrases({key: lists[name]}, key))
        return tuple(phrases)

    def regexes(
        self, table: dict, key: str, case_sensitive: bool
    ) -> tuple[regex.Pattern[str], ...]:
        import regex  # only topics with regex rules need the engine

        flags = 0 if case_sensitive else regex.IGNORECASE
        compiled = []
        for text in self.strings(table, key):
            try:
                compiled.append(regex.compile(text, flags))
            except regex.error as exc:
                self.fail(key, f"bad regular expression {_show(text)}: {exc}")
        return tuple(compiled)

    def fields(self, table: dict, key: str) -> frozenset[str]:
        if key not in table:
            return frozenset(FIELDS)
        names = self.strings(table, key)
        unknown = [name for name in names if name not in FIELDS]
        if unknown or not names:
            self.fail(key, f"must list fields among {', '.join(FIELDS)}, got {_show(table[key])}")
        return frozenset(names)

    def field_numbers(self, table: dict, key: str, allow_zero: bool) -> dict[str, float]:
        value = table.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, f"must be a table like {{ title = 3.0 }}, got {_show(value)}")
        inner = _Checker(f"{self.where}.{key}")
        numbers = {}
        for field in value:
            if field not in FIELDS:
                inner.fail(field, f"unknown field (known: {', '.join(FIELDS)})")
            numbers[field] = inner.number(value, field, 0, MAX_WEIGHT, above_low=not allow_zero)
        return numbers


def _show(value: Any) -> str:
    text = f'"{value}"' if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:39] + "…"
