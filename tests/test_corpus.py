"""feedparser's whole test corpus as sources, with NATO's feed among them (`make corpus`).

About 2,250 ill-formed, encoding, entity, sanitizer, HTTP and compression cases, each a
source of its own on one loopback server, polled by one `aggregator fetch`. Whatever they
send: no traceback, every poll recorded, and afterwards `publish` succeeds, every published
document is well-formed, and NATO's items are in the `all` feed.

The corpus is downloaded by `make corpus` (see tests/corpus.py for why it is not vendored);
without FEEDPARSER_CORPUS pointing at that cache the test is skipped, so `make test` stays
fast.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess

import feedparser
import pytest

from tests.conftest import FIXTURES, ROOT, SEEDS, Project
from tests.corpus import corpus_dir, documents, extra_routes, route_for
from tests.feedserver import FeedServer

CORPUS_ENV = "FEEDPARSER_CORPUS"
NATO_FIXTURE = "nato-news-2023-05-24.rss"
NATO_SOURCE = "nato-news"
# A hang detector, not a benchmark: the fetch takes 9 s on 2 idle cores, about 30 s on busy ones.
FETCH_TIMEOUT = 900
ATOM = "{http://www.w3.org/2005/Atom}"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get(CORPUS_ENV),
        reason=f"feedparser's corpus not requested: `make corpus` fetches it, sets {CORPUS_ENV}",
    ),
]


@dataclass
class CorpusRun:
    project: Project
    sources: dict[str, str]  # source id -> what it serves (corpus document or fixture)
    fetch: CompletedProcess

    def named(self, source_ids) -> list[str]:
        return [f"{i} ({self.sources.get(i, 'not a corpus source')})" for i in sorted(source_ids)]


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory) -> Iterator[CorpusRun]:
    corpus = corpus_dir(Path(os.environ[CORPUS_ENV]))
    if not (corpus / "LICENSE").is_file():
        pytest.fail(f"no feedparser corpus in {corpus}: run `make corpus`")
    server = FeedServer()
    # Headers and body go out in two writes; without this, each of 2,250 responses waits
    # 40 ms for the client's delayed ACK (Nagle), which was 85% of the run's wall time.
    server.httpd.RequestHandlerClass.disable_nagle_algorithm = True
    server.start()
    try:
        sources = {NATO_SOURCE: f"tests/fixtures/{NATO_FIXTURE}"}
        urls = {NATO_SOURCE: server.feed(f"/nato/{NATO_FIXTURE}", NATO_FIXTURE)}
        base = server.url("")
        for path, route in extra_routes().items():
            server.route(path, route)
        for index, document in enumerate(documents(corpus)):
            source_id = f"corpus-{index:04d}"
            sources[source_id] = document.name
            urls[source_id] = server.route(document.path, route_for(document, base))
        project = _project(tmp_path_factory.mktemp("corpus"))
        project.write_config(with_sources(project.config.read_text("utf-8"), sources, urls))
        started, cpu = time.monotonic(), _children_cpu()
        fetch = project.cli("fetch", check=False, timeout=FETCH_TIMEOUT)
        seconds = time.monotonic() - started
        print(
            f"\ncorpus fetch: {len(sources)} sources, {seconds:.1f} s wall, "
            f"{_children_cpu() - cpu:.1f} s CPU in the fetch process, "
            f"{len(server.requests())} requests served"
        )
        for outcome, count in outcomes(fetch.stdout).most_common(20):
            print(f"{count:6d}  {outcome}")
        yield CorpusRun(project, sources, fetch)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def published(corpus_run: CorpusRun) -> CompletedProcess:
    return corpus_run.project.cli("publish", check=False, timeout=FETCH_TIMEOUT)


def test_the_fetch_survives_every_document_without_a_traceback(corpus_run: CorpusRun):
    fetch = corpus_run.fetch
    output = fetch.stderr + fetch.stdout
    tracebacks = tracebacks_by_source(output, corpus_run)
    assert not tracebacks, "tracebacks during fetch:\n" + "\n".join(tracebacks)
    assert "Traceback" not in output, output[-3000:]
    assert fetch.returncode in (0, 1), f"fetch exited {fetch.returncode}:\n{fetch.stderr[-3000:]}"
    reported = {line.split(":", 1)[0] for line in fetch.stdout.splitlines()}
    unreported = set(corpus_run.sources) - reported
    assert not unreported, f"no summary line for {corpus_run.named(unreported)[:50]}"


def test_every_poll_is_recorded(corpus_run: CorpusRun):
    listed = corpus_run.project.cli("sources", "--json", timeout=120)
    assert "Traceback" not in listed.stderr
    rows = {row["id"]: row for row in map(json.loads, listed.stdout.splitlines())}
    unrecorded = {i for i in corpus_run.sources if rows.get(i, {}).get("last_poll") is None}
    assert not unrecorded, (
        f"{len(unrecorded)} of {len(corpus_run.sources)} polls left no record: "
        + ", ".join(corpus_run.named(unrecorded)[:50])
    )
    nato = rows[NATO_SOURCE]
    assert (nato["last_status"], nato["last_error"], nato["state"]) == (200, None, "ok")


def test_publish_succeeds_and_every_document_is_well_formed(
    corpus_run: CorpusRun, published: CompletedProcess
):
    output = published.stdout + published.stderr
    assert published.returncode == 0 and "Traceback" not in output, output[-3000:]
    files = [f for f in corpus_run.project.feeds.rglob("*") if f.is_file()]
    assert any(f.name == "all.atom" for f in files)
    broken = []
    for file in files:
        try:
            if file.suffix == ".json":
                json.loads(file.read_bytes())
            elif file.suffix == ".html":
                _check_item_page(file.read_bytes())
            else:
                ET.parse(file)
        except (ValueError, ET.ParseError) as exc:
            broken.append(f"{file.relative_to(corpus_run.project.feeds)}: {exc}")
    assert not broken, "published documents that do not parse:\n" + "\n".join(broken)


def _check_item_page(data: bytes) -> None:
    """An item page: UTF-8 HTML with a title, and nothing a source sent became markup that runs."""
    import lxml.html

    text = data.decode("utf-8")  # strict: ValueError on a byte that is not UTF-8
    if not text.lower().startswith("<!doctype html>"):
        raise ValueError("no <!doctype html>")
    page = lxml.html.document_fromstring(data)
    if not page.findtext(".//title", "").strip():
        raise ValueError("no title")
    if page.xpath("//script | //iframe | //object | //embed | //@*[starts-with(name(), 'on')]"):
        raise ValueError("script, frame or event handler in the page")


def test_nato_items_are_in_the_all_feed(corpus_run: CorpusRun, published: CompletedProcess):
    assert published.returncode == 0
    expected = {entry.title for entry in feedparser.parse(str(FIXTURES / NATO_FIXTURE)).entries}
    assert len(expected) == 3
    titles = set(feed_entries(corpus_run.project.feeds, "all").values())
    assert expected <= titles, f"missing from the all feed: {sorted(expected - titles)}"


def test_every_archived_item_has_a_title_and_is_in_the_all_feed(
    corpus_run: CorpusRun, published: CompletedProcess
):
    listed = corpus_run.project.cli("items", "--json", timeout=120)
    items = [json.loads(line) for line in listed.stdout.splitlines()]
    untitled = [i for i in items if not (i["title"] or "").strip()]
    assert not untitled, "items without a title: " + ", ".join(
        f"{i['id']} from {corpus_run.named([i['source']])}" for i in untitled[:20]
    )
    published_ids = set(feed_entries(corpus_run.project.feeds, "all"))
    missing = [i for i in items if i["atom_id"] not in published_ids]
    assert not missing, f"{len(missing)} of {len(items)} items not in the all feed: " + ", ".join(
        f"{i['id']} {i['title']!r} from {corpus_run.named([i['source']])}" for i in missing[:20]
    )


# --- helpers ---------------------------------------------------------------------------------


def _project(root: Path) -> Project:
    """The project's runtime files, as the `project` fixture copies them (module-scoped)."""
    (root / "archive").mkdir(parents=True)
    shutil.copytree(SEEDS, root / "archive" / "seed")
    shutil.copy(ROOT / "config.toml", root / "config.toml")
    (root / "feeds").mkdir()
    return Project(root)


