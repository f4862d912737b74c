"""The CLI as users run it: a subprocess, one-line errors, documented commands and keys."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import click
import pytest

from aggregator import config as config_module
from aggregator.cli import cli
from tests.conftest import ROOT, run_cli

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_first_import_writes_every_feed_even_one_no_item_matches(project):
    project.cli("import-seeds")
    slugs = re.findall(r'^slug = "([a-z0-9-]+)"', project.config.read_text(), re.MULTILINE)
    assert "indo-pacific" in slugs  # no seed is about the Indo-Pacific: an empty feed
    for slug in slugs:
        for extension in ("atom", "rss", "json"):
            assert (project.feeds / f"{slug}.{extension}").is_file(), (slug, extension)


def test_import_seeds_twice_then_items_as_json(project):
    first = project.cli("import-seeds")
    assert "10 new" in first.stdout
    second = project.cli("import-seeds")
    assert "0 new" in second.stdout and "10 unchanged" in second.stdout
    lines = project.cli("items", "--json").stdout.splitlines()
    items = [json.loads(line) for line in lines]
    assert len(items) == 10
    for item in items:
        assert {
            "id",
            "title",
            "url",
            "published",
            "updated",
            "origin",
            "source",
            "topics",
            "score",
        } <= set(item)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", item["published"])
        assert item["origin"] == "seed" and item["url"] is None
    published = [item["published"] for item in items]
    assert published == sorted(published, reverse=True)
    assert {item["published"][:10] for item in items} >= {"2022-02-23", "2021-07-13", "2023-05-23"}
    assert len(project.cli("items", "--json", "--limit", "3").stdout.splitlines()) == 3
    assert project.cli("items", "--json", "--origin", "feed").stdout == ""


def test_daemon_on_a_fresh_archive_shows_the_seeds(project):
    port = _free_port()
    project.replace_in_config("port = 8080", f"port = {port}")
    project.replace_in_config(
        'url = "https://www.nato.int/cps', 'enabled = false\nurl = "https://www.nato.int/cps'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "--config", str(project.config), "daemon"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=project.root,
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "daemon started" in line:
                break
        table = "".join(lines)
        assert "The archive holds 10 items" in table and "Serbia" in table, table
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_config_errors_are_one_line_with_exit_status_2(project):
    project.replace_in_config('interval = "30m"', 'interval = "soon"')
    result = project.cli("items", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f'{project.config}: sources[0].interval: must be a duration like "15m", got "soon"'
    )
    assert result.stdout == ""
    assert not project.database.exists()  # stopped before doing anything


def test_missing_config_file(tmp_path):
    result = run_cli("--config", str(tmp_path / "none.toml"), "check-config", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == f"{tmp_path / 'none.toml'}: file not found"


def test_config_from_environment(project, tmp_path):
    result = run_cli("check-config", env={"AGGREGATOR_CONFIG": str(project.config)}, cwd=tmp_path)
    assert f"{project.config}: ok" in result.stdout


def test_other_errors_are_one_line_and_non_zero(project, tmp_path):
    bad = tmp_path / "only-ages.txt"
    bad.write_text("Story\n\n2 days ago\nNo date.\n", encoding="utf-8")
    result = project.cli("import-seeds", str(bad), check=False)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "only-ages.txt" in result.stderr and "--reference-date" in result.stderr
    assert "Traceback" not in result.stderr
    ok = project.cli("import-seeds", str(bad), "--reference-date", "2024-01-10")
    assert "1 new" in ok.stdout
    missing = project.cli("items", "--feed", "nope", check=False)
    assert missing.returncode == 1 and 'no feed "nope"' in missing.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("items", "--limit", "0"), "error: Invalid value for '--limit': 0 is not in the range"),
        (("explain",), "error: Missing argument 'ITEM'. (see 'aggregator explain --help')"),
        (("sources", "import", "none.opml"), "(see 'aggregator sources import --help')"),
        (("nosuch",), "error: No such command 'nosuch'. (see 'aggregator --help')"),
        (("--bogus", "items"), "error: No such option '--bogus'. (see 'aggregator --help')"),
    ],
)
def test_a_wrong_option_or_argument_is_one_line_naming_the_help(project, args, said):
    result = project.cli(*args, check=False)
    assert result.returncode == 2
    assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("group", [(), ("snapshot",)])
def test_a_group_run_alone_shows_its_help_as_click_does(group):
    result = run_cli(*group, check=False)
    shown = result.stdout + result.stderr  # click 8.2+ writes this help to stderr, exit 2
    assert shown.startswith(f"Usage: aggregator {' '.join(group)}".rstrip())
    assert "Commands:" in shown and "error:" not in shown


def test_check_config_prints_a_summary(project):
    out = project.cli("check-config").stdout
    assert "ok" in out and "nato-news" in out and "every 30m" in out


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    names = []
    for name, command in group.commands.items():
        names.append(f"{prefix}{name}")
        if isinstance(command, click.Group):
            names.extend(_commands(command, f"{prefix}{name} "))
    return names


def test_every_cli_command_is_documented_in_the_readme():
    undocumented = [name for name in _commands(cli) if f"`{name}" not in README]
    assert undocumented == []


def test_every_config_key_is_documented_in_the_readme():
    sections = config_module.SECTIONS.items()
    keys = [f"{section}.{key}" for section, table in sections for key in table]
    assert [key for key in keys if f"`{key}`" not in README] == []


def test_reclassify_explain_and_search(project):
    project.cli("import-seeds")
    assert "reclassified 10 items" in project.cli("reclassify").stdout
    items = [json.loads(line) for line in project.cli("items", "--json").stdout.splitlines()]
    serbia = next(item for item in items if "Serbia" in item["title"])
    assert serbia["topics"] == ["partnerships"] and serbia["score"] >= 4
    explained = project.cli("explain", str(serbia["id"])).stdout
    assert '"Serbia"' in explained and "feed partnerships: in" in explained
    ibans = [item for item in items if item["title"].startswith("IBAN")]
    assert "feed partnerships: out" in project.cli("explain", str(ibans[0]["id"])).stdout
    in_feed = project.cli("items", "--json", "--feed", "partnerships").stdout.splitlines()
    assert len(in_feed) == 5
    found = project.cli("search", "--json", "Serbia").stdout.splitlines()
    assert [json.loads(line)["id"] for line in found] == [serbia["id"]]
    bad = project.cli("search", 'fts:"unbalanced', check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error: cannot search")
    missing = project.cli("explain", "9999", check=False)
    assert missing.returncode == 1 and "no item 9999" in missing.stderr


def test_output_into_a_closed_pipe_ends_quietly(project):
    """`aggregator items | head -1`: the reader is gone before the output ends."""
    project.cli("import-seeds")
    for args in (["items"], ["items", "--json"], ["sources"]):
        read, write = os.pipe()
        os.close(read)  # a reader that has already gone, as `head -1` soon is
        try:
            done = subprocess.run(
                [sys.executable, "-m", "aggregator", "--config", str(project.config), *args],
                stdout=write,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
                cwd=project.root,
            )
        finally:
            os.close(write)
        assert done.stderr == "", args
        assert done.returncode in (0, 1), args
