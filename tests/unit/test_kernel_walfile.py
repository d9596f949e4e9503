"""WAL state files checkpointed by the kernel's thread, not inside the writers' commits."""

from __future__ import annotations

import time
from pathlib import Path

from gridhub.kernel.walfile import SAFETY_NET_PAGES, Checkpointer, close_wal, open_wal


def write_rows(db: object, n: int) -> None:
    execute = db.execute  # type: ignore[attr-defined]
    execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB)")
    for start in range(0, n, 100):
        execute("BEGIN IMMEDIATE")
        for k in range(start, start + 100):
            execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, b"x" * 1000))
        execute("COMMIT")


def test_commits_leave_the_log_to_the_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "p0.sqlite"
    checkpointer = Checkpointer(interval_s=3600)  # rounds only when asked
    db = open_wal(path, checkpointer)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == SAFETY_NET_PAGES
        write_rows(db, 3000)  # ~3 MB: past SQLite's own 1,000-page checkpoint, which no longer runs
        before = path.stat().st_size
        assert Path(f"{path}-wal").stat().st_size > 2_000_000
        assert checkpointer.run_once() > 700  # the log's pages copied back into the database
        assert path.stat().st_size > before + 2_000_000
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 3000
    finally:
        close_wal(db, path, checkpointer)
        checkpointer.stop()


def test_the_thread_checkpoints_by_itself(tmp_path: Path) -> None:
    path = tmp_path / "p1.sqlite"
    checkpointer = Checkpointer(interval_s=0.05)
    db = open_wal(path, checkpointer)
    try:
        write_rows(db, 2000)
        deadline = time.monotonic() + 10
        while path.stat().st_size < 1_500_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size >= 1_500_000
    finally:
        close_wal(db, path, checkpointer)
        checkpointer.stop()


def test_a_removed_file_is_never_opened_again(tmp_path: Path) -> None:
    path = tmp_path / "p2.sqlite"
    checkpointer = Checkpointer(interval_s=3600)
    db = open_wal(path, checkpointer)
    write_rows(db, 100)
    checkpointer.run_once()
    close_wal(db, path, checkpointer)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    checkpointer.add(path)  # registered again but gone from disk: a failed round, not a new empty file
    assert checkpointer.run_once() == 0
    assert not path.exists()
    checkpointer.stop()
