"""SQLite state files in WAL mode, their checkpoints made off the event loop's thread.

In WAL mode SQLite checkpoints by itself inside the commit that takes the log past `wal_autocheckpoint` pages
(1,000 by default). That checkpoint copies the log's pages back into the database and, with `synchronous=NORMAL`,
fsyncs both files, all within that commit on the event loop's thread. Measured on the notifier's outbox, it cost
about 13 µs of CPU per delivery, plus a stall at each checkpoint while the fsync waits.

`open_wal` opens a file with the automatic checkpoint set far off, as a safety net only, and registers the file with
the process's `Checkpointer`. That is one daemon thread, which runs `PRAGMA wal_checkpoint(PASSIVE)` on a connection
of its own to each registered file every `interval_s`. The `sqlite3` module releases the GIL while SQLite works, so
the copying and the fsync run beside the loop, on the other core. A PASSIVE checkpoint never blocks a writer: pages
it cannot copy yet wait for its next round. Durability is unchanged: a commit is in the log whoever checkpoints it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# The automatic checkpoint as a safety net (about 80 MiB of log at 4 KiB pages), should the thread fall behind.
SAFETY_NET_PAGES = 20_000
INTERVAL_S = 0.5


class Checkpointer:
    """Checkpoints registered WAL files from a thread of its own, every `interval_s`."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._files: dict[Path, sqlite3.Connection | None] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def add(self, path: Path) -> None:
        """Checkpoint this file from now on (its thread starts with the first file)."""
        with self._lock:
            self._files.setdefault(Path(path), None)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)
                self._thread.start()

    def remove(self, path: Path) -> None:
        """Stop checkpointing this file and close the connection to it (before the file is closed or deleted)."""
        with self._lock:
            conn = self._files.pop(Path(path), None)
            if conn is not None:
                conn.close()

    def run_once(self) -> int:
        """Checkpoint every registered file once; returns how many log pages were copied back in all."""
        copied = 0
        with self._lock:  # add/remove wait for the round: a file is never closed or deleted under a checkpoint
            for path, conn in list(self._files.items()):
                try:
                    if conn is None:
                        # mode=rw: never create a file that was deleted meanwhile.
                        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, check_same_thread=False)
                        self._files[path] = conn
                    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    copied += max(0, int(row[2])) if row is not None else 0
                except sqlite3.Error as exc:
                    log.warning("WAL checkpoint failed; will retry", extra={"path": str(path), "error": str(exc)})
                    if conn is not None:
                        conn.close()
                    self._files[path] = None
        return copied

    def stop(self) -> None:
        """Stop the thread and close its connections (tests)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)
        with self._lock:
            for conn in self._files.values():
                if conn is not None:
                    conn.close()
            self._files.clear()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.run_once()


CHECKPOINTER = Checkpointer()


def open_wal(path: Path, checkpointer: Checkpointer | None = None) -> sqlite3.Connection:
    """Open (or create) a state file in WAL mode with `synchronous=NORMAL`, checkpointed by the background thread.

    Autocommit connection (`isolation_level=None`: the caller writes BEGIN/COMMIT), usable from another thread
    than the one that opened it. Close it with `close_wal`."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit survives the process being killed (not a power cut) without an fsync per commit.
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}")
    (checkpointer or CHECKPOINTER).add(Path(path))
    return db


def close_wal(db: sqlite3.Connection, path: Path, checkpointer: Checkpointer | None = None) -> None:
    """Stop checkpointing a state file, then close it (the last connection's close checkpoints what is left)."""
    (checkpointer or CHECKPOINTER).remove(Path(path))
    db.close()


def remove_wal_file(path: Path) -> None:
    """Delete a closed state file with its write-ahead log and shared-memory file."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
