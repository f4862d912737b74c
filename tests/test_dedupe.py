"""Identity rules, one story -> one item: pure functions, then the rules through a real poll."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from aggregator import dedupe
from aggregator.models import Action, Candidate, Entry, Identity, KnownEntry, KnownItem, Origin

DAY = datetime(2022, 11, 9, 12, 0, tzinfo=UTC)
SEED_TEXT = (
    "On 9 November 2022, representatives from over 30 Partner Nations attended informal "
    "workshops at NATO Headquarters in Brussels, to discuss areas of common interest, "
    "including crisis prevention and management, cooperative security and human security."
)


def entry(title="Partners meet in Brussels", **kwargs) -> Entry:
    kwargs.setdefault("published", DAY)
    kwargs.setdefault("summary_html", f"<p>{title} summary</p>")
    return Entry(title=title, **kwargs)


def stored(e: Entry, item_id=1, source="nato", origin=Origin.FEED, text="") -> Candidate:
    """The candidate the archive would hand dedupe for an item stored from `e`."""
    ident = dedupe.identify(e, source)
    return Candidate(
        id=item_id,
        origin=origin,
        guid_key=ident.guid_key,
        canonical_url=ident.canonical_url,
        fingerprint=ident.fingerprint,
        title_key=ident.title_key,
        published=e.published or DAY,
        content_hash=dedupe.content_hash(e),
        text=text,
    )


def decide(entries, candidates, source="nato", origin=Origin.FEED):
    """(action, stored item) for each intent: a new item's id is only the next free one."""
    identified = dedupe.unique_identified(entries, source)
    intents = dedupe.decide(identified, candidates, origin, first_new_id=1000)
    return [(i.action, None if i.action is Action.NEW else i.item_id) for i in intents]


def unique_entries(entries):
    return [entry for entry, _ in dedupe.unique_identified(entries, "nato")]


# --- the canonical link ---------------------------------------------------------------------


CANONICAL = "https://www.nato.int/cps/en/natohq/news_209370.htm"


@pytest.mark.parametrize(
    "variant",
    [
        "https://www.nato.int/cps/en/natohq/news_209370.htm",
        "http://www.nato.int/cps/en/natohq/news_209370.htm",  # http and https are one
        "HTTPS://WWW.NATO.INT/cps/en/natohq/news_209370.htm",  # scheme and host case
        "https://www.nato.int:443/cps/en/natohq/news_209370.htm",  # default ports
        "http://www.nato.int:80/cps/en/natohq/news_209370.htm",
        "https://www.nato.int/cps/en/natohq/news_209370.htm#top",  # fragment
        "https://www.nato.int/cps/en/natohq/news_209370.htm?selectedLocale=en",  # NATO's locale
        "https://www.nato.int/cps/en/natohq/news_209370.htm?SelectedLocale=fr",
        "https://www.nato.int/cps/en/natohq/news_209370.htm?utm_source=x&utm_medium=rss",
        "https://www.nato.int/cps/en/natohq/news_209370.htm?fbclid=abc&gclid=def",
        "  https://www.nato.int/cps/en/natohq/news_209370.htm  ",
    ],
)
def test_link_variants_share_one_canonical_form(variant):
    assert dedupe.canonical_url(variant) == CANONICAL


def test_remaining_parameters_are_kept_and_sorted():
    a = dedupe.canonical_url("https://example.org/a?b=2&a=1&utm_campaign=z")
    b = dedupe.canonical_url("https://example.org/a?a=1&b=2")
    assert a == b == "https://example.org/a?a=1&b=2"


def test_what_makes_a_different_article_is_kept():
    base = "https://www.nato.int/cps/en/natohq/news_209370.htm"
    assert dedupe.canonical_url(base.replace("209370", "209371")) != CANONICAL
    assert dedupe.canonical_url(base.replace("news_", "NEWS_")) != CANONICAL  # path case counts
    assert dedupe.canonical_url("https://www.nato.int:8443/x") == "https://www.nato.int:8443/x"
    assert dedupe.canonical_url(base + "?id=2") != dedupe.canonical_url(base + "?id=3")


@pytest.mark.parametrize("link", [None, "", "  ", "javascript:alert(1)", "mailto:a@b.c", "/x"])
def test_links_that_are_no_web_address_have_no_canonical_form(link):
    assert dedupe.canonical_url(link) is None


