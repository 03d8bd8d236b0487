"""The profile's on-disk format: its SQLite schema, the chunk limits, and its error.

docs/profile-format.md is the spec; recorder.py writes profiles, profile.py reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..telemetry.logs import InputError

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
