"""Reading neuron-monitor JSON-lines logs: plain, gzip or zstd, with line numbers for errors."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import msgspec
import zstandard

from .sample import DecodeError, Decoder, Sample

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
SQLITE_MAGIC = b"SQLite format 3\x00"
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark some editors and Windows tools write


class InputError(Exception):
    """Bad user input: one line naming the file, the line and what is wrong (exit status 2)."""


def sniff(path: str) -> str:
    """'profile', 'gzip', 'zstd' or 'jsonl', by content, not by name."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    if head.startswith(SQLITE_MAGIC):
        return "profile"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "jsonl"


class _ZstdLines:
    """The lines of a zstd file (any number of frames). zstandard's stream reader ends quietly at a
    frame cut short; this one checks that the last frame was whole, so a truncated log is an error."""

    def __init__(self, path: str) -> None:
        self.fh = open(path, "rb")  # noqa: SIM115

    def __enter__(self) -> _ZstdLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()

    def _blocks(self) -> Iterator[bytes]:
        d = zstandard.ZstdDecompressor()
        obj, fed = d.decompressobj(), False
        while data := self.fh.read(1 << 20):
            while data:
                fed = True
                yield obj.decompress(data)
                if obj.eof:
                    data, obj, fed = obj.unused_data, d.decompressobj(), False
                else:
                    data = b""
        if fed:
            raise EOFError("the last zstd frame is cut short")

    def __iter__(self) -> Iterator[bytes]:
        rest = b""
        for block in self._blocks():
            *lines, rest = (rest + block).split(b"\n")
            yield from lines
        if rest:
            yield rest


def open_log(path: str) -> BinaryIO:
    kind = sniff(path)
    if kind == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if kind == "zstd":
        return _ZstdLines(path)  # type: ignore[return-value]
    if kind == "profile":
        raise InputError(f"{path}: is a profile, not a log")
    return open(path, "rb")


def iter_lines(stream: BinaryIO, name: str) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for each non-empty line; a broken compressed stream is an InputError."""
    lineno = 0
    try:
        for raw in stream:
            lineno += 1
            line = raw.strip()
            if line:
                yield lineno, line
    except (EOFError, OSError, zlib.error, zstandard.ZstdError) as exc:
        raise InputError(f"{name}: line {lineno + 1}: truncated or corrupt compressed data ({exc})") from None


def read_reports(stream: BinaryIO, name: str, skip_bad: bool = False,
                 on_skip=None) -> Iterator[tuple[bytes, Sample]]:
    """(report line, sample) of a neuron-monitor log. A bad line is an InputError naming it, unless skip_bad."""
    dec = Decoder()
    for lineno, line in iter_lines(stream, name):
        if lineno == 1 and line.startswith(BOM):
            line = line[len(BOM):].lstrip()
        if line.startswith((b'{"type"', b'{"protocol"')):  # a captured socket stream's hello and notices
            continue
        try:
            yield line, dec.decode(line)
        except DecodeError as exc:
            if skip_bad:
                if on_skip:
                    on_skip(lineno, str(exc))
                continue
            raise InputError(f"{name}: line {lineno}: {exc}"
                             + ("" if line.endswith(b"}") else " (line truncated?)")) from None


def read_samples(stream: BinaryIO, name: str, skip_bad: bool = False, on_skip=None) -> Iterator[Sample]:
    for _, s in read_reports(stream, name, skip_bad, on_skip):
        yield s


def log_samples(path: str, skip_bad: bool = False, on_skip=None) -> Iterator[Sample]:
    if path == "-":
        import sys

        yield from read_samples(sys.stdin.buffer, "<stdin>", skip_bad, on_skip)
        return
    with open_log(path) as f:
        yield from read_samples(f, path, skip_bad, on_skip)


class _Period(msgspec.Struct):
    period: float = 0.0


class _RtReport(msgspec.Struct):
    neuroncore_counters: _Period | None = None


class _Rt(msgspec.Struct):
    report: _RtReport = msgspec.field(default_factory=_RtReport)


class _Sys(msgspec.Struct):
    vcpu_usage: _Period | None = None


class _Ext(msgspec.Struct):
    time_s: float = 0.0


class _Clock(msgspec.Struct):
    neuron_runtime_data: list[_Rt] = []
    system_data: _Sys | None = None
    neuron_top: _Ext | None = None


_clock_decoder = msgspec.json.Decoder(_Clock)


def log_duration(path: str) -> float | None:
    """Time of a log's last report, as the Decoder counts it, reading only the clock fields (a cheap
    pre-pass; a full decode of every report would double an export's cost)."""
    total, last = 0.0, None
    try:
        with open_log(path) as f:
            for _, line in iter_lines(f, path):
                try:
                    c = _clock_decoder.decode(line)
                except msgspec.MsgspecError:
                    continue
                if c.neuron_top is not None:
                    last = c.neuron_top.time_s
                    continue
                period = next((rt.report.neuroncore_counters.period for rt in c.neuron_runtime_data
                               if rt.report.neuroncore_counters and rt.report.neuroncore_counters.period), 0.0)
                if not period and c.system_data and c.system_data.vcpu_usage:
                    period = c.system_data.vcpu_usage.period
                total += period or 1.0
                last = total
    except InputError:
        return None
    return last