# --- identity, in order: guid, canonical link, fingerprint -----------------------------------


def test_the_guid_decides_first_even_when_the_link_changed():
    old = entry(guid="urn:nato:1", link="https://www.nato.int/a.htm")
    new = entry(guid="urn:nato:1", link="https://www.nato.int/moved.htm")
    assert decide([new], [stored(old, 7)]) == [(Action.UNCHANGED, 7)]


def test_guids_are_only_unique_within_their_source():
    old = entry(guid="1", title="Other story", link=None)
    fresh = entry(guid="1", title="A story", link=None)
    assert decide([fresh], [stored(old, 7, source="other")]) == [(Action.NEW, None)]


def test_a_link_variant_is_the_same_item():
    old = entry(link="https://www.nato.int/cps/en/natohq/news_209370.htm")
    for link in (
        "http://www.nato.int/cps/en/natohq/news_209370.htm?selectedLocale=en",
        "https://WWW.nato.int/cps/en/natohq/news_209370.htm?utm_source=rss#x",
    ):
        assert decide([entry(link=link)], [stored(old, 3)]) == [(Action.UNCHANGED, 3)]


def test_the_same_link_from_another_source_is_the_same_item():
    old = entry(link=CANONICAL)
    assert decide([entry(link=CANONICAL + "?utm_source=x")], [stored(old, 3)], "mirror") == [
        (Action.UNCHANGED, 3)
    ]


def test_without_guid_or_link_the_fingerprint_of_title_and_day_decides():
    old = entry(title="NATO “Partners” meet: in Brussels!")
    same = entry(title="nato partners MEET in brussels", published=DAY + timedelta(hours=3))
    other_day = entry(title="NATO Partners meet in Brussels", published=DAY + timedelta(days=1))
    assert decide([same], [stored(old, 5)]) == [(Action.REVISE, 5)]  # summary differs
    assert decide([other_day], [stored(old, 5)]) == [(Action.NEW, None)]
    assert dedupe.fingerprint(old.title, old.published) == dedupe.fingerprint(
        same.title, same.published
    )


def test_a_new_story_is_new():
    old = entry(link="https://www.nato.int/a.htm", title="One thing")
    new = entry(link="https://www.nato.int/b.htm", title="Something else entirely")
    assert decide([new], [stored(old)]) == [(Action.NEW, None)]


def test_a_new_guid_of_the_same_source_is_another_story_despite_title_and_day():
    template = "Daily press briefing"
    old = entry(title=template, guid="brief-1", link="https://x.org/1")
    fresh = entry(title=template, guid="brief-2", link="https://x.org/2")
    assert decide([fresh], [stored(old, 7)]) == [(Action.NEW, None)]


def test_a_new_guid_of_the_same_source_under_a_known_link_is_another_story():
    old = entry(title="Weekly digest", guid="d-1", link="https://x.org/digest")
    fresh = entry(title="Weekly digest", guid="d-2", link="https://x.org/digest")
    assert decide([fresh], [stored(old, 7)]) == [(Action.NEW, None)]


def test_title_and_day_still_join_the_same_story_from_another_source():
    old = entry(guid="nato-1", link="https://www.nato.int/a.htm")
    mirrored = entry(guid="mirror-9", link="https://mirror.org/a")
    assert decide([mirrored], [stored(old, 7)], "mirror") == [(Action.UNCHANGED, 7)]


def test_title_and_day_still_join_a_moved_link_when_the_source_sent_no_guid_before():
    old = entry(link="https://www.nato.int/old/a.htm")
    moved = entry(link="https://www.nato.int/new/a.htm")
    moved_with_guid = entry(guid="urn:nato:a", link="https://www.nato.int/new/a.htm")
    assert decide([moved], [stored(old, 7)]) == [(Action.UNCHANGED, 7)]
    assert decide([moved_with_guid], [stored(old, 7)]) == [(Action.UNCHANGED, 7)]


def test_among_stored_items_of_one_title_and_day_the_one_not_distinguished_is_joined():
    ours = stored(entry(guid="brief-1", link="https://x.org/1"), 7)
    theirs = stored(entry(guid="m-1", link="https://mirror.org/1"), 8, source="mirror")
    fresh = entry(guid="brief-2", link="https://x.org/2")
    assert decide([fresh], [ours, theirs]) == [(Action.UNCHANGED, 8)]
    assert decide([fresh], [theirs, ours]) == [(Action.UNCHANGED, 8)]


