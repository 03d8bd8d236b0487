"""Reading profiles (.ntprof): random access by index or time, every chunk verified, and a log held
in memory for replay. A `samples` index maps every sample to its chunk and its time; `events`
holds scenario changes, hints, out-of-memory, reconnects and user marks. History is derived on
read by decoding the raw reports, never stored. docs/profile-format.md is the spec.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import zstandard

from ..telemetry.logs import InputError, sniff
from ..telemetry.sample import DecodeError, Decoder, Sample
from . import colcodec
from .format import APPLICATION_ID, CHUNK_CHECKSUM, FORMAT_VERSION, ProfileError, ProfileInfo  # noqa: F401


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
