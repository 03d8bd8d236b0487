"""The profile store: one SQLite file per recording (.ntprof). docs/profile-format.md is the spec.

Raw report lines are stored, zstd-compressed in chunks of consecutive samples (one chunk a
second at most, so a crash loses at most the last second). A `samples` index maps every sample to
its chunk and its time; `events` holds scenario changes, hints, out-of-memory, reconnects and user
marks. History is derived on read by decoding the raw reports, never stored.

Chunks are first written as JSON lines (cheap, so a crash loses at most the last second); every
COMPACT_ROWS samples a background thread rewrites the sealed ones as one columnar chunk
(colcodec.py), which is 5-6x smaller and returns the same bytes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import zstandard

from ..telemetry.logs import InputError, sniff
from ..telemetry.sample import DecodeError, Decoder, Sample
from . import colcodec

FORMAT_VERSION = 2  # 2: chunks may be columnar (colcodec); version 1 files are still read
APPLICATION_ID = 0x4E54_5046  # "NTPF" in the SQLite header, so `file` and we can tell a profile
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    first_seq INTEGER NOT NULL,
    n INTEGER NOT NULL,
    t_start REAL NOT NULL,
    t_end REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    idx INTEGER PRIMARY KEY,
    time_s REAL NOT NULL,
    chunk INTEGER NOT NULL REFERENCES chunks(id),
    pos INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_time ON samples(time_s);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time_s REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events(time_s);
"""
ZSTD_LEVEL = 9
CHUNK_RAW_BYTES = 2 * 1024 * 1024  # raw report bytes per JSON-lines chunk before it is sealed
COMPACT_ROWS = 600  # sealed samples rewritten together as one columnar chunk
CHUNK_CHECKSUM = "zstd-xxh64"  # every chunk is a zstd frame with its content checksum (verified on read)
CHECKPOINT_S = 5.0  # the write-ahead log is copied into the main file at least this often


class ProfileError(InputError):
    pass


@dataclass(frozen=True)
class ProfileInfo:
    path: str
    version: int
    meta: dict
    samples: int
    duration_s: float
    t0: float


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