def test_a_merged_seed_holds_its_sources_guid_and_is_not_joined_by_another_guid():
    merged = Candidate(
        **{
            **{f: getattr(seed(), f) for f in Candidate.__slots__},
            "guid_key": dedupe.guid_key("nato", "g-1"),
            "canonical_url": "https://www.nato.int/g1.htm",
        }
    )
    other = live(guid="g-2", link="https://www.nato.int/g2.htm")
    assert decide([other], [merged]) == [(Action.NEW, None)]


# --- within one document ----------------------------------------------------------------------


def test_distinct_guids_in_one_document_are_distinct_stories_whatever_their_titles():
    briefings = [
        entry(title="Daily press briefing", guid=f"brief-{n}", link=link)
        for n, link in enumerate(["https://x.org/1", "https://x.org/2", None, "https://x.org/2"])
    ]
    assert [e.guid for e in unique_entries(briefings)] == [
        "brief-0",
        "brief-1",
        "brief-2",
        "brief-3",
    ]
    assert decide(briefings, []) == [(Action.NEW, None)] * 4


def test_an_entry_without_guid_joins_an_earlier_one_of_the_same_title_and_day_and_link():
    with_guid = entry(guid="g-1", link="https://x.org/1")
    without = entry(link="http://x.org/1")
    assert decide([with_guid, without], []) == [(Action.NEW, None)]
    assert decide([without, with_guid], []) == [(Action.NEW, None)]


def test_one_document_listing_the_same_title_and_day_under_two_links_tells_them_apart():
    with_guid = entry(guid="g-1", link="https://x.org/1")
    without = entry(link="https://x.org/2")
    assert decide([with_guid, without], []) == [(Action.NEW, None)] * 2
    assert decide([without, with_guid], []) == [(Action.NEW, None)] * 2


def test_two_entries_with_the_same_guid_in_one_document_are_one():
    first = entry(guid="g-1", title="First telling", link="https://x.org/1")
    again = entry(guid="g-1", title="Second telling", link="https://x.org/2")
    kept = unique_entries([first, again])
    assert kept == [first]
    assert decide([first, again], []) == [(Action.NEW, None)]


def test_link_variants_in_one_document_are_one():
    a = entry(link="https://www.nato.int/n.htm")
    b = entry(link="http://www.nato.int/n.htm?selectedLocale=en", title="Other title")
    assert unique_entries([a, b]) == [a]


# --- changes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"title": "Partners meet in Brussels (updated)"},
        {"summary_html": "<p>A corrected summary</p>"},
        {"content_html": "<p>The full text arrived</p>"},
    ],
)
def test_a_changed_story_is_a_revision_of_the_same_item(change):
    old = entry(link=CANONICAL)
    changed = entry(**{"link": CANONICAL, **change})
    assert decide([changed], [stored(old, 9)]) == [(Action.REVISE, 9)]


def test_whitespace_and_non_content_fields_are_not_a_change():
    old = entry(link=CANONICAL, summary_html="<p>Same   words</p>")
    again = entry(link=CANONICAL, summary_html="<p>Same words</p>", author="Someone else")
    assert decide([again], [stored(old, 9)]) == [(Action.UNCHANGED, 9)]


# --- the seeded articles --------------------------------------------------------------------------


def seed(title="Partners discuss strengthened cooperation", item_id=100, **kwargs) -> Candidate:
    e = Entry(title=title, published=kwargs.pop("published", DAY), summary_text="", **kwargs)
    return stored(e, item_id, source="seed", origin=Origin.SEED, text=SEED_TEXT)


def live(title="Partners discuss strengthened cooperation", **kwargs) -> Entry:
    kwargs.setdefault("link", "https://www.nato.int/cps/en/natohq/news_209370.htm")
    return entry(title=title, **kwargs)


def test_a_live_entry_with_the_seed_title_merges_into_the_seed():
    assert decide([live(published=DAY + timedelta(days=1))], [seed()]) == [(Action.MERGE, 100)]


@pytest.mark.parametrize(
    "title",
    [
        "Partners discuss strengthened co-operation",  # a word split
        "Partners discuss strenghtened cooperation",  # a typo
        "NATO Partners discuss strengthened cooperation",  # a word more
    ],
)
def test_a_very_similar_title_merges(title):
    assert decide([live(title=title)], [seed()]) == [(Action.MERGE, 100)]