def with_sources(config: str, titles: dict[str, str], urls: dict[str, str]) -> str:
    """The config with its [[sources]] tables replaced by one source per served document."""
    kept, in_sources = [], False
    for line in config.splitlines():
        if line.strip() == "[[sources]]":
            in_sources = True
        elif in_sources and re.match(r"\s*[A-Za-z_][\w-]*\s*=", line):
            continue  # a key of the replaced source
        else:
            in_sources = False
            kept.append(line)
    tables = [
        f'[[sources]]\nid = "{i}"\ntitle = {json.dumps(titles[i])}\n'
        f'url = {json.dumps(urls[i])}\ninterval = "1h"\n'
        for i in titles
    ]
    return "\n".join(kept) + "\n\n" + "\n".join(tables)


def outcomes(fetch_stdout: str) -> Counter[str]:
    """How the polls ended, by kind: the error or note of each summary line, with numbers
    and quoted text generalised (`HTTP 404 Not Found`, `warning: ...`, `ok`)."""
    kinds: Counter[str] = Counter()
    for line in fetch_stdout.splitlines():
        said = re.search(r" \((?:error: )?(.*)\)$", line)
        kind = said[1] if said else "ok"
        kinds[re.sub(r"\d+", "N", re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", kind))[:120]] += 1
    return kinds


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tracebacks_by_source(log: str, run: CorpusRun) -> list[str]:
    """Each traceback's last line, with the sources named in the log line before it."""
    lines = log.splitlines()
    found = []
    for index, line in enumerate(lines):
        if "Traceback (most recent call last)" not in line:
            continue
        before = lines[index - 1] if index else ""
        named = run.named(set(re.findall(r"\bcorpus-\d{4}\b|\bnato-news\b", before)))
        end = next(
            (j for j in range(index + 1, len(lines)) if not lines[j].startswith((" ", "\t"))),
            len(lines) - 1,
        )
        found.append(f"{lines[end]}  <- {before.strip()} {named}")
    return found


def feed_entries(feeds: Path, slug: str) -> dict[str, str]:
    """Entry ids and titles of a feed's subscription document and of every archive document
    it links back to (RFC 5005 prev-archive), as a subscriber paging back would see them."""
    entries: dict[str, str] = {}
    document: Path | None = feeds / f"{slug}.atom"
    seen: set[Path] = set()
    while document is not None:
        assert document not in seen, f"prev-archive links loop back to {document}"
        seen.add(document)
        root = ET.parse(document).getroot()
        for entry in root.iter(f"{ATOM}entry"):
            entries[entry.findtext(f"{ATOM}id") or ""] = entry.findtext(f"{ATOM}title") or ""
        prev = [
            link.get("href", "")
            for link in root.findall(f"{ATOM}link")
            if link.get("rel") == "prev-archive"
        ]
        document = feeds / prev[0].split("/feeds/", 1)[1] if prev else None
    return entries
