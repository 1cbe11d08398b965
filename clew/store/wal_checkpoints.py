"""SQLite WAL checkpoints on a background thread, so no commit waits for one.

A checkpoint copies the write-ahead log back into the database file and fsyncs both: tens of
milliseconds. SQLite's automatic checkpoint charges that to whichever commit happens to cross
the threshold, so one registration in a few hundred took 25-30 ms instead of 0.3 ms, about a
quarter of the average (benchmarks/bench_registry.py). Here a daemon thread checkpoints shortly
after writes instead, on a connection of its own; ``PASSIVE`` never blocks a writer or a
reader, and writers keep appending to the log while it runs. Durability is unchanged: a
commit is durable once it is in the log, whoever checkpoints it later.

After copying, the thread asks for a ``RESTART`` so the next commit writes the log from its
start again. Without it a steady writer never gives a passive checkpoint the quiet moment SQLite
needs to restart the log, which then grows to the backstop (~128 MiB): every commit extends
the file, and an fsync that must also record a new file size costs about 0.1-0.2 ms more than
one that overwrites blocks already allocated (docs/benchmarks.md), a tenth of a durable
registration. ``RESTART`` holds new writers off while it runs, so it runs right after the
passive copy, when only the frames of the last few commits are left to copy, and gives up after
``RESTART_WAIT_MS`` if a reader or writer is busy (the next round tries again).

SQLite's automatic checkpoint stays on at a higher threshold as a backstop, for a process that
writes faster than this thread keeps up, or whose thread has not started yet.
"""

from __future__ import annotations

import sqlite3
import threading

# After a write, wait this long before checkpointing, so a burst of commits shares one
# checkpoint (and its two fsyncs) instead of paying one each.
SETTLE_S = 0.2
# A store nobody writes to for this long gets its thread and connection back; the next write
# starts them again. Keeps stores a program opened and forgot from holding threads and files.
IDLE_EXIT_S = 30.0
# How long a restart may wait for a writer or reader to finish before it gives up this round:
# the longest a commit waits behind the checkpointer.
RESTART_WAIT_MS = 20


class WalCheckpointer:
    """Checkpoints one SQLite database's WAL in the background after it was written to."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._written = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def note_write(self) -> None:
        """Called after every commit; cheap. (Re)starts the thread when there is none: on first
        use, after it exited idle, and in a forked child, which inherits the object but not the
        thread. A write that races an idle exit goes unnoticed until the next one, which only
        delays a checkpoint."""
        self._written.set()
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._start()

    def close(self) -> None:
        """Stop the thread after its current checkpoint, before the engine is disposed."""
        self._closing.set()
        self._written.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join()

    def _start(self) -> None:
        # No lock: one held across a fork would deadlock the child. Two writers racing here
        # start two threads at worst, and both stop at idle or on close.
        if self._closing.is_set():
            return
        self._thread = threading.Thread(
            target=self._run, name=f"clew-wal-checkpoint {self._path}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        # Not a pooled connection: a writer handed two connections in turn would find its
        # page cache stale (the other one wrote) and reload it on every transaction.
        try:
            connection = sqlite3.connect(self._path, timeout=RESTART_WAIT_MS / 1000)
        except sqlite3.Error:
            return  # the store's directory is gone; nothing left to checkpoint
        try:
            while self._written.wait(IDLE_EXIT_S):
                if self._closing.wait(SETTLE_S):
                    return
                self._written.clear()
                if self._closing.is_set():  # close() came after the wait: its wake-up is gone
                    return
                _checkpoint(connection)
        finally:
            connection.close()


def _checkpoint(connection: sqlite3.Connection) -> None:
    try:
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
    except sqlite3.Error:
        # Busy (another process is checkpointing) or the store is going away: the next write
        # wakes the thread again, and SQLite's own checkpoint is the backstop.
        return