def test_a_merely_related_title_does_not_merge():
    related = live(title="Partners discuss cooperation on climate security")
    assert decide([related], [seed()]) == [(Action.NEW, None)]


def test_a_summary_contained_in_the_seed_text_merges():
    retitled = live(title="Bi-annual meeting with partners", summary_text=SEED_TEXT[:150])
    assert decide([retitled], [seed()]) == [(Action.MERGE, 100)]


def test_the_same_title_far_from_the_seed_date_is_another_story():
    later = live(published=DAY + timedelta(days=30))
    assert decide([later], [seed()]) == [(Action.NEW, None)]


def test_a_merged_seed_is_then_found_by_its_link_and_not_merged_again():
    merged = seed()
    merged = Candidate(
        **{
            **{f: getattr(merged, f) for f in merged.__slots__},
            "canonical_url": CANONICAL,
            "content_hash": dedupe.content_hash(live()),
        }
    )
    assert decide([live()], [merged]) == [(Action.UNCHANGED, 100)]


def test_a_reimported_seed_brings_only_its_text_to_the_merged_item():
    merged = Candidate(
        **{
            **{f: getattr(seed(), f) for f in Candidate.__slots__},
            "canonical_url": CANONICAL,
            "content_hash": dedupe.content_hash(live()),
        }
    )
    again = Entry(title="Partners discuss strengthened cooperation", published=DAY,
                  content_text=SEED_TEXT)  # fmt: skip
    longer = Entry(title=again.title, published=DAY, content_text=SEED_TEXT + " More.")
    assert decide([again], [merged], "seed") == [(Action.UNCHANGED, 100)]
    assert decide([longer], [merged], "seed") == [(Action.SEED_TEXT, 100)]
    assert decide([live()], [merged]) == [(Action.UNCHANGED, 100)]


def test_one_seed_takes_one_live_story():
    a = live(link="https://www.nato.int/a.htm")
    b = live(link="https://www.nato.int/b.htm", title="Partners discuss strengthened cooperation!")
    # b has the same title and day as a: the same story under a second link, so it is
    # not a second merge (which would overwrite a's link) nor a second item.
    assert decide([a, b], [seed()]) == [(Action.MERGE, 100)]


def test_the_same_title_and_day_under_two_links_of_one_document_are_two_items():
    # NATO's feed sends no guids: its links are what tell its stories apart (issue 12's
    # 10,000-item feed repeats template titles on one day under distinct links).
    a = live(link="https://www.nato.int/a.htm")
    b = live(link="https://www.nato.int/b.htm")
    assert decide([a, b], []) == [(Action.NEW, None)] * 2
    # Across polls, a title and day under a new link is the story whose link moved, unless
    # the document still lists the stored one under its own link.
    assert decide([b], [stored(a, 4)]) == [(Action.UNCHANGED, 4)]
    assert decide([a, b], [stored(a, 4)]) == [(Action.UNCHANGED, 4), (Action.NEW, None)]
    assert decide([b, a], [stored(a, 4)]) == [(Action.NEW, None), (Action.UNCHANGED, 4)]


def test_undated_entries_with_one_title_and_their_own_links_are_different_stories():
    a = entry(title="Weekly update", link="https://x.org/1", published=None)
    b = entry(title="Weekly update", link="https://x.org/2", published=None)
    assert decide([a, b], []) == [(Action.NEW, None), (Action.NEW, None)]
    assert decide([b], [stored(a, 4)]) == [(Action.NEW, None)]


def test_a_reimported_seed_without_link_or_guid_is_found_by_its_title():
    again = Entry(title="Partners discuss strengthened cooperation", published=DAY)
    intents = decide([again], [seed()], source="seed", origin=Origin.SEED)
    assert [item_id for _, item_id in intents] == [100]


# --- published ids --------------------------------------------------------------------------------


def test_the_published_id_prefers_a_uri_guid_then_the_canonical_link_then_a_tag():
    with_guid = entry(guid="https://www.nato.int/guid/1", link=CANONICAL)
    plain_guid = entry(guid="12345", link=CANONICAL + "?selectedLocale=en")
    nothing = entry(link=None)
    assert dedupe.atom_id(with_guid, Origin.FEED, CANONICAL) == "https://www.nato.int/guid/1"
    assert dedupe.atom_id(plain_guid, Origin.FEED, CANONICAL) == CANONICAL
    assert dedupe.atom_id(nothing, Origin.FEED, None).startswith(
        "tag:aggregator.invalid,2022-11-09:"
    )


