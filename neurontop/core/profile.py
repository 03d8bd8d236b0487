"""The profile store: one SQLite file per recording (.ntprof). docs/profile-format.md is the spec.

Raw report lines are stored, zstd-compressed in chunks of consecutive samples (one chunk a
second at most, so a crash loses at most the last second). A `samples` index maps every sample to
its chunk and its time; `events` holds scenario changes, hints, out-of-memory, reconnects and user
marks. History is derived on read by decoding the raw reports, never stored.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import zstandard

from .logs import InputError, sniff
from .sample import DecodeError, Decoder, Sample

FORMAT_VERSION = 1
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
CHUNK_RAW_BYTES = 2 * 1024 * 1024  # raw report bytes per chunk before it is sealed


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
    """Appends raw reports to a profile; thread-safe; commits at least every `flush_s` seconds."""

    def __init__(self, path: str, meta: dict | None = None, flush_s: float = 1.0, chunk_max: int = 600) -> None:
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
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self.db.executescript(SCHEMA)
            m = {"format_version": str(FORMAT_VERSION), "created_unix": f"{time.time():.3f}",
                 "writer": "neuron-top"}
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
        self.last_flush = time.monotonic()
        self.cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.fast = zstandard.ZstdCompressor(level=1)
        self.open_id: int | None = None
        self.open_first = 0
        self.open_lines: list[bytes] = []
        self.open_times: list[float] = []
        self.open_raw = 0
        self.closed = False
        self.bytes_written = 0

    def append(self, line: bytes, sample: Sample, now: float | None = None) -> None:
        with self.lock:
            if self.closed:
                return
            self.pending.append(line.rstrip(b"\n"))
            self.pending_times.append(sample.time_s)
            for e in sample.events:
                self.pending_events.append((sample.time_s, str(e.get("type", "event")), json.dumps(e)))
            now = time.monotonic() if now is None else now
            if now - self.last_flush >= self.flush_s or len(self.pending) >= self.chunk_max:
                self._flush(now)

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
                    self.bytes_written += len(blob)
                    self.open_first = self.count + len(self.pending)
                    self.open_id, self.open_lines, self.open_times, self.open_raw = None, [], [], 0
            if self.pending_events:
                self.db.executemany("INSERT INTO events (time_s, kind, data) VALUES (?, ?, ?)", self.pending_events)
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self.closed = True
            raise ProfileError(f"{self.path}: write failed: {exc}") from None
        self.count += len(self.pending)
        self.pending.clear()
        self.pending_times.clear()
        self.pending_events.clear()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            try:
                self._flush(final=True)
                # Leave a plain rollback-journal file: it opens read-only anywhere, with no -wal/-shm.
                self.db.execute("PRAGMA journal_mode=DELETE")
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
            rows = self.db.execute("SELECT time_s FROM samples ORDER BY idx").fetchall()
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
        self.times = [r[0] for r in rows]
        self.dctx = zstandard.ZstdDecompressor()
        self._chunk_cache: tuple[int, list[bytes]] | None = None

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

    def _chunk(self, cid: int) -> list[bytes]:
        if self._chunk_cache and self._chunk_cache[0] == cid:
            return self._chunk_cache[1]
        try:
            row = self.db.execute("SELECT data FROM chunks WHERE id = ?", (cid,)).fetchone()
            lines = self.dctx.decompress(row[0]).split(b"\n")
        except (sqlite3.DatabaseError, zstandard.ZstdError, TypeError) as exc:
            raise ProfileError(f"{self.path}: chunk {cid} is corrupt ({exc})") from None
        self._chunk_cache = (cid, lines)
        return lines

    def raw(self, index: int) -> bytes:
        cid, pos = self._locate(index)
        return self._chunk(cid)[pos]

    def sample(self, index: int) -> Sample:
        """Decode sample `index`, with the previous one for counter rates."""
        dec = Decoder()
        try:
            if index > 0:
                dec.decode(self.raw(index - 1))
            return dec.decode(self.raw(index))
        except DecodeError as exc:
            raise ProfileError(f"{self.path}: sample {index}: {exc}") from None

    def iter_raw(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        q = self.db.execute("SELECT id, first_seq, n, data FROM chunks WHERE first_seq + n > ? ORDER BY first_seq",
                            (start,))
        for cid, first, _n, data in q:
            try:
                lines = self.dctx.decompress(data).split(b"\n")
            except zstandard.ZstdError as exc:
                raise ProfileError(f"{self.path}: chunk {cid} is corrupt ({exc})") from None
            for k, line in enumerate(lines):
                if first + k >= start:
                    yield first + k, line

    def iter_samples(self, start: int = 0, skip_bad: bool = False) -> Iterator[Sample]:
        dec = Decoder()
        if start > 0:
            try:
                dec.decode(self.raw(start - 1))
            except DecodeError:
                pass
        for i, line in self.iter_raw(start):
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
    """Convert a neuron-monitor JSON-lines log (plain, gz, zst) into a profile. Returns samples written."""
    from .logs import iter_lines, open_log

    rec = Recorder(path_out, {"source": json.dumps({"kind": "import", "path": os.path.abspath(path_in)})},
                   flush_s=3600.0)
    dec = Decoder()
    n = 0
    ok = False
    try:
        with open_log(path_in) as f:
            for lineno, line in iter_lines(f, path_in):
                if line.startswith(b'{"type"'):
                    continue
                try:
                    s = dec.decode(line)
                except DecodeError as exc:
                    if skip_bad:
                        if on_skip:
                            on_skip(lineno, str(exc))
                        continue
                    raise InputError(f"{path_in}: line {lineno}: {exc}") from None
                rec.append(line, s, now=0.0)
                n += 1
        ok = True
    finally:
        rec.close()
        if not ok:
            os.unlink(path_out)
    return n
