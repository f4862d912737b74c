"""opml: another reader's subscriptions in, `[[sources]]` out (issue 13)."""

from __future__ import annotations

import shutil

import pytest

from aggregator import config as config_module
from aggregator.opml import (
    NewSource,
    OpmlError,
    Subscription,
    append_sources,
    new_sources,
    sources_toml,
    subscriptions,
)
from tests.conftest import ROOT

OPML = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>My subscriptions</title></head>
  <body>
    <outline text="Defence">
      <outline type="rss" text="NATO News" title="NATO News"
               xmlUrl="https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml"/>
      <outline type="rss" text="Defence One" xmlUrl="https://www.defenseone.com/rss/all/"
               htmlUrl="https://www.defenseone.com/"/>
    </outline>
    <outline type="rss" text="\xd0\x9d\xd0\xbe\xd0\xb2\xd0\xbe\xd1\x81\xd1\x82\xd0\xb8"
             xmlUrl="https://news.example.ua/feed"/>
    <outline type="rss" text="Defence One again" xmlUrl="https://www.defenseone.com/rss/all/"/>
    <outline type="rss" text="Not http" xmlUrl="file:///etc/passwd"/>
    <outline text="A folder without a feed"/>
  </body>
</opml>"""


def test_every_feed_outline_once_whatever_its_folder():
    assert subscriptions(OPML) == [
        Subscription("NATO News", "https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml"),
        Subscription(
            "Defence One", "https://www.defenseone.com/rss/all/", "https://www.defenseone.com/"
        ),
        Subscription("Новости", "https://news.example.ua/feed"),
    ]


def test_new_sources_skip_known_urls_and_get_free_ids():
    found = subscriptions(OPML)
    known_url = "https://www.nato.int/cps/rss/en/natohq/rssFeed.xsl/rssFeed.xml"
    assert new_sources(found, ["defence-one"], [known_url]) == [
        NewSource("defence-one-2", "Defence One", "https://www.defenseone.com/rss/all/"),
        NewSource("news-example-ua", "Новости", "https://news.example.ua/feed"),
    ]


def test_a_new_source_id_keeps_the_letters_of_an_accented_title():
    found = [Subscription("Défense & Sécurité", "https://presse.example.fr/rss")]
    (source,) = new_sources(found, [], [])
    assert source.id == "defense-securite"
    config_module.SOURCE["id"].check(source.id)  # what config.toml accepts


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<rss/>", "not OPML: the document is <rss>"),
        (b"<opml", "not readable OPML"),
        (
            b'<!DOCTYPE opml [<!ENTITY a "aaaa">]><opml><body/></opml>',
            "declares entities",
        ),
    ],
)
def test_a_file_that_is_not_opml_is_one_clear_error(body, message):
    with pytest.raises(OpmlError, match=message):
        subscriptions(body)


def test_appended_sources_load_and_the_config_keeps_its_comments(tmp_path):
    path = tmp_path / "config.toml"
    shutil.copy(ROOT / "config.toml", path)
    before = path.read_text(encoding="utf-8")
    config = config_module.load(path)
    added = new_sources(
        subscriptions(OPML), [s.id for s in config.sources], [s.url for s in config.sources]
    )
    append_sources(path, added, "subscriptions.opml")
    after = path.read_text(encoding="utf-8")
    assert after.startswith(before.rstrip("\n"))  # every line kept as it was
    assert "# Added from subscriptions.opml by `aggregator sources import`." in after
    reloaded = config_module.load(path)
    assert [s.id for s in reloaded.sources] == [
        "nato-news",
        "defence-one",
        "news-example-ua",
    ]
    assert reloaded.sources[1].url == "https://www.defenseone.com/rss/all/"


def test_sources_toml_is_what_append_would_add():
    text = sources_toml([NewSource("defence-one", "Defence One", "https://d.example/rss")])
    assert text == (
        '[[sources]]\nid = "defence-one"\ntitle = "Defence One"\nurl = "https://d.example/rss"\n'
    )
