"""The archive lock across real processes: one holder, named in the refusal, freed by kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aggregator.lock import WRITER_WAIT, ArchiveLock, LockHeld, holder, lock_path
from tests.conftest import ROOT

HOLD = """
import sys, time
from aggregator.lock import ArchiveLock
lock = ArchiveLock(*sys.argv[1:3]).acquire()
print("locked", flush=True)
time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 60)
"""


def hold_in_another_process(
    database: Path, purpose: str = "daemon", seconds: float = 60
) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(database), purpose, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdout.readline().strip() == "locked"
    return child


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "archive" / "aggregator.db"


def test_a_second_process_is_refused_with_the_holders_pid(database):
    child = hold_in_another_process(database)
    try:
        assert holder(database) == child.pid
        with pytest.raises(LockHeld) as refused:
            ArchiveLock(database).acquire()
        assert refused.value.pid == child.pid
        assert str(refused.value) == (
            f"archive {database} is in use by the daemon (pid {child.pid}); it polls and "
            f"publishes on its own, and `kill -HUP {child.pid}` reloads config"
        )
    finally:
        child.kill()
        child.wait()


def test_kill_9_of_the_holder_frees_the_lock(database):
    child = hold_in_another_process(database)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert holder(database) is None
    with ArchiveLock(database) as lock:
        assert lock.held
        assert holder(database) == os.getpid()
        assert lock_path(database).read_text().strip() == str(os.getpid())


def test_the_lock_is_released_on_exit_and_can_be_taken_again(database):
    assert holder(database) is None  # no lock file yet: nobody holds it, none is created
    assert not lock_path(database).exists()
    with ArchiveLock(database), pytest.raises(LockHeld):  # a second open in this process too
        ArchiveLock(database).acquire()
    assert holder(database) is None
    again = ArchiveLock(database).acquire()
    again.release()
    again.release()  # releasing twice is harmless
    assert holder(database) is None


def test_a_process_that_exits_normally_leaves_no_holder(database):
    script = (
        "import sys; from aggregator.lock import ArchiveLock; ArchiveLock(sys.argv[1]).acquire()"
    )
    subprocess.run([sys.executable, "-c", script, str(database)], check=True, cwd=ROOT)
    assert holder(database) is None
    ArchiveLock(database).acquire().release()


def test_a_writer_waits_for_a_holder_that_lets_go_soon(database):
    child = hold_in_another_process(database, "fetch", seconds=1)
    try:
        with ArchiveLock(database, "publish").acquire(wait=WRITER_WAIT) as lock:
            assert lock.held and holder(database) == os.getpid()
            assert lock_path(database).read_text() == f"{os.getpid()}\npublish\n"
    finally:
        child.kill()
        child.wait()


def test_a_writer_refuses_after_its_wait_naming_what_holds_the_lock(database):
    child = hold_in_another_process(database, "snapshot restore")
    try:
        with pytest.raises(LockHeld) as refused:
            ArchiveLock(database, "fetch").acquire(wait=0.3)
        assert (refused.value.pid, refused.value.holder) == (child.pid, "snapshot restore")
        assert str(refused.value) == (
            f"archive {database} is in use by aggregator snapshot restore (pid {child.pid})"
        )
    finally:
        child.kill()
        child.wait()


# --- every writing command takes the lock -------------------------------------------------


def start_cli(project, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "aggregator", "--config", str(project.config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=project.root,
    )


WRITERS = (("fetch",), ("import-seeds",), ("publish",), ("reclassify",))


def test_one_off_writers_refuse_while_the_lock_is_held_and_change_nothing(project):
    project.replace_in_config('url = "https://www.nato.int', 'url = "http://127.0.0.1:9')
    project.cli("sources")  # an archive with no items yet
    holding = hold_in_another_process(project.database)  # as a running daemon does
    try:
        before = sorted(p.name for p in project.root.rglob("*"))
        database = project.database.read_bytes()
        running = [start_cli(project, *args) for args in WRITERS]  # at once: each waits
        for args, proc in zip(WRITERS, running, strict=True):
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 1, (args, out, err)
            assert err == (
                f"error: archive {project.database} is in use by the daemon "
                f"(pid {holding.pid}); it polls and publishes on its own, and "
                f"`kill -HUP {holding.pid}` reloads config\n"
            ), args
        assert project.database.read_bytes() == database
        assert sorted(p.name for p in project.root.rglob("*")) == before
    finally:
        holding.kill()
        holding.wait()
    assert "10 new" in project.cli("import-seeds").stdout  # once it is free, they run