def test_the_fast_path_for_plain_links_agrees_with_the_full_parse(monkeypatch):
    import re

    links = [
        f"{scheme}://{host}{path}{query}{fragment}"
        for scheme in ("http", "https", "HTTPS")
        for host in ("www.nato.int", "WWW.Nato.Int", "x.org")
        for path in ("", "/", "/cps/en/natohq/news_1.htm", "/A/b%20c")
        for query in ("", "?", "?b=2&a=1", "?selectedLocale=en&utm_source=x", "?q=a%20b&q=c")
        for fragment in ("", "#top")
    ]
    fast = [dedupe.canonical_url(link) for link in links]
    monkeypatch.setattr(dedupe, "_SIMPLE_URL", re.compile(r"(?!)"))  # never matches
    assert fast == [dedupe.canonical_url(link) for link in links]


# --- through the real path: loopback feeds, the CLI, a SQLite file --------------------------------

NATO_URL = "https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml"
BRIEFINGS = 40


def rss_items(*items: dict) -> bytes:
    """Items dated 10 Jan. 2024; each dict: title, link, and optionally guid."""
    body = "".join(
        f"<item><title>{i['title']}</title><link>{i['link']}</link>"
        + (f'<guid isPermaLink="false">{i["guid"]}</guid>' if i.get("guid") else "")
        + f"<description>{i.get('text', 'Text.')}</description>"
        "<pubDate>10 Jan. 2024 12:00:00 GMT</pubDate></item>"
        for i in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
        f"<link>https://www.nato.int/</link>{body}</channel></rss>"
    ).encode()


def feed_titles(project) -> list[str]:
    lines = project.cli("items", "--json", "--origin", "feed").stdout.splitlines()
    return sorted(json.loads(line)["title"] for line in lines)


def test_a_feed_of_template_titles_keeps_every_guid_and_still_joins_the_same_story(
    project, feed_server
):
    briefings = [
        {"title": "Daily press briefing", "guid": f"briefing-{n}", "link": f"https://x.org/{n}"}
        for n in range(BRIEFINGS)
    ]
    for briefing in briefings[::2]:  # feeds that link many items to one page
        briefing["link"] = "https://x.org/briefings"
    story = {"title": "Allies meet partners", "link": "https://www.nato.int/news_1.htm"}
    project.replace_in_config(
        NATO_URL, feed_server.route("/nato.rss", body=rss_items(*briefings, story))
    )
    mirrored = {**story, "link": "https://mirror.example/allies", "guid": "m-1"}
    mirror = feed_server.route("/mirror.rss", body=rss_items(mirrored))
    project.write_config(
        project.config.read_text(encoding="utf-8")
        + f'\n[[sources]]\nid = "mirror"\ntitle = "Mirror"\nurl = "{mirror}"\ninterval = "30m"\n'
    )
    # One source after the other: polled together, either may be first to store the story.
    fetched = [project.cli("fetch", source).stdout for source in ("nato-news", "mirror")]
    assert [line.split(",")[:3] for line in fetched] == [
        ["nato-news: 200", f" {len(rss_items(*briefings, story))} bytes", f" {BRIEFINGS + 1} new"],
        ["mirror: 200", f" {len(rss_items(mirrored))} bytes", " 0 new"],
    ]
    expected = sorted(["Daily press briefing"] * BRIEFINGS + ["Allies meet partners"])
    assert feed_titles(project) == expected  # one item per guid; the mirror joined the story

    # NATO moves the story's link (it sends no guid for it): still the same item.
    moved = {**story, "link": "https://www.nato.int/cps/en/natohq/news_1.htm"}
    feed_server.route("/nato.rss", body=rss_items(*briefings, moved))
    fetched = project.cli("fetch", "nato-news", "--force").stdout
    assert fetched.startswith("nato-news: 200") and " 0 new" in fetched
    assert feed_titles(project) == expected


# --- complete intents: the ids and links a new item gets ---------------------------------------