class Profile:
    """Read side: random access by index or time, decoded on demand (history derives from it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        kind = sniff(path)
        if kind != "profile":
            raise ProfileError(f"{path}: not a neuron-top profile (not an SQLite file)")
        try:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise ProfileError(f"{path}: corrupt or truncated profile ({exc})") from None
        if "format_version" not in meta:
            raise ProfileError(f"{path}: no format_version in meta: not a neuron-top profile")
        try:
            version = int(meta["format_version"])
        except ValueError:
            raise ProfileError(f"{path}: meta.format_version {meta['format_version']!r} is not a number") from None
        if version > FORMAT_VERSION:
            raise ProfileError(f"{path}: format version {version} is newer than this neuron-top reads "
                               f"({FORMAT_VERSION}); upgrade neuron-top")
        self.meta = meta
        self.version = version
        self.dctx = zstandard.ZstdDecompressor()
        # profiles written before checksums open as before; in newer ones a frame without one is damage
        self.checksummed = meta.get("chunk_checksum") == CHUNK_CHECKSUM
        self._chunk_cache: tuple[int, list[bytes] | colcodec.ColumnChunk | colcodec.LazyChunk] | None = None
        self._times: list[float] | None = None

    @property
    def times(self) -> list[float]:
        """Every sample's time, in order (read when first asked: an export reads chunks, not the index)."""
        if self._times is None:
            try:
                self._times = [r[0] for r in self.db.execute("SELECT time_s FROM samples ORDER BY idx")]
            except sqlite3.DatabaseError as exc:
                raise ProfileError(f"{self.path}: corrupt or truncated profile ({exc})") from None
        return self._times

    def __len__(self) -> int:
        return len(self.times)

    def info(self) -> ProfileInfo:
        t0 = self.times[0] if self.times else 0.0
        dur = self.times[-1] - t0 if self.times else 0.0
        return ProfileInfo(self.path, self.version, self.meta, len(self.times), dur, t0)

    def _locate(self, index: int) -> tuple[int, int]:
        row = self.db.execute("SELECT chunk, pos FROM samples WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise ProfileError(f"{self.path}: sample {index} missing from the index")
        return row

    def _corrupt(self, cid: int, why: str) -> ProfileError:
        """One line naming the chunk and the time range it held (so a user knows what is lost)."""
        try:
            row = self.db.execute("SELECT t_start, t_end, first_seq, n FROM chunks WHERE id = ?", (cid,)).fetchone()
        except sqlite3.DatabaseError:
            row = None
        where = (f" (samples {row[2]}-{row[2] + row[3] - 1}, t={row[0]:.1f}-{row[1]:.1f} s)"
                 if row and all(isinstance(v, (int, float)) for v in row) else "")
        return ProfileError(f"{self.path}: chunk {cid}{where} is corrupt: {why}; --skip-bad skips it")

    def _unpack(self, cid: int, data: bytes, lazy: bool = False, n: int | None = None
                ) -> list[bytes] | colcodec.ColumnChunk | colcodec.LazyChunk:
        try:
            if self.checksummed and not zstandard.get_frame_parameters(data).has_checksum:
                raise self._corrupt(cid, "its frame has lost its checksum")
            plain = self.dctx.decompress(data)
            chunk: list[bytes] | colcodec.ColumnChunk | colcodec.LazyChunk
            if colcodec.is_columnar(plain):
                col = colcodec.decode_lazy(plain) if lazy else colcodec.decode(plain)
                chunk, rows = col, col.n
            else:
                chunk = plain.split(b"\n")
                rows = len(chunk)
        except (zstandard.ZstdError, TypeError, ValueError, IndexError, msgspec.DecodeError) as exc:
            raise self._corrupt(cid, str(exc)) from None
        if n is not None and rows != n:
            raise self._corrupt(cid, f"it holds {rows} samples where the index says {n}")
        return chunk

    def _chunk(self, cid: int) -> list[bytes] | colcodec.ColumnChunk | colcodec.LazyChunk:
        if self._chunk_cache and self._chunk_cache[0] == cid:
            return self._chunk_cache[1]
        chunk = self._unpack(cid, self._data(cid))
        self._chunk_cache = (cid, chunk)
        return chunk

    def _data(self, cid: int) -> bytes:
        try:
            row = self.db.execute("SELECT data FROM chunks WHERE id = ?", (cid,)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise ProfileError(f"{self.path}: chunk {cid} is corrupt ({exc})") from None
        if row is None:
            raise ProfileError(f"{self.path}: chunk {cid} is missing")
        return row[0]

    def raw(self, index: int) -> bytes:
        cid, pos = self._locate(index)
        try:
            chunk = self._chunk(cid)
        except ProfileError:
            if self.db.in_transaction:
                raise
            cid, pos = self._locate(index)  # compacted by a recorder meanwhile: the index moved on
            chunk = self._chunk(cid)
        if isinstance(chunk, colcodec.ColumnChunk):
            try:
                return chunk.line(pos)
            except IndexError:
                raise ProfileError(f"{self.path}: sample {index} missing from chunk {cid}") from None
        assert isinstance(chunk, list)  # (_chunk reads whole chunks, never lazily)
        return chunk[pos]

    def sample(self, index: int) -> Sample:
        """Decode sample `index`, with the previous one for counter rates."""
        dec = Decoder()
        try:
            if index > 0:
                dec.decode(self.raw(index - 1))
            return dec.decode(self.raw(index))
        except DecodeError as exc:
            raise ProfileError(f"{self.path}: sample {index}: {exc}") from None

    def iter_raw(self, start: int = 0, exact: bool = True,
                 on_bad: Callable[[str], None] | None = None) -> Iterator[tuple[int, bytes]]:
        """(index, report line) from `start` on; exact=False may pad numbers with spaces (faster;
        for decoding)."""
        for first, chunk in self.iter_chunks(start, on_bad=on_bad):
            lines = chunk.lines(exact) if isinstance(chunk, colcodec.ColumnChunk) else chunk
            for k, line in enumerate(lines):
                if first + k >= start:
                    yield first + k, line

    def iter_chunks(self, start: int = 0, lazy: bool = False,
                    on_bad: Callable[[str], None] | None = None) -> Iterator[tuple[int, Any]]:
        """(index of the chunk's first sample, chunk) for the chunks holding samples from `start` on:
        a list of report lines, or a colcodec.ColumnChunk (a LazyChunk if `lazy`). A damaged chunk
        raises ProfileError naming it, or is passed to `on_bad` (--skip-bad) and left out."""
        # the order first, then each chunk's data as it is needed: ordering the rows with their data
        # would make SQLite sort every chunk's bytes before handing over the first
        # One read transaction: a profile being recorded is read as one consistent snapshot (the
        # recorder's compaction may replace the chunks listed here while they are read).
        own = not self.db.in_transaction
        try:
            if own:
                self.db.execute("BEGIN")
            order = self.db.execute("SELECT id, first_seq, n FROM chunks WHERE first_seq + n > ? ORDER BY first_seq",
                                    (start,)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise ProfileError(f"{self.path}: corrupt or truncated profile ({exc})") from None
        try:
            for cid, first, n in order:
                try:
                    chunk = self._unpack(cid, self._data(cid), lazy, n)
                except ProfileError as exc:
                    if on_bad is None:
                        raise
                    on_bad(str(exc))
                    continue
                yield first, chunk
        finally:
            if own and self.db.in_transaction:
                self.db.execute("COMMIT")

    def iter_samples(self, start: int = 0, skip_bad: bool = False,
                     on_skip: Callable[[str], None] | None = None) -> Iterator[Sample]:
        dec = Decoder()
        if start > 0:
            try:
                dec.decode(self.raw(start - 1))
            except DecodeError:
                pass
        for i, line in self.iter_raw(start, exact=False, on_bad=on_skip if skip_bad else None):
            try:
                yield dec.decode(line)
            except DecodeError as exc:
                if skip_bad:
                    continue
                raise ProfileError(f"{self.path}: sample {i}: {exc}") from None

    def events(self) -> list[tuple[float, str, dict]]:
        return [(t, k, json.loads(d)) for t, k, d in
                self.db.execute("SELECT time_s, kind, data FROM events ORDER BY time_s, id")]

    def close(self) -> None:
        self.db.close()


class LogTimeline:
    """A neuron-monitor log held in memory as decoded samples, for replay (logs are small)."""

    def __init__(self, samples: list[Sample]) -> None:
        if not samples:
            raise InputError("the log holds no reports")
        self.samples = samples
        self.times = [s.time_s for s in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def sample(self, index: int) -> Sample:
        return self.samples[index]


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
