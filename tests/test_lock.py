"""The archive lock across real processes: one holder, named in the refusal, freed by kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aggregator.lock import ArchiveLock, LockHeld, holder, lock_path
from tests.conftest import ROOT

HOLD = """
import sys, time
from aggregator.lock import ArchiveLock
lock = ArchiveLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def hold_in_another_process(database: Path) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(database)],
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
            f"archive {database} is in use by another daemon (pid {child.pid})"
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
