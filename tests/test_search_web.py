"""Search for people (issue 14): the CLI in a subprocess and the web through the real server,
over an archive of the seeds and one poll of a recorded NATO feed."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FIXTURES

NATO_URL = "https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml"
JORDAN = "NATO Secretary General welcomes Prime Minister of Jordan"
JORDAN_LINK = "https://www.nato.int/cps/en/natohq/news_214851.htm"
VILNIUS = "NATO meets with partners to reaffirm commitment ahead of Vilnius Summit"
BUSH = "Secretary General aboard USS George H.W. Bush: NATO’s strength deters conflict"


@pytest.fixture
def filled(project, feed_server):
    """The seeds and the May 2023 NATO feed, fetched from a local server."""
    body = (FIXTURES / "nato-news-2023-05-24.rss").read_bytes()
    project.replace_in_config(NATO_URL, feed_server.route("/nato.rss", body=body))
    project.cli("import-seeds")
    project.cli("fetch")
    return project


def searched(project, *args: str) -> list[dict]:
    lines = project.cli("search", "--json", *args).stdout.splitlines()
    return [json.loads(line) for line in lines]


def test_the_cli_finds_what_people_type_with_a_passage(filled):
    assert [r["title"] for r in searched(filled, "Indo-Pacific")] == [VILNIUS]
    assert [r["title"] for r in searched(filled, '"defence capacity"')] == [JORDAN]
    apostrophe = [r["title"] for r in searched(filled, "NATO's")]
    assert apostrophe[0] == BUSH  # in the title: first
    assert len(apostrophe) > 2
    [jordan] = searched(filled, '"defence capacity"')
    assert "defence capacity building package" in jordan["snippet"]
    text = filled.cli("search", '"defence capacity"').stdout.splitlines()
    assert text[0].endswith(JORDAN) and "defence capacity building" in text[1]
    assert text[-1] == "1 item"


def test_the_cli_bounds_and_explains_bad_queries(filled):
    too_many = filled.cli("search", "--limit", "51", "NATO", check=False)
    assert too_many.returncode == 2 and "1<=x<=50" in too_many.stderr
    assert len(searched(filled, "--limit", "50", "NATO")) <= 50
    long = filled.cli("search", "x" * 10_000, check=False)
    assert long.returncode == 1
    assert long.stderr.strip() == "error: search: a query has at most 200 characters"
    punctuation = filled.cli("search", "<>!", check=False)
    assert punctuation.returncode == 1 and len(punctuation.stderr.splitlines()) == 1
    assert filled.cli("search", "<script>").stdout.strip() == "no items"


def test_explain_takes_the_number_the_published_id_or_the_url(filled):
    [jordan] = searched(filled, '"defence capacity"')
    first = f"{jordan['id']}  2023-05-22  {JORDAN}"
    for reference in (
        str(jordan["id"]),
        jordan["atom_id"],
        JORDAN_LINK,
        JORDAN_LINK.replace("https://", "http://") + "?utm_source=x",  # its canonical link
    ):
        said = filled.cli("explain", reference).stdout
        assert said.splitlines()[0] == first, reference
    missing = filled.cli("explain", "https://www.nato.int/no-such-story.htm", check=False)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: no item https://www.nato.int/no-such-story.htm")
    assert len(missing.stderr.splitlines()) == 1
