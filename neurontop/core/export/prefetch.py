"""Read a profile's batches in a second process while this one writes them out.

An export's two halves cost about the same (decoding columns into figures and evaluating hints;
formatting text), so on a machine with two cores or more a forked reader runs the first half
beside the second. Figure matrices pass through a few shared-memory slots, the rest through a
pipe; either holds a few batches at most, so memory stays flat. Without fork (or with one core)
the batches are read in this process, the same way.
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from ..analysis.hints import HintMonitor
from ..analysis.thresholds import Thresholds
from ..store.colread import iter_profile
from ..store.profile import Profile, ProfileError
from ..telemetry.batch import Batch
from ..telemetry.logs import InputError
from .csv_writer import Figures, reduce_batch


@dataclass(frozen=True)
class _Failed:
    message: str


@dataclass(frozen=True)
class HintOptions:
    """Evaluate hints in the reader too (they need every row in order, and the reader has them)."""

    thresholds: Thresholds
    causes: tuple[str, ...]  # (the registry's, read in the parent: a forked reader has the same)


@dataclass(frozen=True)
class _InSlot:
    """A Figures whose matrix waits in shared-memory slot `slot` (the pipe carries the rest)."""

    figures: Figures
    slot: int
    shape: tuple[int, int]


class _Slots:
    """Shared memory between the reader and the writer: a few slots of figure matrices, so the
    biggest part of each batch is written once and read in place instead of pickled, piped and
    unpickled (four copies, and a pipe wake-up per 64 KiB). A slot goes back to the reader when the
    writer asks for the next batch; a matrix too big for a slot goes through the pipe."""

    COUNT = 4
    SIZE = 8 << 20

    def __init__(self, ctx) -> None:
        self.mem = mmap.mmap(-1, self.COUNT * self.SIZE)  # anonymous and shared: the fork inherits it
        self.freed_recv, self.freed_send = ctx.Pipe(duplex=False)
        self.free = list(range(self.COUNT))  # the reader's view

    def view(self, slot: int, shape: tuple[int, int]) -> np.ndarray:
        return np.ndarray(shape, dtype=np.float64, buffer=self.mem, offset=slot * self.SIZE)

    def reduce(self, b: Batch, groups: tuple[str, ...], mask: np.ndarray | None) -> Figures | _InSlot:
        """In the reader: batch `b` reduced to its figures, the matrix written straight into a free
        slot (waiting for the writer to give one back), and the message that carries them."""
        if not self.free:
            try:
                self.free.append(self.freed_recv.recv())
            except EOFError:
                raise BrokenPipeError("the writer stopped") from None
        slot = self.free[-1]
        used: list[int] = []

        def out(shape: tuple[int, int]) -> np.ndarray:
            if shape[0] * shape[1] * 8 > self.SIZE:
                return np.empty(shape)  # too big for a slot: it goes through the pipe
            used.append(self.free.pop())
            return self.view(slot, shape)

        f = reduce_batch(b, groups, mask, out)
        return _InSlot(replace(f, m=np.zeros((0, 0))), slot, f.m.shape) if used else f


def _reader(path: str, skip_bad: bool, hints: HintOptions | None, groups: tuple[str, ...] | None,
            conn, slots: _Slots) -> None:
    try:
        for b, mask in _hinted(path, skip_bad, hints):
            conn.send((slots.reduce(b, groups, mask), None) if groups is not None else (b, mask))
        conn.send(None)
    except (ProfileError, InputError) as exc:
        conn.send(_Failed(str(exc)))
    except BrokenPipeError:
        pass  # the writer stopped early (an error, Ctrl-C): nothing to tell
    except Exception as exc:  # noqa: BLE001 - shown to the user as the reader's failure, not a traceback
        conn.send(_Failed(f"{path}: reading failed: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def parallel_ok() -> bool:
    return "fork" in mp.get_all_start_methods() and (os.cpu_count() or 1) >= 2


def batches(path: str, skip_bad: bool = False, parallel: bool | None = None,
            hints: HintOptions | None = None, groups: tuple[str, ...] | None = None,
            ) -> Iterator[tuple[Batch | Figures, np.ndarray | None]]:
    """The profile's samples as batches (colread.iter_profile), each with its rows' hint flags
    ([rows, causes] bool, when `hints` asks), decoded in a forked reader when it helps. With
    `groups` (an export's field groups) each batch comes reduced to its figures (`Figures`, hints
    included): the reader gathers them into shared memory, and only the rest crosses the pipe.

    The reader is forked here, at the call, not at the first batch: before the caller starts
    threads of its own (a progress bar's), which a forked child must not inherit mid-write.
    A forked reader's figure matrices live in shared memory that is reused once the next item is
    asked for: copy what must outlive that (CsvExporter.add_batch does)."""
    if not (parallel_ok() if parallel is None else parallel):
        return _serial(path, skip_bad, hints, groups)
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    slots = _Slots(ctx)
    proc = ctx.Process(target=_reader, args=(path, skip_bad, hints, groups, send, slots),
                       name="neuron-top-export-reader", daemon=True)
    proc.start()
    send.close()
    slots.freed_recv.close()
    return _received(path, recv, proc, slots)


def _warn_chunk(msg: str) -> None:
    print(f"neuron-top: skipped: {msg}", file=sys.stderr)


def _hinted(path: str, skip_bad: bool, hints: HintOptions | None) -> Iterator[tuple[Batch, np.ndarray | None]]:
    """The profile's batches and their hint flags (the loop of either process)."""
    mon = HintMonitor(hints.thresholds) if hints is not None else None
    for b in iter_profile(Profile(path), skip_bad, on_skip=_warn_chunk):
        yield b, mon.feed(b, hints.causes, with_lost=True) if mon is not None and hints is not None else None


def _serial(path: str, skip_bad: bool, hints: HintOptions | None, groups: tuple[str, ...] | None = None,
            ) -> Iterator[tuple[Batch | Figures, np.ndarray | None]]:
    """Batches and their hint flags, read in this process."""
    for b, mask in _hinted(path, skip_bad, hints):
        yield (reduce_batch(b, groups, mask), None) if groups is not None else (b, mask)


def _received(path: str, recv, proc, slots: _Slots) -> Iterator[tuple[Batch | Figures, np.ndarray | None]]:
    try:
        while True:
            try:
                item = recv.recv()
            except EOFError:
                raise ProfileError(f"{path}: the reader process stopped (exit code {proc.exitcode})") from None
            if item is None:
                return
            if isinstance(item, _Failed):
                raise ProfileError(item.message)
            got, mask = item
            if isinstance(got, _InSlot):
                yield replace(got.figures, m=slots.view(got.slot, got.shape)), mask
                try:
                    slots.freed_send.send(got.slot)  # the writer has finished with it (it asks for the next)
                except BrokenPipeError:
                    pass  # the reader has sent everything and gone
            else:
                yield got, mask
    finally:
        recv.close()
        slots.freed_send.close()
        if proc.is_alive():
            proc.terminate()
        proc.join()
