"""A re-poll that leaves known entries unread (their bytes unchanged since the last stored
poll) must decide exactly what reading every entry decides. Each case runs twice, through
the real path (loopback server, SQLite file): `unread` as the program polls, and `whole`
with every entry read; both must end in the state reading every entry gives. The cases
are where the entries left unread bear on the others: dedupe's repeats, links listed
apart, title-and-day matches, an item another import revised, feedparser's xml:base."""

from __future__ import annotations

import pytest

from aggregator import pipeline
from tests.feedserver import Route
from tests.test_poll import Setup
from tests.unread_world import base_feed, doc, whole_mode


@pytest.fixture(params=["unread", "whole"])
def mode(request, monkeypatch):
    if request.param == "unread":
        yield request.param
        return
    with whole_mode(monkeypatch):  # what the poll decides when every entry is read
        yield request.param


@pytest.fixture
def setup(project, feed_server, mode):
    made = Setup(project, feed_server, seeds=False)
    yield made
    made.archive.close()


def state(setup):
    return sorted(
        (i.title, i.link, i.summary_text, i.revision) for i in setup.archive.list_items(limit=100)
    )


def run(setup, mode, *docs):
    setup.serve(*[Route(body=d) for d in docs])
    for _ in docs:
        report = setup.poll()
        assert report.error is None, report.error
    return state(setup)


N1 = "https://www.nato.int/cps/en/natohq/news_1.htm"
N2 = "https://www.nato.int/cps/en/natohq/news_2.htm"
N3 = "https://www.nato.int/cps/en/natohq/news_3.htm"


def test_a_story_reverted_after_a_poll_read_whole_is_reverted(setup, mode):
    one = {"title": "Story 1", "link": N1, "text": "Text."}
    fixed = {"title": "Story 1", "link": N1, "text": "Corrected."}
    two = {"title": "Story 2", "link": N2, "text": "Other."}
    run(
        setup,
        mode,
        doc([one, two], "d1"),
        # a stray control character in the channel description: that poll reads it whole
        doc([fixed, two], "d2", "<description>News\x0b</description>"),
        doc([one, two], "d3"),  # story 1 back as it was first
    )
    (story1,) = [i for i in setup.archive.list_items(limit=100) if i.title == "Story 1"]
    assert story1.summary_text == "Text.", f"[{mode}] story 1 left at {story1.summary_text!r}"


def test_a_repeat_dropped_while_its_first_copy_was_there_counts_once_it_is_gone(setup, mode):
    first = {"title": "Story 1", "link": N1, "guid": "g1", "text": "First copy."}
    second = {"title": "Story 1 (more)", "link": N1, "guid": "g1", "text": "Second copy."}
    run(setup, mode, doc([first, second], "d1"), doc([second], "d2"))
    (item,) = setup.archive.list_items(limit=100)
    assert item.summary_text == "Second copy.", f"[{mode}] left at {item.summary_text!r}"


def test_a_changed_repeat_is_still_a_repeat(setup, mode):
    first = {"title": "Story 1", "link": N1, "guid": "g1", "text": "First copy."}
    second = {"title": "Story 1 (more)", "link": N1, "guid": "g1", "text": "Second copy."}
    second_v2 = {**second, "text": "Second copy, edited."}
    run(setup, mode, doc([first, second], "d1"), doc([first, second_v2], "d2"))
    (item,) = setup.archive.list_items(limit=100)
    assert item.summary_text == "First copy.", f"[{mode}] became {item.summary_text!r}"


def test_a_story_whose_link_moved_beside_one_of_the_same_title_and_day_is_its_own(setup, mode):
    x = {"title": "Press conference", "link": N1, "text": "About X."}
    y = {"title": "Press conference", "link": N2, "text": "About Y."}
    y_moved = {**y, "link": N3}
    run(setup, mode, doc([x, y], "d1"), doc([x, y_moved], "d2"))
    (item_x,) = [i for i in setup.archive.list_items(limit=100) if i.link == N1]
    assert item_x.summary_text == "About X.", f"[{mode}] X's item now says {item_x.summary_text!r}"


def test_an_item_another_import_revised_is_taken_back_by_its_feed(setup, mode, tmp_path):
    one = {"title": "Allies meet partners", "link": N1, "text": "First text."}
    run(setup, mode, doc([one], "d1"))
    seed = tmp_path / "seed.txt"
    seed.write_text(
        "Allies meet partners\n\n  • 10 Jan. 2024 -\n\nThe seed's own long text of the story.\n",
        encoding="utf-8",
    )
    pipeline.import_seeds(setup.archive, [seed])
    setup.serve(Route(body=doc([one], "d2")))
    setup.poll()
    (item,) = [i for i in setup.archive.list_items(limit=100) if i.link == N1]
    assert item.summary_text == "First text.", f"[{mode}] left at {item.summary_text!r}"


def test_an_entry_after_one_with_its_own_xml_base_reads_as_it_always_did(setup, mode):
    """feedparser keeps the previous entry's xml:base for an entry without one (its
    basestack restores only a non-empty parent base): read alone, B gets another link
    and guid than read after A, so it becomes a second item."""

    def feed(b_text: str) -> bytes:
        return base_feed('xml:base="https://www.nato.int/cps/en/"', b_text)

    run(setup, mode, feed("B."), feed("B, corrected."))
    b_items = [i for i in setup.archive.list_items(limit=100) if i.title == "B"]
    assert len(b_items) == 1, f"[{mode}] {len(b_items)} items for B"