def test_new_items_get_the_next_ids_their_published_ids_and_links():
    a = entry(title="A", guid="https://www.nato.int/guid/a", link="https://www.nato.int/a.htm")
    b = entry(title="B", link="https://www.nato.int/b.htm")
    intents = dedupe.decide(dedupe.unique_identified([a, b], "nato"), [], Origin.FEED, 7)
    assert [(i.item_id, i.atom_id, i.canonical_url) for i in intents] == [
        (7, "https://www.nato.int/guid/a", "https://www.nato.int/a.htm"),
        (8, "https://www.nato.int/b.htm", "https://www.nato.int/b.htm"),
    ]
    assert dedupe.new_atom_ids(intents) == [
        "https://www.nato.int/guid/a",
        "https://www.nato.int/b.htm",
    ]


def test_a_published_id_or_link_another_item_holds_is_not_taken():
    """A feed whose guid is another item's link; a link the archive's item 4 holds while
    this entry's guid tells it apart."""
    holder = stored(entry(title="Other", guid="g-0", link="https://www.nato.int/2.htm"), 4)
    clash = entry(
        title="Second", guid="https://www.nato.int/1.htm", link="https://www.nato.int/2.htm"
    )
    identified = dedupe.unique_identified([clash], "nato")
    held = {"https://www.nato.int/1.htm"}
    (intent,) = dedupe.decide(identified, [holder], Origin.FEED, 9, held)
    assert intent.action is Action.NEW
    assert intent.atom_id.startswith("tag:aggregator.invalid,2022-11-09:feed/")
    assert intent.atom_id != dedupe.decide(identified, [holder], Origin.FEED, 10, held)[0].atom_id
    assert intent.canonical_url is None


# --- when entries left unread bear on the changed ones -----------------------------------------


def unread(e: Entry, item_id: int) -> KnownEntry:
    return KnownEntry(item_id, dedupe.content_hash(e), dedupe.identify(e, "nato"))


def changed(*entries: Entry) -> list:
    return [(e, dedupe.identify(e, "nato")) for e in entries]


N1, N2, N3 = (f"https://www.nato.int/cps/en/natohq/news_{n}.htm" for n in (1, 2, 3))


def test_changed_entries_alone_decide_as_all_do_when_nothing_is_shared():
    x, y = entry("Press conference", link=N1), entry("Press conference", link=N2)
    # y changed its text; x, of the same title and day, is unread. y's link settles it.
    y2 = entry("Press conference", link=N2, summary_html="<p>New</p>")
    assert not dedupe.needs_every_entry(changed(y2), [unread(x, 1)], [stored(y, 2)])


@pytest.mark.parametrize(
    ("case", "new", "known"),
    [
        ("same guid: a repeat", entry("B", guid="g", link=N2), entry("A", guid="g", link=N1)),
        ("same link: a repeat", entry("B", link=N1), entry("A", link=N1)),
        # y's link moved (N3 is unknown): only its title and day can find its story
        ("moved, same title and day", entry("Press", link=N3), entry("Press", link=N1)),
    ],
)
def test_changed_entries_that_share_a_key_with_an_unread_one_need_every_entry(case, new, known):
    assert dedupe.needs_every_entry(changed(new), [unread(known, 1)], [])


def test_a_changed_entry_that_may_be_an_unread_entrys_item_needs_every_entry():
    x = entry("Allies meet", link=N1)
    moved = entry("Allies meet again", link=N2)  # found by link to the item x went to
    assert dedupe.needs_every_entry(changed(moved), [unread(x, 7)], [stored(x, 7)])


@pytest.mark.parametrize(
    ("case", "item", "kept"),
    [
        ("found by its guid, content as given", KnownItem("nato\x1fg", N1, "h"), True),
        ("another import revised it", KnownItem("nato\x1fg", N1, "other"), False),
        ("its item is another guid's now", KnownItem("nato\x1fh", N1, "h"), False),
    ],
)
def test_an_entry_with_a_guid_stays_unread_while_its_item_is_found_by_it(case, item, kept):
    known = KnownEntry(1, "h", Identity("nato\x1fg", N1, "f", "t"))
    assert dedupe.still_known(known, item) is kept


def test_an_entry_without_a_guid_stays_unread_only_while_its_link_finds_its_item():
    by_link = KnownEntry(1, "h", Identity(None, N1, "f", "t"))
    assert dedupe.still_known(by_link, KnownItem(None, N1, "h"))
    assert not dedupe.still_known(by_link, KnownItem(None, N2, "h"))  # found by title and day
    bare = KnownEntry(1, "h", Identity(None, None, "f", "t"))
    assert not dedupe.still_known(bare, KnownItem(None, None, "h"))
