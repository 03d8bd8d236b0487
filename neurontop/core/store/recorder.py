"""Writing profiles: the recorder (live, `record`, the r key) and `import` of a neuron-monitor log.

Raw report lines are stored, zstd-compressed in chunks of consecutive samples (one chunk a
second at most, so a crash loses at most the last second). Chunks are first written as JSON lines
(cheap); every COMPACT_ROWS samples a background thread rewrites the sealed ones as one columnar
chunk (colcodec.py), which is 5-6x smaller and returns the same bytes. docs/profile-format.md is
the spec; profile.py reads what this writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time

import zstandard

from ..telemetry.logs import InputError
from ..telemetry.sample import Sample
from . import colcodec
from .format import (
    APPLICATION_ID,
    CHECKPOINT_S,
    CHUNK_CHECKSUM,
    CHUNK_RAW_BYTES,
    COMPACT_ROWS,
    FORMAT_VERSION,
    SCHEMA,
    ZSTD_LEVEL,
    ProfileError,
)


class Recorder:
    """Appends raw reports to a profile; thread-safe; commits at least every `flush_s` seconds.

    A timer thread commits what is pending even when no report follows (a stream that goes quiet,
    then the recorder is killed, loses nothing it had read more than `flush_s` earlier), and copies
    the write-ahead log into the main file every CHECKPOINT_S, so a copy of the .ntprof alone, taken
    while recording, holds all but the last few seconds. `autoflush=False` (the shipped-profile
    script, which feeds a fake clock) commits only on append and close.
    """

    def __init__(self, path: str, meta: dict | None = None, flush_s: float = 1.0, chunk_max: int = 600,
                 autoflush: bool = True) -> None:
        self.path = path
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ProfileError(f"{path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise ProfileError(f"{path}: folder {folder} is not writable")
        if os.path.exists(path):
            raise ProfileError(f"{path}: already exists (choose another name)")
        try:
            self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            # compaction frees the JSON-lines chunks' pages: reused while recording, returned at close
            self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self.db.executescript(SCHEMA)
            m = {"format_version": str(FORMAT_VERSION), "created_unix": f"{time.time():.3f}",
                 "writer": "neuron-top", "chunk_checksum": CHUNK_CHECKSUM}
            for k, v in (meta or {}).items():
                m[k] = v if isinstance(v, str) else json.dumps(v)
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(m.items()))
        except sqlite3.Error as exc:
            raise ProfileError(f"{path}: cannot create profile: {exc}") from None
        self.flush_s = flush_s
        self.chunk_max = chunk_max
        self.lock = threading.Lock()
        self.pending: list[bytes] = []
        self.pending_times: list[float] = []
        self.pending_events: list[tuple[float, str, str]] = []
        self.first_seq = 0
        self.count = 0
        self.last_flush = self.last_commit = time.monotonic()
        self.cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
        self.fast = zstandard.ZstdCompressor(level=1, write_checksum=True)
        self.open_id: int | None = None
        self.open_first = 0
        self.open_lines: list[bytes] = []
        self.open_times: list[float] = []
        self.open_raw = 0
        self.closed = False
        # sealed JSON-lines chunks waiting to be rewritten as one columnar chunk
        self.sealed: list[tuple[int, int, list[bytes]]] = []  # (chunk id, first index, lines)
        self.sealed_rows = 0
        self.compact_error: str | None = None
        self._compactor: threading.Thread | None = None
        self.error: ProfileError | None = None  # a failed write of the timer thread, raised at the next append
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        if autoflush:
            self._timer = threading.Thread(target=self._timer_loop, name="ntprof-flush", daemon=True)
            self._timer.start()

    def _timer_loop(self) -> None:
        last_checkpoint = time.monotonic()
        while not self._stop.wait(self.flush_s / 2):
            with self.lock:
                if self.closed:
                    return
                now = time.monotonic()
                try:
                    if now - self.last_commit >= self.flush_s:
                        self._flush(now)
                    if now - last_checkpoint >= CHECKPOINT_S:
                        last_checkpoint = now
                        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except ProfileError as exc:
                    self.error = exc
                    return
                except sqlite3.Error:
                    pass  # a checkpoint that could not run now runs next time; the WAL still has the data

    def append(self, line: bytes, sample: Sample, now: float | None = None) -> None:
        with self.lock:
            if self.error is not None:
                raise self.error
            if self.closed:
                return
            self.pending.append(line.rstrip(b"\n"))
            self.pending_times.append(sample.time_s)
            for e in sample.events:
                self.pending_events.append((sample.time_s, str(e.get("type", "event")), json.dumps(e)))
            now = time.monotonic() if now is None else now
            if now - self.last_flush >= self.flush_s or len(self.pending) >= self.chunk_max:
                self._flush(now)
            backlog = self.sealed_rows >= 4 * COMPACT_ROWS
        compactor = self._compactor
        if backlog and compactor is not None:
            compactor.join()  # writing faster than the compactor keeps up (an import): wait, bound memory

    def event(self, time_s: float, kind: str, data: dict) -> None:
        with self.lock:
            self.pending_events.append((time_s, kind, json.dumps(data)))

    def _flush(self, now: float | None = None, final: bool = False) -> None:
        """Commit what arrived since the last flush.

        The open chunk grows (up to CHUNK_RAW_BYTES of raw reports) and is rewritten at each flush
        with a fast level, so a crash loses at most the last second; when it is full (or on close)
        it is compressed once more at ZSTD_LEVEL. Bigger chunks compress about twice as well.
        """
        self.last_flush = time.monotonic() if now is None else now
        self.last_commit = time.monotonic()  # the timer's clock (the caller's `now` may be a fake one)
        if not self.pending and not self.pending_events and not (final and self.open_id is not None):
            return
        try:
            self.db.execute("BEGIN")
            if self.pending:
                first_pos = len(self.open_lines)
                self.open_lines.extend(self.pending)
                self.open_times.extend(self.pending_times)
                self.open_raw += sum(len(x) + 1 for x in self.pending)
            if self.open_lines and (self.pending or final):
                full = final or self.open_raw >= CHUNK_RAW_BYTES
                blob = (self.cctx if full else self.fast).compress(b"\n".join(self.open_lines))
                if self.open_id is None:
                    cur = self.db.execute(
                        "INSERT INTO chunks (first_seq, n, t_start, t_end, data) VALUES (?, ?, ?, ?, ?)",
                        (self.open_first, len(self.open_lines), self.open_times[0], self.open_times[-1], blob))
                    self.open_id = cur.lastrowid
                else:
                    self.db.execute("UPDATE chunks SET n = ?, t_end = ?, data = ? WHERE id = ?",
                                    (len(self.open_lines), self.open_times[-1], blob, self.open_id))
                if self.pending:
                    self.db.executemany(
                        "INSERT INTO samples (idx, time_s, chunk, pos) VALUES (?, ?, ?, ?)",
                        [(self.count + k, t, self.open_id, first_pos + k) for k, t in enumerate(self.pending_times)])
                if full:
                    assert self.open_id is not None  # (set above when the chunk was written)
                    self.sealed.append((self.open_id, self.open_first, self.open_lines))
                    self.sealed_rows += len(self.open_lines)
                    self.open_first = self.count + len(self.pending)
                    self.open_id, self.open_lines, self.open_times, self.open_raw = None, [], [], 0
            if self.pending_events:
                self.db.executemany("INSERT INTO events (time_s, kind, data) VALUES (?, ?, ?)", self.pending_events)
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self.closed = True
            raise ProfileError(f"{self.path}: write failed: {exc}") from None
        self.count += len(self.pending)
        self.pending.clear()
        self.pending_times.clear()
        self.pending_events.clear()
        if self.sealed_rows >= COMPACT_ROWS and not final and (self._compactor is None or not self._compactor.is_alive()):
            self._compactor = threading.Thread(target=self._compact_loop, name="ntprof-compact", daemon=True)
            self._compactor.start()

    def _take_batch(self, final: bool = False) -> list[tuple[int, int, list[bytes]]]:
        """Whole sealed chunks from the front, about COMPACT_ROWS samples (caller holds the lock)."""
        if self.sealed_rows < COMPACT_ROWS and not final:
            return []
        batch, rows = [], 0
        while self.sealed and rows < COMPACT_ROWS:
            item = self.sealed.pop(0)
            batch.append(item)
            rows += len(item[2])
        self.sealed_rows -= rows
        return batch

    def _compact_loop(self) -> None:
        while True:
            with self.lock:
                batch = [] if self.closed else self._take_batch()
            if not batch:
                return
            self._compact(batch)

    def _compact(self, batch: list[tuple[int, int, list[bytes]]]) -> None:
        """Rewrite sealed JSON-lines chunks as one columnar chunk (runs outside the lock: encoding
        takes a second or two for 600 large reports; the swap is one short transaction)."""
        if not batch:
            return
        lines = [ln for _, _, ls in batch for ln in ls]
        first = batch[0][1]
        try:
            blob = colcodec.encode(lines)
            if blob is None:
                return  # not columnar material: the JSON-lines chunks stay as they are
            # its own compressor: a zstd context must not be shared between threads
            data = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compress(blob)
        except MemoryError:
            return
        ids = [cid for cid, _, _ in batch]
        with self.lock:
            if self.closed:
                return
            try:
                self.db.execute("BEGIN")
                marks = ",".join("?" * len(ids))
                t0, t1 = self.db.execute(f"SELECT min(t_start), max(t_end) FROM chunks WHERE id IN ({marks})",
                                         ids).fetchone()
                cur = self.db.execute("INSERT INTO chunks (first_seq, n, t_start, t_end, data) VALUES (?, ?, ?, ?, ?)",
                                      (first, len(lines), t0, t1, data))
                new = cur.lastrowid
                self.db.execute("UPDATE samples SET chunk = ?, pos = idx - ? WHERE idx BETWEEN ? AND ?",
                                (new, first, first, first + len(lines) - 1))
                self.db.execute(f"DELETE FROM chunks WHERE id IN ({marks})", ids)
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self.compact_error = str(exc)  # the JSON-lines chunks are intact: nothing is lost

    def _rollback(self) -> None:
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction was open

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def close(self) -> None:
        self._stop.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join()
        with self.lock:
            if self.error is not None:
                self.closed = True
                self.db.close()
                raise self.error
            if self.closed:
                return
            try:
                self._flush(final=True)  # seals the open chunk into self.sealed
            except BaseException:
                self.closed = True
                self.db.close()
                raise
            compactor = self._compactor
        if compactor is not None:
            compactor.join()
        while True:
            with self.lock:
                batch = self._take_batch(final=True)
            if not batch:
                break
            self._compact(batch)
        with self.lock:
            try:
                self.db.executescript("PRAGMA incremental_vacuum;")  # (execute() frees only one page)
                # Leave a plain rollback-journal file: it opens read-only anywhere, with no -wal/-shm.
                self.db.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.Error:
                pass  # a full disk here costs free pages, never data
            finally:
                self.closed = True
                self.db.close()


def import_log(path_in: str, path_out: str, skip_bad: bool = False, on_skip=None) -> int:
    """Convert a neuron-monitor JSON-lines log (plain, gz, zst) into a profile. Returns samples written.
    It is written under a temporary name and renamed at the end: a failed import leaves nothing."""
    from ..telemetry.logs import open_log, read_reports

    if os.path.exists(path_out):
        raise ProfileError(f"{path_out}: already exists (choose another name)")
    tmp = path_out + ".part"
    for leftover in (tmp, tmp + "-wal", tmp + "-shm"):
        if os.path.exists(leftover):
            os.unlink(leftover)  # a previous import that was killed
    rec = Recorder(tmp, {"source": json.dumps({"kind": "import", "path": os.path.abspath(path_in)})},
                   flush_s=3600.0)
    n = 0
    ok = False
    try:
        with open_log(path_in) as f:
            for line, s in read_reports(f, path_in, skip_bad, on_skip):
                rec.append(line, s, now=0.0)
                n += 1
        if n == 0:
            raise InputError(f"{path_in}: no reports to import (the input is empty)")
        ok = True
    finally:
        rec.close()
        if ok:
            os.replace(tmp, path_out)
        else:
            os.unlink(tmp)
    return n
